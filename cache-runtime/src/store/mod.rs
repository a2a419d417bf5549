//! Where entries live: Redis (single node or cluster) or the embedded in-process store.
//!
//! The store moves bytes with an expiry and keeps the small values around an entry: its lock
//! (owner token), its generation (bumped by invalidation, put and refresh, so a load that began
//! earlier cannot fill), and tag versions. The breaker, timeouts and the envelope are layered on
//! top by [`crate::cache`] and [`crate::read_through`].

mod batch;
mod memory;
mod redis;

use std::{ops::Deref, sync::Arc, time::Duration};

pub(crate) use self::memory::MemoryStore;
pub(crate) use self::{batch::Batcher, redis::RedisStore};
use crate::Error;

/// Bytes read from a store: owned when they came over the network, shared when in-process.
#[derive(Debug, Clone)]
pub enum StoredBytes {
    /// Read from Redis.
    Owned(Vec<u8>),
    /// Read from the embedded store.
    Shared(Arc<[u8]>),
}

impl Deref for StoredBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StoredBytes::Owned(v) => v,
            StoredBytes::Shared(v) => v,
        }
    }
}

/// The keys around one entry; all share the entry's hash tag (one cluster slot).
pub(crate) struct EntryKeys<'a> {
    pub(crate) entry: &'a str,
    pub(crate) lock: &'a str,
    pub(crate) generation: &'a str,
}

/// A lookup: the entry, its remaining TTL if asked for, and its tags' current versions.
pub(crate) struct Read {
    pub(crate) current: Option<StoredBytes>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tag_versions: Vec<Option<u64>>,
}

/// Result of trying to take an entry's lock, with the entry and its generation at that moment.
pub(crate) struct Acquired {
    pub(crate) locked: bool,
    pub(crate) current: Option<StoredBytes>,
    pub(crate) generation: Option<String>,
}

/// The store behind a [`Cache`](crate::Cache).
pub(crate) enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Reads an entry with its tags' versions (and its remaining TTL when `with_ttl`).
    pub(crate) async fn read(
        &self,
        key: &str,
        tags: &[String],
        with_ttl: bool,
    ) -> Result<Read, Error> {
        match self {
            Store::Memory(m) => Ok(m.read(key, tags)),
            Store::Redis(r) => r.read(key, tags, with_ttl).await,
        }
    }

    /// Current tag versions.
    pub(crate) async fn tag_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        match self {
            Store::Memory(m) => Ok(m.tag_versions(tags)),
            Store::Redis(r) => r.tag_versions(tags).await,
        }
    }

    /// Tag versions for a load about to start (created where missing, kept alive for `ttl`).
    pub(crate) async fn capture_tags(
        &self,
        tags: &[String],
        ttl: Duration,
    ) -> Result<Vec<u64>, Error> {
        match self {
            Store::Memory(m) => Ok(m.capture_tags(tags, ttl)),
            Store::Redis(r) => r.capture_tags(tags, ttl).await,
        }
    }

    /// Invalidates tags.
    pub(crate) async fn delete_tags(&self, tags: &[String]) -> Result<(), Error> {
        match self {
            Store::Memory(m) => {
                m.delete_tags(tags);
                Ok(())
            }
            Store::Redis(r) => r.delete_tags(tags).await,
        }
    }

    /// Takes the lock with `token` if given and free (`SET NX PX`), and reads the entry and its
    /// generation, in one round trip.
    pub(crate) async fn acquire(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        ttl: Duration,
    ) -> Result<Acquired, Error> {
        match self {
            Store::Memory(m) => Ok(m.acquire(keys, token, ttl)),
            Store::Redis(r) => r.acquire(keys, token, ttl).await,
        }
    }

    /// Reads the entry and whether its lock is held, in one round trip.
    pub(crate) async fn poll(
        &self,
        keys: &EntryKeys<'_>,
    ) -> Result<(Option<StoredBytes>, bool), Error> {
        match self {
            Store::Memory(m) => Ok(m.poll(keys)),
            Store::Redis(r) => r.poll(keys).await,
        }
    }

    /// Writes the entry only if its generation is still `generation` and, when `token` is given,
    /// the lock is still the token's (releasing it).
    pub(crate) async fn fill(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: Option<&str>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Error> {
        match self {
            Store::Memory(m) => Ok(m.fill(keys, token, generation, value, ttl)),
            Store::Redis(r) => r.fill(keys, token, generation, value, ttl).await,
        }
    }

    /// Write-through: a new generation and the entry.
    pub(crate) async fn put(
        &self,
        keys: &EntryKeys<'_>,
        value: &[u8],
        ttl: Duration,
        generation_ttl: Duration,
    ) -> Result<(), Error> {
        match self {
            Store::Memory(m) => {
                m.put(keys, value, ttl, generation_ttl);
                Ok(())
            }
            Store::Redis(r) => r.put(keys, value, ttl, generation_ttl).await,
        }
    }

    /// A new generation (loads in flight can no longer fill); returns it.
    pub(crate) async fn bump(
        &self,
        keys: &EntryKeys<'_>,
        generation_ttl: Duration,
    ) -> Result<String, Error> {
        match self {
            Store::Memory(m) => Ok(m.bump(keys, generation_ttl)),
            Store::Redis(r) => r.bump(keys, generation_ttl).await,
        }
    }

    /// Drops the entry and its lock after starting a new generation.
    pub(crate) async fn invalidate(
        &self,
        keys: &EntryKeys<'_>,
        generation_ttl: Duration,
    ) -> Result<(), Error> {
        match self {
            Store::Memory(m) => {
                m.invalidate(keys, generation_ttl);
                Ok(())
            }
            Store::Redis(r) => r.invalidate(keys, generation_ttl).await,
        }
    }

    /// Extends `lock`, only if `token` still owns it.
    pub(crate) async fn renew(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        match self {
            Store::Memory(m) => Ok(m.renew(lock, token, ttl)),
            Store::Redis(r) => r.renew(lock, token, ttl).await,
        }
    }

    /// Releases `lock`, only if `token` owns it.
    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        match self {
            Store::Memory(m) => Ok(m.unlock(lock, token)),
            Store::Redis(r) => r.unlock(lock, token).await,
        }
    }

    /// Whether calls cross the network (and so go through the breaker and timeouts).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Store::Redis(_))
    }
}
