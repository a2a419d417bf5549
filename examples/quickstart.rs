//! The quickstart: a slow "database" behind `#[redis_cached]`.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded store, no Redis
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart  # against Redis
//! ```

use std::time::{Duration, Instant};

use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    org_id: u64,
}

/// Stands in for PostgreSQL: 50 ms per query.
struct Database;

impl Database {
    async fn fetch_user(&self, id: u64) -> Result<Option<User>, String> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((id != 0).then(|| User {
            id,
            name: format!("user-{id}"),
            org_id: 7,
        }))
    }
}

#[redis_cached(ttl = "10m", key = "user:{id}", name = "quickstart::get_user")]
async fn get_user(id: u64, #[cache(skip)] db: &Database) -> Result<Option<User>, String> {
    db.fetch_user(id).await
}

async fn timed<T>(label: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    println!(
        "{label:<40} {:>10.3} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    out
}

#[tokio::main]
async fn main() -> Result<(), redis_cached::Error> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "mem://".to_owned());
    let cache = Cache::builder()
        .url(&url)
        .namespace("quickstart")
        .build()
        .await?;
    cache.install();
    println!("cache: {url}");
    let db = Database;

    // Start clean, so the first call is a miss even against a Redis that saw an earlier run.
    get_user_invalidate(42).await?;
    get_user_invalidate(0).await?;

    let user = timed("get_user(42): miss, loads from the db", get_user(42, &db)).await;
    println!("  -> {user:?}");
    timed("get_user(42): hit", get_user(42, &db)).await.ok();
    timed("get_user(0): miss, caches `None`", get_user(0, &db))
        .await
        .ok();
    timed("get_user(0): negative hit", get_user(0, &db))
        .await
        .ok();

    get_user_invalidate(42).await?;
    timed("get_user(42) after invalidate: miss", get_user(42, &db))
        .await
        .ok();
    let renamed = User {
        id: 42,
        name: "renamed".into(),
        org_id: 7,
    };
    get_user_put(42, &renamed).await?;
    let after_put = timed("get_user(42) after put: hit", get_user(42, &db)).await;
    println!("  -> {after_put:?}");
    println!("key: {}", get_user_key(42));

    // Entries are stored in the background; let pending stores land before exiting.
    cache.shutdown().await;
    let stats = cache.stats();
    println!(
        "hits {}, misses {}, loader runs {}, redis errors {}",
        stats.hits, stats.misses, stats.loads, stats.backend_errors
    );
    Ok(())
}
