//! Invalidation epochs: the counters a first-level entry is checked against.
//!
//! An entry's key maps to one of [`STRIPES`] counters by its hash; each tag key in use has a
//! counter of its own; an invalidation of a key bumps its counter. Before a read is sent to
//! Redis, the reader takes a [`Ticket`]: the counters of the entry's key and of its tags, and
//! the global epoch (bumped by `FLUSHDB` and by every re-arm of tracking). An entry made from
//! that read is served only while every counter still has the value the ticket saw, so an
//! invalidation that arrives before the reply, after it, or while the entry is being inserted
//! makes it unusable: there is no window in which a value read before an invalidation enters
//! the first level after it.
//!
//! Stripes only guard a read until its entry is in the first level: from then on an
//! invalidation of its key removes the entry by its exact key. So two entry keys that share a
//! stripe cost at most a refused read, never an entry emptied by another key's writes. Tags get exact counters: every entry of a function carries the
//! function's own tag, and a shared stripe would let any unrelated write empty the function.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Counters per stripe: 16,384 (128 KiB), so a collision costs a miss on about one key in
/// sixteen thousand of those invalidated.
pub(crate) const STRIPES: usize = 1 << 14;

/// One key's stripe and the counter value a reader saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    stripe: u32,
    epoch: u64,
}

/// What a reader saw before sending its read: the global epoch, the entry key's stamp and each
/// tag's counter with its value.
#[derive(Clone, Debug)]
pub(crate) struct Ticket {
    pub(crate) global: u64,
    pub(crate) entry: Stamp,
    pub(crate) tags: Box<[(Arc<AtomicU64>, u64)]>,
    /// Whether the invalidation stream was confirmed live when the ticket was taken. A read
    /// made while it was not may have missed invalidations, and never enters the first level.
    pub(crate) live: bool,
    /// When it was taken, on the first level's clock.
    pub(crate) taken_at: u64,
}

pub(crate) struct Epochs {
    stripes: Box<[AtomicU64]>,
    /// A counter per tag key that some ticket holds (pruned of the others now and then).
    tags: Mutex<HashMap<Box<str>, Arc<AtomicU64>>>,
    global: AtomicU64,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            tags: Mutex::default(),
            global: AtomicU64::new(0),
        }
    }
}

fn stripe(key: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize & (STRIPES - 1)) as u32
}

impl Epochs {
    /// Makes every entry read under an earlier stamp of `key` unusable.
    pub(crate) fn bump(&self, key: &str) {
        self.stripes[stripe(key) as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every entry carrying the tag with key `tag_key` unusable.
    pub(crate) fn bump_tag(&self, tag_key: &str) {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = tags.get(tag_key) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Drops the counters of tags no ticket holds any more.
    pub(crate) fn prune_tags(&self) {
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        tags.retain(|_, counter| Arc::strong_count(counter) > 1);
    }

    /// Makes every entry read before now unusable.
    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn global(&self) -> u64 {
        self.global.load(Ordering::SeqCst)
    }

    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        let stripe = stripe(key);
        Stamp {
            stripe,
            epoch: self.stripes[stripe as usize].load(Ordering::SeqCst),
        }
    }

    /// A ticket for a read of `entry` carrying `tags`.
    pub(crate) fn ticket<'k>(
        &self,
        entry: &'k str,
        tags: impl Iterator<Item = &'k str>,
        live: bool,
        taken_at: u64,
    ) -> Ticket {
        // Global first: a re-arm between the loads leaves the ticket already outdated.
        let global = self.global();
        let entry = self.stamp(entry);
        let mut tags = tags.peekable();
        let tags = if tags.peek().is_none() {
            Box::default()
        } else {
            let mut counters = self.tags.lock().unwrap_or_else(|p| p.into_inner());
            tags.map(|tag| {
                let counter = counters.entry(tag.into()).or_default().clone();
                let epoch = counter.load(Ordering::SeqCst);
                (counter, epoch)
            })
            .collect()
        };
        Ticket {
            global,
            entry,
            tags,
            live,
            taken_at,
        }
    }

    /// For an entry already in the first level (sealed): whether no tag and nothing global was
    /// invalidated since its ticket was taken. Its own key's invalidations remove it.
    pub(crate) fn still_current(&self, ticket: &Ticket) -> bool {
        ticket.global == self.global()
            && ticket
                .tags
                .iter()
                .all(|(counter, epoch)| counter.load(Ordering::SeqCst) == *epoch)
    }

    /// Whether nothing the ticket covers was invalidated since it was taken.
    pub(crate) fn current(&self, ticket: &Ticket) -> bool {
        let Stamp { stripe, epoch } = ticket.entry;
        self.stripes[stripe as usize].load(Ordering::SeqCst) == epoch && self.still_current(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_of_the_key_or_a_tag_or_everything_outdates_a_ticket() {
        let epochs = Epochs::default();
        let tags = ["ns:tag:{a}", "ns:tag:{b}"];
        let ticket = || epochs.ticket("ns:f:v1:{1}", tags.iter().copied(), true, 0);

        {
            let t = ticket();
            assert!(epochs.current(&t));
            epochs.bump("ns:f:v1:{2}");
            // Another key: still current unless it shares the stripe.
            assert_eq!(
                epochs.current(&t),
                stripe("ns:f:v1:{2}") != stripe("ns:f:v1:{1}")
            );
        }
        {
            let t = ticket();
            epochs.bump("ns:f:v1:{1}");
            assert!(!epochs.current(&t));
        }
        {
            let t = ticket();
            epochs.bump_tag("ns:tag:{b}");
            assert!(!epochs.current(&t));
        }
        // Another tag: nothing.
        let t = ticket();
        epochs.bump_tag("ns:tag:{c}");
        assert!(epochs.current(&t));
        // Pruned only when no ticket holds the counter.
        epochs.prune_tags();
        epochs.bump_tag("ns:tag:{a}");
        assert!(!epochs.current(&t));
        drop(t);
        epochs.prune_tags();
        assert!(epochs.tags.lock().unwrap().is_empty());

        let t = ticket();
        epochs.bump_all();
        assert!(!epochs.current(&t));
        assert!(epochs.current(&ticket()));
    }
}
