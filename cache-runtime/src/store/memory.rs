//! The embedded in-process store, for programs and tests without Redis.
//!
//! Locks live in a small map beside the entries, with the same owner-token semantics as on
//! Redis, so the read path is the same for both stores.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache as Moka};

use super::{Acquired, Polled, StoredBytes};

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

/// Entries in process memory with per-entry expiry and a capacity in bytes.
pub(crate) struct MemoryStore {
    entries: Moka<String, MemoryEntry>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
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
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<StoredBytes> {
        self.entries
            .get(key)
            .await
            .map(|e| StoredBytes::Shared(e.bytes))
    }

    pub(crate) async fn get_with_ttl(&self, key: &str) -> (Option<StoredBytes>, Option<Duration>) {
        match self.entries.get(key).await {
            Some(e) => {
                let remaining = e.ttl.saturating_sub(e.written.elapsed());
                (Some(StoredBytes::Shared(e.bytes)), Some(remaining))
            }
            None => (None, None),
        }
    }

    pub(crate) async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let entry = MemoryEntry {
            bytes: value.into(),
            ttl,
            written: Instant::now(),
        };
        self.entries.insert(key.to_owned(), entry).await;
    }

    pub(crate) async fn delete(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    fn with_locks<T>(&self, f: impl FnOnce(&mut HashMap<String, (String, Instant)>) -> T) -> T {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        locks.retain(|_, (_, expires)| *expires > now);
        f(&mut locks)
    }

    fn owns(&self, lock: &str, token: &str) -> bool {
        self.with_locks(|locks| locks.get(lock).is_some_and(|(t, _)| t == token))
    }

    pub(crate) async fn acquire(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Acquired {
        let locked = self.with_locks(|locks| {
            if locks.contains_key(lock) {
                return false;
            }
            locks.insert(lock.to_owned(), (token.to_owned(), Instant::now() + ttl));
            true
        });
        Acquired {
            locked,
            current: self.get(key).await,
        }
    }

    pub(crate) async fn poll(&self, key: &str, lock: &str) -> Polled {
        let locked = self.with_locks(|locks| locks.contains_key(lock));
        Polled {
            current: self.get(key).await,
            locked,
        }
    }

    pub(crate) async fn fill(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> bool {
        if !self.owns(lock, token) {
            return false;
        }
        self.set(key, value.to_vec(), ttl).await;
        self.with_locks(|locks| locks.remove(lock));
        true
    }

    pub(crate) fn renew(&self, lock: &str, token: &str, ttl: Duration) -> bool {
        self.with_locks(|locks| match locks.get_mut(lock) {
            Some((t, expires)) if t == token => {
                *expires = Instant::now() + ttl;
                true
            }
            _ => false,
        })
    }

    pub(crate) fn unlock(&self, lock: &str, token: &str) -> bool {
        self.with_locks(|locks| {
            if locks.get(lock).is_some_and(|(t, _)| t == token) {
                locks.remove(lock);
                true
            } else {
                false
            }
        })
    }
}
