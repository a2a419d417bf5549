//! The embedded in-process store, for programs and tests without Redis.
//!
//! Entries live in a `moka` cache with per-entry expiry and a byte capacity. Locks,
//! generations and tag versions live in a small map beside it; every write that must be atomic
//! with respect to them (fill, put, invalidate) happens under that map's mutex, so the
//! semantics match the Redis scripts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use moka::{Expiry, sync::Cache as Moka};

use super::{Acquired, EntryKeys, Read, StoredBytes};

#[derive(Clone)]
struct MemoryEntry {
    bytes: Arc<[u8]>,
    ttl: Duration,
    written: Instant,
}

struct PerEntryTtl;

impl Expiry<String, MemoryEntry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &MemoryEntry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &MemoryEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Small values with an expiry: locks, generations, tag versions.
#[derive(Default)]
struct Meta(HashMap<String, (String, Instant)>);

impl Meta {
    fn get(&mut self, key: &str) -> Option<&str> {
        let now = Instant::now();
        if self.0.get(key).is_some_and(|(_, expires)| *expires <= now) {
            self.0.remove(key);
        }
        self.0.get(key).map(|(v, _)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String, ttl: Duration) {
        self.0.insert(key.to_owned(), (value, Instant::now() + ttl));
    }

    fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    fn bump(&mut self, key: &str, ttl: Duration) -> String {
        let next = self
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        self.set(key, next.to_string(), ttl);
        next.to_string()
    }

    fn sweep(&mut self) {
        // Keep the map bounded: drop expired values now and then.
        if self.0.len() > 1024 && fastrand::u8(..) == 0 {
            let now = Instant::now();
            self.0.retain(|_, (_, expires)| *expires > now);
        }
    }
}

/// Entries in process memory with per-entry expiry and a capacity in bytes.
pub(crate) struct MemoryStore {
    entries: Moka<String, MemoryEntry>,
    meta: Mutex<Meta>,
}

impl MemoryStore {
    /// A store holding at most `capacity_bytes` of keys and values.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let entries = Moka::builder()
            .max_capacity(capacity_bytes)
            .weigher(|k: &String, v: &MemoryEntry| {
                u32::try_from(k.len() + v.bytes.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryStore {
            entries,
            meta: Mutex::default(),
        }
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        meta.sweep();
        meta
    }

    fn get(&self, key: &str) -> Option<MemoryEntry> {
        self.entries.get(key)
    }

    fn insert(&self, key: &str, value: &[u8], ttl: Duration) {
        let entry = MemoryEntry {
            bytes: value.into(),
            ttl,
            written: Instant::now(),
        };
        self.entries.insert(key.to_owned(), entry);
    }

    pub(crate) fn read(&self, key: &str, tags: &[String]) -> Read {
        let entry = self.get(key);
        let ttl = entry
            .as_ref()
            .map(|e| e.ttl.saturating_sub(e.written.elapsed()));
        Read {
            current: entry.map(|e| StoredBytes::Shared(e.bytes)),
            ttl,
            tag_versions: self.tag_versions(tags),
        }
    }

    pub(crate) fn tag_versions(&self, tags: &[String]) -> Vec<Option<u64>> {
        let mut meta = self.meta();
        tags.iter()
            .map(|t| meta.get(t).and_then(|v| v.parse().ok()))
            .collect()
    }

    pub(crate) fn capture_tags(&self, tags: &[String], ttl: Duration) -> Vec<u64> {
        let mut meta = self.meta();
        tags.iter()
            .map(
                |tag| match meta.get(tag).and_then(|v| v.parse::<u64>().ok()) {
                    Some(version) => {
                        if let Some((_, expires)) = meta.0.get_mut(tag.as_str()) {
                            *expires = (*expires).max(Instant::now() + ttl);
                        }
                        version
                    }
                    None => {
                        let version = fastrand::u64(1..);
                        meta.set(tag, version.to_string(), ttl);
                        version
                    }
                },
            )
            .collect()
    }

    pub(crate) fn delete_tags(&self, tags: &[String]) {
        let mut meta = self.meta();
        for tag in tags {
            meta.remove(tag);
        }
    }

    pub(crate) fn acquire(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        ttl: Duration,
    ) -> Acquired {
        let mut meta = self.meta();
        let locked = match token {
            Some(token) if meta.get(keys.lock).is_none() => {
                meta.set(keys.lock, token.to_owned(), ttl);
                true
            }
            _ => false,
        };
        let generation = meta.get(keys.generation).map(str::to_owned);
        drop(meta);
        Acquired {
            locked,
            current: self.get(keys.entry).map(|e| StoredBytes::Shared(e.bytes)),
            generation,
        }
    }

    pub(crate) fn poll(&self, keys: &EntryKeys<'_>) -> (Option<StoredBytes>, bool) {
        let locked = self.meta().get(keys.lock).is_some();
        (
            self.get(keys.entry).map(|e| StoredBytes::Shared(e.bytes)),
            locked,
        )
    }

    pub(crate) fn fill(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: Option<&str>,
        value: &[u8],
        ttl: Duration,
    ) -> bool {
        let mut meta = self.meta();
        let owns = token.is_none_or(|t| meta.get(keys.lock) == Some(t));
        if owns && token.is_some() {
            meta.remove(keys.lock);
        }
        if !owns || meta.get(keys.generation) != generation {
            return false;
        }
        self.insert(keys.entry, value, ttl);
        true
    }

    pub(crate) fn put(
        &self,
        keys: &EntryKeys<'_>,
        value: &[u8],
        ttl: Duration,
        generation_ttl: Duration,
    ) {
        let mut meta = self.meta();
        meta.bump(keys.generation, generation_ttl);
        self.insert(keys.entry, value, ttl);
    }

    pub(crate) fn bump(&self, keys: &EntryKeys<'_>, generation_ttl: Duration) -> String {
        self.meta().bump(keys.generation, generation_ttl)
    }

    pub(crate) fn invalidate(&self, keys: &EntryKeys<'_>, generation_ttl: Duration) {
        let mut meta = self.meta();
        meta.bump(keys.generation, generation_ttl);
        meta.remove(keys.lock);
        self.entries.invalidate(keys.entry);
    }

    pub(crate) fn renew(&self, lock: &str, token: &str, ttl: Duration) -> bool {
        let mut meta = self.meta();
        if meta.get(lock) == Some(token) {
            meta.set(lock, token.to_owned(), ttl);
            true
        } else {
            false
        }
    }

    pub(crate) fn unlock(&self, lock: &str, token: &str) -> bool {
        let mut meta = self.meta();
        if meta.get(lock) == Some(token) {
            meta.remove(lock);
            true
        } else {
            false
        }
    }
}
