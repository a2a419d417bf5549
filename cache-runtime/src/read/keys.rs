//! The keys of one call: the entry, its lock and generation (same slot), and its tags.

use std::sync::OnceLock;

use crate::{
    Cache,
    key::{self, ArgsKey},
    spec::FnSpec,
    store::EntryKeys,
};

/// The keys of one call. The lock and generation keys are only built on the paths that need
/// them, not on hits.
pub(crate) struct Keys {
    pub(crate) entry: String,
    lock: OnceLock<String>,
    generation: OnceLock<String>,
    pub(crate) tags: Vec<String>,
}

impl Keys {
    pub(crate) fn new(cache: &Cache, spec: &FnSpec, args: &ArgsKey, tags: &[String]) -> Keys {
        Keys {
            entry: key::entry_key(cache.namespace(), spec.name, spec.version, args),
            lock: OnceLock::new(),
            generation: OnceLock::new(),
            tags: tags
                .iter()
                .map(|t| key::tag_key(cache.namespace(), t))
                .collect(),
        }
    }

    /// The keys of an entry known by its key alone (an operator's invalidation), without tags.
    pub(crate) fn for_entry(entry: String) -> Keys {
        Keys {
            entry,
            lock: OnceLock::new(),
            generation: OnceLock::new(),
            tags: Vec::new(),
        }
    }

    pub(crate) fn lock(&self) -> &str {
        self.lock.get_or_init(|| format!("{}:lock", self.entry))
    }

    pub(crate) fn entry_keys(&self) -> EntryKeys<'_> {
        let generation = self
            .generation
            .get_or_init(|| format!("{}:gen", self.entry));
        EntryKeys {
            entry: &self.entry,
            lock: self.lock(),
            generation,
        }
    }
}
