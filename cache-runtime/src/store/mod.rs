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

    /// Whether calls cross the network (and so go through the breaker and timeouts).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Store::Redis(_))
    }
}
