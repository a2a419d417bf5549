//! A loop of hits for one contender, to count instructions with
//! `valgrind --tool=callgrind` (repeatable where wall-clock time is not).
//!
//! `hitloop CONTENDER N` starts a private `redis-server`, stores the entry, then makes `N` hits
//! on a current-thread runtime. `scripts/bench.sh` runs it under callgrind with two values of
//! `N`; the difference divided by the difference in `N` is the cost of one hit, with start-up
//! and warm-up cancelled out.

use std::time::Duration;

use redis::AsyncCommands;
use redis_cached_benches::*;

const CONTENDERS: [&str; 9] = [
    "raw-get",
    "redis-cached",
    "cached-crate",
    "raw-mget3",
    "redis-cached-tag1",
    "embedded",
    "moka",
    "l1",
    "moka-get",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = || -> ! {
        eprintln!(
            "usage: hitloop CONTENDER N, with CONTENDER one of {CONTENDERS:?}; or hitloop sizes"
        );
        std::process::exit(2)
    };
    let contender = args.next().unwrap_or_else(|| usage());
    if contender == "sizes" {
        print_future_sizes();
        return;
    }
    let n: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| usage());
    if !CONTENDERS.contains(&contender.as_str()) {
        usage();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(&contender, n));
}

async fn run(contender: &str, n: u64) {
    let (server, cache, memory) = setup().await;
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut raw = client.get_connection_manager().await.expect("connection");

    // Warm every path once, so the loop measures steady-state hits.
    cached_user(1).await;
    tagged1(1).await;
    cache.wait_for_writes().await;
    let bytes: Vec<u8> = raw.get(cached_user_key(1)).await.expect("GET");
    let keys: Vec<String> = (0..3).map(|i| format!("bench:mget:{i}")).collect();
    for key in &keys {
        let _: () = raw.set(key, &bytes).await.expect("SET");
    }
    let _: () = raw.set("bench:raw", &bytes).await.expect("SET");
    cached_crate_user(1).await.expect("cached crate");
    memory.scope(cached_user(1)).await;
    let moka: moka::future::Cache<u64, std::sync::Arc<User>> = moka::future::Cache::new(100);
    let moka_sync: moka::sync::Cache<String, User> = moka::sync::Cache::new(100);
    let moka_key = "bench:bench::l1_user:v1:{1}".to_owned();
    moka_sync.insert(moka_key.clone(), user(1));
    if contender == "l1" {
        // Until the first level answers (its stream confirmed live, the entry read into it).
        loop {
            let before = cache.stats().l1_hits;
            l1_user(1).await;
            if cache.stats().l1_hits > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    for _ in 0..n {
        match contender {
            "raw-get" => drop(raw_get_decode(&mut raw, "bench:raw").await),
            "redis-cached" => drop(cached_user(1).await),
            "raw-mget3" => drop(raw_mget_decode(&mut raw, &keys).await),
            "redis-cached-tag1" => drop(tagged1(1).await),
            "cached-crate" => drop(cached_crate_user(1).await),
            "embedded" => drop(memory.scope(cached_user(1)).await),
            "l1" => drop(l1_user(1).await),
            "moka-get" => drop(moka_sync.get(&moka_key)),
            _ => drop(
                moka.get_with(1, async { std::sync::Arc::new(user(1)) })
                    .await,
            ),
        }
    }
}

/// Sizes of a cached call's future and of the runtime's lookup future: what every call moves.
fn print_future_sizes() {
    use redis_cached::__private as p;
    static TELEMETRY: p::FnTelemetry = p::FnTelemetry::new();
    let spec = p::FnSpec {
        name: "sizes",
        version: 1,
        fingerprint: 0,
        ttl: None,
        none_ttl: None,
        cache_none: true,
        jitter: 0.0,
        stale: Duration::ZERO,
        early_refresh: None,
        lock: true,
        lock_ttl: None,
        lock_wait: None,
        max_load: None,
        l1: None,
        compression: None,
        codec: None,
        telemetry: &TELEMETRY,
    };
    let call = cached_user(1);
    println!(
        "cached_user(1) future: {} bytes",
        std::mem::size_of_val(&call)
    );
    let begin = p::begin::<p::Plain<User>>(
        None,
        &spec,
        Err(redis_cached::Error::NotInstalled),
        Vec::new(),
        None,
        false,
        None,
    );
    println!(
        "lookup (begin) future: {} bytes",
        std::mem::size_of_val(&begin)
    );
}
