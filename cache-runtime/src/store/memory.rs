//! The embedded in-process store, for programs and tests without Redis.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache as Moka};

use super::StoredBytes;

#[derive(Clone)]
struct MemoryEntry {
    bytes: Arc<[u8]>,
    ttl: Duration,
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
        MemoryStore { entries }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<StoredBytes> {
        self.entries
            .get(key)
            .await
            .map(|e| StoredBytes::Shared(e.bytes))
    }

    pub(crate) async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let entry = MemoryEntry {
            bytes: value.into(),
            ttl,
        };
        self.entries.insert(key.to_owned(), entry).await;
    }

    pub(crate) async fn delete(&self, key: &str) {
        self.entries.invalidate(key).await;
    }
}
