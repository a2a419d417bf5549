//! Keeping hot entries warm: probabilistic early refresh (XFetch) and stale-while-revalidate.
//!
//! ```text
//! cargo run --example early_refresh
//! ```
//!
//! `early_refresh = 1.0` lets one caller refresh an entry shortly before it expires, with a
//! probability that rises as expiry nears and with how long the load takes. `stale = N` keeps
//! serving the old value for N seconds past the TTL while one caller refreshes it, and whenever
//! the loader fails. Callers never wait for these refreshes: with owned arguments they run in a
//! spawned task.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis_cached::{Cache, redis_cached};

static PRICE: AtomicU64 = AtomicU64::new(100);
static LOADS: AtomicU64 = AtomicU64::new(0);

#[redis_cached(ttl = 2, stale = 60, early_refresh = 1.0, name = "example::price")]
async fn price(sku: String) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await; // a slow pricing service
    let _ = sku;
    PRICE.load(Ordering::SeqCst)
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
    price_invalidate("sku-1".into()).await?;

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for tick in 0..40 {
        if tick == 10 {
            PRICE.store(120, Ordering::SeqCst); // the source of truth changes
        }
        let call = Instant::now();
        let value = price("sku-1".into()).await;
        if tick > 0 {
            slowest = slowest.max(call.elapsed());
        }
        if tick % 5 == 0 {
            println!("t={:>5.1}s price={value}", started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = cache.stats();
    println!(
        "loads: {}, refreshes: {}, stale serves: {}, slowest call after the first: {slowest:?}",
        LOADS.load(Ordering::SeqCst),
        stats.refreshes,
        stats.stale_serves
    );
    Ok(())
}
