//! Two levels: decoded values in the process in front of Redis (`l1 = true`), kept coherent with
//! Redis across processes.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example multi_level
//! ```
//!
//! The first level needs Redis (its invalidations come from Redis's client tracking); without
//! `REDIS_URL` the example uses `redis://127.0.0.1:6379`. Two `Cache`s stand for two processes:
//! each has its own connections and its own first level. One reads a hot key; the other
//! changes it; the first stops serving the old value as soon as Redis's invalidation arrives.

use std::time::{Duration, Instant};

use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Profile {
    id: u64,
    plan: String,
}

#[redis_cached(ttl = "10m", l1 = true, l1_ttl = "30s", name = "example::profile")]
async fn profile(id: u64) -> Profile {
    tokio::time::sleep(Duration::from_millis(20)).await; // the database
    Profile {
        id,
        plan: "free".into(),
    }
}

async fn cache(url: &str) -> Result<Cache, redis_cached::Error> {
    Cache::builder()
        .url(url)
        .namespace("example-l1")
        .build()
        .await
}

#[tokio::main]
async fn main() -> Result<(), redis_cached::Error> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let (here, elsewhere) = (cache(&url).await?, cache(&url).await?);
    elsewhere.scope(profile_invalidate(7)).await.ok();

    // Warm: a miss, then Redis hits, until the first level has the entry (its invalidation
    // stream must be confirmed live first, a few milliseconds after the first call).
    let started = Instant::now();
    while here.stats().l1_hits == 0 && started.elapsed() < Duration::from_secs(2) {
        here.scope(profile(7)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if here.stats().l1_hits == 0 {
        println!("no first-level hit: is Redis running at {url}? (calls still work: they load)");
        return Ok(());
    }
    let calls = 100_000;
    let timer = Instant::now();
    for _ in 0..calls {
        here.scope(profile(7)).await;
    }
    let per_call = timer.elapsed() / calls;
    let stats = here.stats();
    println!(
        "{calls} calls: {per_call:?} each; first-level hits {}, Redis hits {}, loads {}",
        stats.l1_hits, stats.hits, stats.loads
    );

    // Another process writes: this one stops serving the old value when Redis's invalidation
    // arrives (usually before the write has even returned over there).
    let upgraded = Profile {
        id: 7,
        plan: "pro".into(),
    };
    elsewhere.scope(profile_put(7, &upgraded)).await?;
    let written = Instant::now();
    // Bounded by `l1_liveness` (1 s) whatever happens; usually microseconds.
    while here.scope(profile(7)).await != upgraded {
        if written.elapsed() > Duration::from_secs(5) {
            println!("the other cache's put was not seen here within 5 s");
            return Ok(());
        }
    }
    println!(
        "the other cache's put was seen here {:?} after it returned",
        written.elapsed()
    );
    let stats = here.stats();
    println!(
        "first level: {} entries, {} bytes, stream live: {}",
        stats.l1_entries, stats.l1_bytes, stats.l1_live
    );
    // Stop following invalidations and send this process's counts (`redis-cached stats`).
    here.shutdown().await;
    elsewhere.shutdown().await;
    Ok(())
}
