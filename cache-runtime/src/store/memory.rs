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

use super::{
    AfterChange, Backend, ClaimReply, EntryChange, EntryKeys, FillReply, FillValue, Read,
    StoreFuture, StoredBytes,
};

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
        self.0.insert(key.to_owned(), (value, expiry(ttl)));
    }

    fn remove(&mut self, key: &str) {
        self.0.remove(key);
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

    fn read_now(&self, key: &str, tags: &[String]) -> Read {
        let entry = self.get(key);
        let ttl = entry
            .as_ref()
            .map(|e| e.ttl.saturating_sub(e.written.elapsed()));
        Read {
            current: entry.map(|e| StoredBytes::Shared(e.bytes)),
            ttl,
            tag_versions: self.versions_now(tags),
        }
    }

    fn versions_now(&self, tags: &[String]) -> Vec<Option<u64>> {
        let mut meta = self.meta();
        tags.iter()
            .map(|t| meta.get(t).and_then(|v| v.parse().ok()))
            .collect()
    }

    fn capture_now(&self, tags: &[String], ttl: Duration) -> Vec<u64> {
        let mut meta = self.meta();
        tags.iter()
            .map(
                |tag| match meta.get(tag).and_then(|v| v.parse::<u64>().ok()) {
                    Some(version) => {
                        if let Some((_, expires)) = meta.0.get_mut(tag.as_str()) {
                            *expires = (*expires).max(expiry(ttl));
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

    fn claim_now(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        lock_ttl: Duration,
        candidate: &str,
        generation_ttl: Duration,
    ) -> ClaimReply {
        let mut meta = self.meta();
        let locked = match token {
            Some(token) if meta.get(keys.lock).is_none() => {
                meta.set(keys.lock, token.to_owned(), lock_ttl);
                true
            }
            _ => false,
        };
        if meta.get(keys.generation).is_none() {
            meta.set(keys.generation, candidate.to_owned(), generation_ttl);
        }
        let generation = meta.get(keys.generation).map(str::to_owned);
        drop(meta);
        ClaimReply {
            locked,
            current: self.get(keys.entry).map(|e| StoredBytes::Shared(e.bytes)),
            generation,
        }
    }

    fn fill_now(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: &str,
        value: FillValue<'_>,
        ttl: Duration,
    ) -> FillReply {
        let mut meta = self.meta();
        let owns = token.is_none_or(|t| meta.get(keys.lock) == Some(t));
        if owns && token.is_some() {
            meta.remove(keys.lock);
        }
        if !owns {
            return FillReply::RefusedLock;
        }
        if meta.get(keys.generation) != Some(generation) {
            return FillReply::RefusedGeneration;
        }
        match value {
            FillValue::Bytes(bytes) => self.insert(keys.entry, bytes, ttl),
            FillValue::Delete => self.entries.invalidate(keys.entry),
        }
        FillReply::Stored
    }

    fn new_generation_now(
        &self,
        keys: &EntryKeys<'_>,
        generation: &str,
        generation_ttl: Duration,
        change: EntryChange<'_>,
    ) {
        let mut meta = self.meta();
        meta.set(keys.generation, generation.to_owned(), generation_ttl);
        match change {
            EntryChange::Keep => {}
            EntryChange::Drop => self.entries.invalidate(keys.entry),
            EntryChange::Put(bytes, ttl) => self.insert(keys.entry, bytes, ttl),
        }
    }

    fn renew_now(&self, lock: &str, token: &str, ttl: Duration) -> bool {
        let mut meta = self.meta();
        if meta.get(lock) == Some(token) {
            meta.set(lock, token.to_owned(), ttl);
            true
        } else {
            false
        }
    }

    fn unlock_now(&self, lock: &str, token: &str) -> bool {
        let mut meta = self.meta();
        if meta.get(lock) == Some(token) {
            meta.remove(lock);
            true
        } else {
            false
        }
    }
}

/// An operation that completes at once.
fn now<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

/// `now + ttl`, or far in the future when that overflows (a TTL meaning "forever").
fn expiry(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Backend for MemoryStore {
    fn is_network(&self) -> bool {
        false
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        tags: &'a [String],
        _with_ttl: bool,
    ) -> StoreFuture<'a, Read> {
        now(self.read_now(key, tags))
    }

    fn tag_versions<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, Vec<Option<u64>>> {
        now(self.versions_now(tags))
    }

    fn capture_tags<'a>(&'a self, tags: &'a [String], ttl: Duration) -> StoreFuture<'a, Vec<u64>> {
        now(self.capture_now(tags, ttl))
    }

    fn delete_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, AfterChange> {
        let mut meta = self.meta();
        for tag in tags {
            meta.remove(tag);
        }
        now(AfterChange::default())
    }

    fn claim<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        lock_ttl: Duration,
        candidate: &'a str,
        generation_ttl: Duration,
    ) -> StoreFuture<'a, ClaimReply> {
        now(self.claim_now(keys, token, lock_ttl, candidate, generation_ttl))
    }

    fn poll<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, (Option<StoredBytes>, bool)> {
        let locked = self.meta().get(keys.lock).is_some();
        let current = self.get(keys.entry).map(|e| StoredBytes::Shared(e.bytes));
        now((current, locked))
    }

    fn generation<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, Option<String>> {
        now(self.meta().get(keys.generation).map(str::to_owned))
    }

    fn fill<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        generation: &'a str,
        value: FillValue<'a>,
        ttl: Duration,
    ) -> StoreFuture<'a, FillReply> {
        now(self.fill_now(keys, token, generation, value, ttl))
    }

    fn new_generation<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        generation: &'a str,
        generation_ttl: Duration,
        change: EntryChange<'a>,
    ) -> StoreFuture<'a, AfterChange> {
        self.new_generation_now(keys, generation, generation_ttl, change);
        now(AfterChange::default())
    }

    fn renew<'a>(&'a self, lock: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        now(self.renew_now(lock, token, ttl))
    }

    fn unlock<'a>(&'a self, lock: &'a str, token: &'a str) -> StoreFuture<'a, bool> {
        now(self.unlock_now(lock, token))
    }

    fn ping<'a>(&'a self, _addr: Option<&'a str>) -> StoreFuture<'a, ()> {
        now(())
    }
}
