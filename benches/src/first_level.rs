//! The first level (`l1 = true`): hit latency and 64-task throughput against `moka`'s own
//! `get` in the same run, and the invalidation lag across processes.

use std::{
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::AsyncCommands;
use redis_cached::Cache;
use redis_cached_benches::*;

use super::{
    Bench, PASSES, PER_TASK, Row, THROUGHPUT_PASSES, histogram, latency, median, throughput,
};

/// Set in the child process of the lag scenario: the Redis URL.
pub const CHILD_ENV: &str = "REDIS_CACHED_BENCH_L1_CHILD";
/// Rounds of the lag scenario.
const LAG_ROUNDS: u64 = 500;
const LAG_ID: u64 = 7;

fn ns(h: &hdrhistogram::Histogram<u64>, q: f64) -> String {
    format!("{:.3} µs", h.value_at_quantile(q) as f64 / 1000.0)
}

/// Makes `call` until `cache` answers it from its first level.
async fn warm<Fut: std::future::Future>(cache: &Cache, call: impl Fn() -> Fut) {
    for _ in 0..10_000 {
        let before = cache.stats().l1_hits;
        call().await;
        if cache.stats().l1_hits > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the first level never answered");
}

/// First-level hits, one task: latency against `moka::sync::Cache::get` of a built key.
pub(crate) async fn hits(b: &mut Bench) {
    let Bench {
        cache,
        rows,
        ratios,
        ..
    } = b;
    warm(cache, || l1_user(1)).await;
    let moka: moka::sync::Cache<String, User> = moka::sync::Cache::new(10_000);
    let key = "bench:bench::l1_user:v1:{1}".to_owned();
    moka.insert(key.clone(), user(1));
    let (mut ours, mut floor) = (histogram(), histogram());
    for pass in 0..PASSES {
        for contender in if pass % 2 == 0 { [0, 1] } else { [1, 0] } {
            match contender {
                0 => latency(&mut floor, 100_000, |_| std::future::ready(moka.get(&key))).await,
                _ => latency(&mut ours, 100_000, |_| l1_user(1)).await,
            }
        }
    }
    let ratio = ours.value_at_quantile(0.5) as f64 / floor.value_at_quantile(0.5).max(1) as f64;
    ratios.push(format!(
        "first-level hit p50: {} vs moka get {}, {ratio:.2}x (target <= 2x and under 1 µs)",
        ns(&ours, 0.5),
        ns(&floor, 0.5)
    ));
    for (contender, h, other) in [
        (
            "moka::sync::Cache get + clone (floor)",
            &floor,
            String::new(),
        ),
        (
            "redis-cached, first level",
            &ours,
            format!("{ratio:.2}x floor"),
        ),
    ] {
        rows.push(Row {
            scenario: "first-level hit, 1 task".into(),
            contender: contender.into(),
            p50: ns(h, 0.5),
            p99: ns(h, 0.99),
            other,
        });
    }
}

/// First-level hits from 64 tasks on 64 keys, against `moka` `get` the same way.
pub(crate) async fn throughput_64(b: &mut Bench) {
    let Bench {
        cache,
        rows,
        ratios,
        ..
    } = b;
    for id in 0..64 {
        warm(cache, || l1_user(id)).await;
    }
    let moka: moka::sync::Cache<String, User> = moka::sync::Cache::new(10_000);
    let keys: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        (0..64)
            .map(|id| format!("bench:bench::l1_user:v1:{{{id}}}"))
            .collect(),
    );
    for (id, key) in keys.iter().enumerate() {
        moka.insert(key.clone(), user(id as u64));
    }
    let (mut floor_ops, mut ours_ops) = (Vec::new(), Vec::new());
    let per_task = PER_TASK * 20;
    for pass in 0..THROUGHPUT_PASSES {
        let floor_op = {
            let (moka, keys) = (moka.clone(), keys.clone());
            move |i: u64| std::future::ready(moka.get(&keys[i as usize]))
        };
        if pass % 2 == 0 {
            floor_ops.push(throughput(64, per_task, floor_op).await);
            ours_ops.push(throughput(64, per_task, l1_user).await);
        } else {
            ours_ops.push(throughput(64, per_task, l1_user).await);
            floor_ops.push(throughput(64, per_task, floor_op).await);
        }
    }
    let ratio = median(
        &floor_ops
            .iter()
            .zip(&ours_ops)
            .map(|(f, o)| o / f)
            .collect::<Vec<_>>(),
    );
    ratios.push(format!(
        "64-task first-level throughput: {ratio:.3}x moka get, median of {THROUGHPUT_PASSES} adjacent-pass ratios"
    ));
    for (contender, ops) in [
        ("moka::sync::Cache get + clone (floor)", &floor_ops),
        ("redis-cached, first level", &ours_ops),
    ] {
        rows.push(Row {
            scenario: "first-level hit, 64 tasks".into(),
            contender: contender.into(),
            p50: String::new(),
            p99: String::new(),
            other: format!("{:.2} M calls/s (median pass)", median(ops) / 1e6),
        });
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// How long after `NAME_put` returns in this process another process stops serving the old
/// value from its first level: the start of the child's first read that returned the new
/// value (it reads without pause), minus the put's return (0 when it came before).
pub(crate) async fn lag(b: &mut Bench, url: &str) {
    let Bench {
        cache,
        rows,
        ratios,
        raw,
        ..
    } = b;
    cache.scope(l1_counter_put(LAG_ID, &0)).await.expect("put");
    let _: () = raw.del(&["l1:ready", "l1:seen"]).await.expect("DEL");
    let mut child = Command::new(std::env::current_exe().expect("bench binary"))
        .env(CHILD_ENV, url)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child process");
    let spawned = std::time::Instant::now();
    while !raw.exists::<_, bool>("l1:ready").await.expect("EXISTS") {
        assert!(
            spawned.elapsed() < Duration::from_secs(30),
            "the lag scenario's child process never got ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut returned = Vec::new();
    for round in 1..=LAG_ROUNDS {
        cache
            .scope(l1_counter_put(LAG_ID, &round))
            .await
            .expect("put");
        returned.push(now_us());
        // Time for the child to take the new value into its first level again.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(child.wait().expect("child").success(), "child failed");
    let seen: String = raw.get("l1:seen").await.expect("GET seen");
    let seen: std::collections::HashMap<u64, u64> = seen
        .split(',')
        .filter_map(|pair| {
            let (round, at) = pair.split_once(' ')?;
            Some((round.parse().ok()?, at.parse().ok()?))
        })
        .collect();
    let mut h = histogram();
    for (i, at) in returned.iter().enumerate() {
        if let Some(seen) = seen.get(&(i as u64 + 1)) {
            h.record(seen.saturating_sub(*at) * 1000).ok();
        }
    }
    ratios.push(format!(
        "first-level invalidation lag across processes: p50 {}, p99 {} over {} puts (target p99 < 5 ms)",
        ns(&h, 0.5),
        ns(&h, 0.99),
        h.len()
    ));
    rows.push(Row {
        scenario: "first-level invalidation lag".into(),
        contender: "NAME_put returned here -> old value no longer served in another process".into(),
        p50: ns(&h, 0.5),
        p99: ns(&h, 0.99),
        other: format!("{} of {LAG_ROUNDS} puts seen", h.len()),
    });
}

/// The lag scenario's other process: reads `l1_counter` without pause and notes when each new
/// value was first served.
pub async fn lag_child(url: String) {
    let cache = Cache::builder()
        .url(&url)
        .namespace("bench")
        .build()
        .await
        .expect("cache");
    cache.install();
    let mut raw = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    warm(&cache, || l1_counter(LAG_ID)).await;
    let _: () = raw.set("l1:ready", 1).await.expect("SET");
    let mut last = 0;
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while last < LAG_ROUNDS {
        // The parent's puts take a few seconds; past a minute it has failed.
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let started = now_us();
        let value = l1_counter(LAG_ID).await;
        if value != last {
            seen.push(format!("{value} {started}"));
            last = value;
        }
        tokio::task::yield_now().await;
    }
    let _: () = raw.set("l1:seen", seen.join(",")).await.expect("SET");
}
