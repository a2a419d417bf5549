//! Integration tests through the attribute, against private `redis-server` processes.

mod bad_bytes;
mod cluster;
mod expiry;
mod fail_open;
mod freshness;
mod invalidation;
mod keys;
mod memory_store;
mod read_through;
mod round_trips;
mod stampede;
mod support;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use redis_cached::Cache;
use support::RedisServer;

/// A cache on `server` with a short operation timeout, as a test wants it.
pub async fn redis_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("test")
        .operation_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("build cache")
}

/// Counts loader runs.
#[derive(Default)]
pub struct Calls(AtomicUsize);

impl Calls {
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Every key in the server.
pub async fn all_keys(server: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut server.conn().await)
        .await
        .expect("KEYS")
}

/// Remaining TTL of a key in milliseconds (-1: no expiry, -2: absent).
pub async fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut server.conn().await)
        .await
        .expect("PTTL")
}
