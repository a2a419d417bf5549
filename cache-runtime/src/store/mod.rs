//! Where entries live: Redis (single node or cluster) or the embedded in-process store.
//!
//! The store only moves bytes with an expiry; the breaker, timeouts and the envelope are
//! layered on top by [`crate::cache`].

mod memory;
mod redis;

use std::{ops::Deref, sync::Arc, time::Duration};

pub(crate) use self::memory::MemoryStore;
pub(crate) use self::redis::RedisStore;
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

/// Result of trying to take an entry's lock, with the entry as it was at that moment.
pub(crate) struct Acquired {
    pub(crate) locked: bool,
    pub(crate) current: Option<StoredBytes>,
}

/// What a waiter sees while another process holds the lock.
pub(crate) struct Polled {
    pub(crate) current: Option<StoredBytes>,
    pub(crate) locked: bool,
}

/// The store behind a [`Cache`](crate::Cache).
pub(crate) enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Reads a key.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<StoredBytes>, Error> {
        match self {
            Store::Memory(m) => Ok(m.get(key).await),
            Store::Redis(r) => r.get(key).await,
        }
    }

    /// Writes a key with an expiry (every key written has one).
    pub(crate) async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Error> {
        match self {
            Store::Memory(m) => {
                m.set(key, value, ttl).await;
                Ok(())
            }
            Store::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    /// Deletes a key.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            Store::Memory(m) => {
                m.delete(key).await;
                Ok(())
            }
            Store::Redis(r) => r.delete(key).await,
        }
    }

    /// Reads a key and its remaining time to live (`None` when absent or without expiry).
    pub(crate) async fn get_with_ttl(
        &self,
        key: &str,
    ) -> Result<(Option<StoredBytes>, Option<Duration>), Error> {
        match self {
            Store::Memory(m) => Ok(m.get_with_ttl(key).await),
            Store::Redis(r) => r.get_with_ttl(key).await,
        }
    }

    /// Takes `lock` with `token` if it is free (`SET NX PX`), and reads `key`, in one round trip.
    pub(crate) async fn acquire(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Acquired, Error> {
        match self {
            Store::Memory(m) => Ok(m.acquire(key, lock, token, ttl).await),
            Store::Redis(r) => r.acquire(key, lock, token, ttl).await,
        }
    }

    /// Reads `key` and whether `lock` is held, in one round trip.
    pub(crate) async fn poll(&self, key: &str, lock: &str) -> Result<Polled, Error> {
        match self {
            Store::Memory(m) => Ok(m.poll(key, lock).await),
            Store::Redis(r) => r.poll(key, lock).await,
        }
    }

    /// Writes `key` and releases `lock`, only if `token` still owns the lock.
    pub(crate) async fn fill(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Error> {
        match self {
            Store::Memory(m) => Ok(m.fill(key, lock, token, value, ttl).await),
            Store::Redis(r) => r.fill(key, lock, token, value, ttl).await,
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
