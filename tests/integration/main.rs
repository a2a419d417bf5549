//! Integration tests through the attribute, against private `redis-server` processes.

mod acl;
mod bad_bytes;
mod batching;
mod cluster;
mod compression;
mod expiry;
mod fail_open;
mod first_level;
mod freshness;
mod invalidation;
mod keys;
mod memory_store;
mod ownership;
mod read_through;
mod replication;
mod round_trips;
mod sentinel;
mod stampede;
mod support;
mod telemetry;
mod tls;

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

/// A cache whose hits each send their own `GET` (no lookup batching).
pub async fn unbatched_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("test")
        .batch_lookups(false)
        .build()
        .await
        .expect("build")
}

/// A cache with a generous operation timeout, for tests that must not see a timeout on a
/// loaded machine (races that assert no stale result, where an invalidation must succeed).
pub async fn patient_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("test")
        .operation_timeout(Duration::from_secs(2))
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

/// A plain connection to `url`, for loaders that record what they did in Redis itself (so
/// every process of a test sees it).
pub async fn raw_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to test redis")
}

/// Clears the server's per-command call counts (`CONFIG RESETSTAT`).
pub async fn reset_command_counts(server: &RedisServer) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut server.conn().await)
        .await
        .expect("RESETSTAT");
}

/// Calls per command since the last reset (`INFO commandstats`), without the `INFO` and
/// `CONFIG` of the measurement itself. Commands run inside scripts are counted too.
pub async fn command_counts(server: &RedisServer) -> std::collections::HashMap<String, u64> {
    // The fleet counters' periodic flush (HINCRBY, ZINCRBY, HSET, EXPIRE) runs off the call
    // path and may land in any window: left out here, counted in the telemetry tests.
    all_command_counts(server)
        .await
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "hincrby" | "zincrby" | "hset" | "expire"))
        .collect()
}

/// Every command the server ran since the last reset (but `INFO` and `CONFIG`), by name.
pub async fn all_command_counts(server: &RedisServer) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut server.conn().await)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| !name.starts_with("info") && !name.starts_with("config"))
        .collect()
}

/// Remaining TTL of a key in milliseconds (-1: no expiry, -2: absent).
pub async fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut server.conn().await)
        .await
        .expect("PTTL")
}
