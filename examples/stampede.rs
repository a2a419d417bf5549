//! Stampede protection: 1,000 concurrent requests for one cold key run the loader once.
//!
//! ```text
//! cargo run --example stampede                                   # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example stampede  # Redis (also across processes)
//! ```
//!
//! In one process, callers of a key share one load (single-flight). With Redis, the process
//! that misses first takes a lock (`SET NX PX` with a random owner token); other processes wait
//! for its value instead of hitting the database, and get it within milliseconds of the fill.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use redis_cached::{Cache, redis_cached};
use tokio::task::JoinSet;

static DB_QUERIES: AtomicUsize = AtomicUsize::new(0);

/// An expensive aggregation: 200 ms per run.
#[redis_cached(
    ttl = "5m",
    name = "example::dashboard",
    lock_ttl = "10s",
    lock_wait = "3s"
)]
async fn dashboard(org_id: u64) -> Vec<u64> {
    DB_QUERIES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    (0..10).map(|i| org_id * 100 + i).collect()
}

#[tokio::main]
async fn main() -> Result<(), redis_cached::Error> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "mem://".to_owned());
    let cache = Cache::builder()
        .url(&url)
        .namespace("example")
        .build()
        .await?;
    cache.install();
    dashboard_invalidate(42).await?;

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..1000 {
        requests.spawn(dashboard(42));
    }
    let results = requests.join_all().await;
    println!(
        "{} requests answered in {:?}; the database ran {} time(s)",
        results.len(),
        started.elapsed(),
        DB_QUERIES.load(Ordering::SeqCst)
    );
    Ok(())
}
