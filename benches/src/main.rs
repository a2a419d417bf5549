//! The benchmark: this library against the floor (raw `redis` commands on the same kind of
//! connection) and a hand-written cache-aside, measured in one run with the contenders
//! interleaved pass by pass, so machine noise hits all alike.
//!
//! Starts its own `redis-server` on a free loopback port. Run with `scripts/bench.sh`.
//! Prints a Markdown table; `docs/benchmarks.md` holds a recorded run.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use redis::{AsyncCommands, aio::ConnectionManager};
use redis_cached::Cache;
use redis_cached_benches::*;

mod first_level;
mod codecs;
mod payloads;

const PASSES: usize = 5;
/// Many short passes: the VM's throughput swings from one second to the next, and the median of
/// many adjacent-pass ratios is steadier than a few long passes.
const THROUGHPUT_PASSES: usize = 31;
/// Calls per task in one throughput pass (64 tasks).
const PER_TASK: usize = 500;

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("histogram")
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Latency of `op`, one call at a time, recorded into `h`.
async fn latency<F, Fut>(h: &mut Histogram<u64>, ops: usize, mut op: F)
where
    F: FnMut(u64) -> Fut,
    Fut: Future,
{
    // Behind a simulated network, fewer operations keep each scenario's time about the same.
    let ops = match simulated_rtt() {
        Some(rtt) => (ops as u128 * 100 / (100 + rtt.as_micros())).max(200) as usize,
        None => ops,
    };
    for i in 0..ops {
        let started = Instant::now();
        std::hint::black_box(op(i as u64).await);
        h.record(started.elapsed().as_nanos() as u64).ok();
    }
}

/// Operations per second with `tasks` concurrent tasks doing `per_task` calls each.
async fn throughput<F, Fut>(tasks: usize, per_task: usize, op: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future + Send,
{
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let op = op.clone();
        set.spawn(async move {
            for i in 0..per_task {
                std::hint::black_box(op((t * per_task + i) as u64 % 64).await);
            }
        });
    }
    set.join_all().await;
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

struct Row {
    scenario: String,
    contender: String,
    p50: String,
    p99: String,
    other: String,
}

fn row(scenario: &str, contender: &str, h: &Histogram<u64>, other: String) -> Row {
    Row {
        scenario: scenario.into(),
        contender: contender.into(),
        p50: format!("{:.1} µs", us(h.value_at_quantile(0.5))),
        p99: format!("{:.1} µs", us(h.value_at_quantile(0.99))),
        other,
    }
}

/// What every scenario uses, and what they report.
struct Bench {
    cache: Cache,
    memory: Cache,
    raw: ConnectionManager,
    /// The stored envelope of `cached_user(1)`, the bytes the floors read.
    bytes: Vec<u8>,
    rows: Vec<Row>,
    ratios: Vec<String>,
}

/// The scenarios, by the name `BENCH_ONLY` selects them with (comma-separated).
const SCENARIOS: [&str; 13] = [
    "hits",
    "throughput",
    "tagged",
    "miss",
    "miss_proxy",
    "stampede",
    "invalidation",
    "breaker",
    "l1",
    "l1_throughput",
    "l1_lag",
    "payloads",
    "codecs",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(url) = std::env::var(first_level::CHILD_ENV) {
        return first_level::lag_child(url).await;
    }
    // What a production service runs: a `fmt` subscriber at INFO and a Prometheus recorder.
    // Installed before the first cached call, so the functions' metric handles use it.
    let _prometheus = if std::env::var_os("BENCH_TELEMETRY").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::io::stderr)
            .init();
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder");
        println!("(with a fmt subscriber at INFO and a Prometheus recorder installed)");
        Some(handle)
    } else {
        None
    };
    let (server, cache, memory) = setup().await;
    let url = server.url();
    if let Some(rtt) = simulated_rtt() {
        println!("(every client through a delaying proxy: {rtt:?} round trip added)");
    }
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut raw = client.get_connection_manager().await.expect("connection");
    cached_user(1).await;
    cache.wait_for_writes().await;
    let bytes: Vec<u8> = raw.get(cached_user_key(1)).await.expect("GET");
    let _: () = raw.set("bench:raw", &bytes).await.expect("SET");
    let mut b = Bench {
        cache,
        memory,
        raw,
        bytes,
        rows: Vec::new(),
        ratios: Vec::new(),
    };

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let selected = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    // `instructions` is run by scripts/bench.sh (callgrind over the hitloop binary).
    if let Some(unknown) = only
        .split(',')
        .map(str::trim)
        .find(|o| !o.is_empty() && *o != "instructions" && !SCENARIOS.contains(o))
    {
        panic!("BENCH_ONLY: unknown scenario {unknown:?}; known: {SCENARIOS:?}");
    }
    for name in SCENARIOS {
        if !selected(name) {
            continue;
        }
        match name {
            "hits" => hits(&mut b).await,
            "throughput" => hit_throughput(&mut b).await,
            "tagged" => tagged(&mut b).await,
            "miss" => miss(&mut b).await,
            "miss_proxy" => miss_behind_proxy(&mut b, server.port).await,
            "stampede" => stampede(&mut b).await,
            "invalidation" => invalidation(&mut b).await,
            "l1" => first_level::hits(&mut b).await,
            "l1_throughput" => first_level::throughput_64(&mut b).await,
            "l1_lag" => first_level::lag(&mut b, &url).await,
            "payloads" => payload_table(&url).await,
            "codecs" => codec_table(),
            "breaker" => breaker(&mut b).await,
            other => unreachable!("scenario {other}"),
        }
    }
    drop(server);
    let Bench { rows, ratios, .. } = b;

    println!("| scenario | contender | p50 | p99 | notes |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.contender, r.p50, r.p99, r.other
        );
    }
    println!();
    for r in ratios {
        println!("- {r}");
    }
}

fn floor_ratio(ours: &Histogram<u64>, floor: &Histogram<u64>) -> f64 {
    ours.value_at_quantile(0.5) as f64 / floor.value_at_quantile(0.5).max(1) as f64
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The codec table (in process): printed at once.
fn codec_table() {
    println!();
    println!("| payload | codec | bytes | encode p50 | decode p50 |");
    println!("|---|---|---|---|---|");
    for r in codecs::table() {
        println!(
            "| {} | {} | {} | {:.0} ns | {:.0} ns |",
            r.payload, r.codec, r.bytes, r.encode_ns, r.decode_ns
        );
    }
}

/// The payload table (its own columns): printed at once.
async fn payload_table(url: &str) {
    let rows = payloads::measure(url, 2_000).await;
    println!();
    println!("| payload | encoding | stored bytes | vs JSON | hit p50 | decode p50 |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2}x smaller | {:.1} µs | {:.1} µs |",
            r.payload,
            r.setting,
            r.stored,
            r.json as f64 / r.stored as f64,
            r.hit_p50_us,
            r.decode_us
        );
    }
}

/// Hot hits, one task at a time: latency of each contender.
async fn hits(b: &mut Bench) {
    let Bench {
        memory,
        raw,
        rows,
        ratios,
        ..
    } = b;
    memory.scope(cached_user(1)).await;
    let moka: moka::future::Cache<u64, Arc<User>> = moka::future::Cache::new(10_000);
    cached_crate_user(1).await.expect("cached crate");
    let (mut floor, mut ours, mut mem, mut moka_h, mut peer) = (
        histogram(),
        histogram(),
        histogram(),
        histogram(),
        histogram(),
    );
    for pass in 0..PASSES {
        let order = if pass % 2 == 0 {
            [0, 1, 2, 3, 4]
        } else {
            [4, 3, 2, 1, 0]
        };
        for contender in order {
            match contender {
                0 => {
                    latency(&mut floor, 20_000, |_| {
                        let mut c = raw.clone();
                        async move { raw_get_decode(&mut c, "bench:raw").await }
                    })
                    .await
                }
                1 => latency(&mut ours, 20_000, |_| cached_user(1)).await,
                2 => latency(&mut mem, 20_000, |_| memory.scope(cached_user(1))).await,
                3 => latency(&mut peer, 20_000, |_| cached_crate_user(1)).await,
                _ => {
                    latency(&mut moka_h, 20_000, |_| {
                        moka.get_with(1, async { Arc::new(user(1)) })
                    })
                    .await
                }
            }
        }
    }
    let ratio = floor_ratio(&ours, &floor);
    ratios.push(format!(
        "Redis hit p50: {ratio:.3}x raw GET + decode (target <= 1.10)"
    ));
    rows.push(row(
        "hit, 1 task",
        "raw redis GET + decode (floor)",
        &floor,
        String::new(),
    ));
    rows.push(row(
        "hit, 1 task",
        "redis-cached, Redis",
        &ours,
        format!("{ratio:.3}x floor"),
    ));
    let peer_ratio = floor_ratio(&peer, &floor);
    rows.push(row(
        "hit, 1 task",
        "`cached` crate, AsyncRedisCache",
        &peer,
        format!("{peer_ratio:.3}x floor"),
    ));
    rows.push(row(
        "hit, 1 task",
        "redis-cached, embedded store",
        &mem,
        String::new(),
    ));
    rows.push(row(
        "hit, 1 task",
        "moka get_with (in-process floor)",
        &moka_h,
        String::new(),
    ));
}

/// Hot hits from 64 tasks at once: operations per second.
async fn hit_throughput(b: &mut Bench) {
    let Bench {
        cache,
        raw,
        rows,
        ratios,
        ..
    } = b;
    for id in 0..64 {
        cached_user(id).await;
    }
    cache.wait_for_writes().await;
    for id in 0..64 {
        cached_crate_user(id).await.expect("cached crate");
    }
    let (mut floor_ops, mut ours_ops, mut peer_ops) = (Vec::new(), Vec::new(), Vec::new());
    for pass in 0..THROUGHPUT_PASSES {
        let raw_op = {
            let raw = raw.clone();
            move |_: u64| {
                let mut c = raw.clone();
                async move { raw_get_decode(&mut c, "bench:raw").await }
            }
        };
        // The installed default, as applications use it (no per-call scope).
        let ours_op = cached_user;
        let peer_op = cached_crate_user;
        if pass % 2 == 0 {
            floor_ops.push(throughput(64, PER_TASK, raw_op).await);
            ours_ops.push(throughput(64, PER_TASK, ours_op).await);
            peer_ops.push(throughput(64, PER_TASK, peer_op).await);
        } else {
            peer_ops.push(throughput(64, PER_TASK, peer_op).await);
            ours_ops.push(throughput(64, PER_TASK, ours_op).await);
            floor_ops.push(throughput(64, PER_TASK, raw_op).await);
        }
    }
    // Throughput swings with the VM's noise from pass to pass, so the ratio is the median of
    // the ratios of adjacent passes, which share their noise.
    let pair_ratios: Vec<f64> = floor_ops
        .iter()
        .zip(&ours_ops)
        .map(|(f, o)| o / f)
        .collect();
    let (f, o, p) = (median(&floor_ops), median(&ours_ops), median(&peer_ops));
    let pair_ratio = median(&pair_ratios);
    let peer_ratio = median(
        &floor_ops
            .iter()
            .zip(&peer_ops)
            .map(|(f, p)| p / f)
            .collect::<Vec<_>>(),
    );
    ratios.push(format!(
        "64-task hit throughput: {pair_ratio:.3}x raw GET, median of {THROUGHPUT_PASSES} adjacent-pass ratios (target >= 0.90)"
    ));
    rows.push(Row {
        scenario: "hit, 64 tasks".into(),
        contender: "raw redis GET + decode (floor)".into(),
        p50: String::new(),
        p99: String::new(),
        other: format!("{f:.0} ops/s (median of {THROUGHPUT_PASSES})"),
    });
    rows.push(Row {
        scenario: "hit, 64 tasks".into(),
        contender: "redis-cached, Redis".into(),
        p50: String::new(),
        p99: String::new(),
        other: format!("{o:.0} ops/s, {pair_ratio:.3}x floor (median of pass ratios)"),
    });
    rows.push(Row {
        scenario: "hit, 64 tasks".into(),
        contender: "`cached` crate, AsyncRedisCache".into(),
        p50: String::new(),
        p99: String::new(),
        other: format!("{p:.0} ops/s, {peer_ratio:.3}x floor (median of pass ratios)"),
    });
    eprintln!(
        "64 tasks, ops/s per pass: floor {floor_ops:.0?} ours {ours_ops:.0?} cached {peer_ops:.0?}"
    );
}

/// Tagged hits against an `MGET` of as many keys.
async fn tagged(b: &mut Bench) {
    let Bench {
        cache,
        raw,
        bytes,
        rows,
        ratios,
        ..
    } = b;
    tagged1(1).await;
    tagged3(1).await;
    cache.wait_for_writes().await;
    for (declared, read_keys) in [(1usize, 3usize), (3, 5)] {
        let keys: Vec<String> = (0..read_keys).map(|i| format!("bench:mget:{i}")).collect();
        for k in &keys {
            let _: () = raw.set(k, &bytes).await.expect("SET");
        }
        let (mut mget, mut tagged) = (histogram(), histogram());
        for pass in 0..PASSES {
            for which in if pass % 2 == 0 { [0, 1] } else { [1, 0] } {
                if which == 0 {
                    latency(&mut mget, 10_000, |_| {
                        let mut c = raw.clone();
                        let keys = keys.clone();
                        async move { raw_mget_decode(&mut c, &keys).await }
                    })
                    .await;
                } else if declared == 1 {
                    latency(&mut tagged, 10_000, |_| tagged1(1)).await;
                } else {
                    latency(&mut tagged, 10_000, |_| tagged3(1)).await;
                }
            }
        }
        let ratio = floor_ratio(&tagged, &mget);
        let label = format!("tagged hit, {declared} tag(s) + function tag ({read_keys} keys)");
        ratios.push(format!(
            "{label}: {ratio:.3}x MGET of {read_keys} keys (target <= 1.10)"
        ));
        rows.push(row(
            &label,
            &format!("raw MGET of {read_keys} keys + decode"),
            &mget,
            String::new(),
        ));
        rows.push(row(
            &label,
            "redis-cached",
            &tagged,
            format!("{ratio:.3}x MGET"),
        ));
    }
}

/// The miss path: what each contender adds to the loader's own time.
async fn miss(b: &mut Bench) {
    let Bench {
        raw, rows, ratios, ..
    } = b;
    // Each call's overhead is its time minus its own loader's time, which the loader measures
    // itself (`LOADER_NANOS`): calls run one at a time, so nothing else adds to it. The loader
    // sleeps exactly (see `Wait::Exact`), so every contender's loader takes the same time.
    let delay = Wait::Exact(Duration::from_millis(1));
    let (mut alone, mut aside, mut ours, mut peer) =
        (histogram(), histogram(), histogram(), histogram());
    let mut next_id = 1_000_000u64;
    for pass in 0..PASSES {
        let order = if pass % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for which in order {
            for _ in 0..400 {
                next_id += 1;
                let id = next_id;
                let loaded_before = LOADER_NANOS.load(Ordering::SeqCst);
                let started = Instant::now();
                match which {
                    0 => drop(database(id, delay).await),
                    1 => {
                        let key = format!("bench:aside:{id}");
                        cache_aside(raw, &key, id, delay).await;
                    }
                    2 => drop(slow_user(id, delay).await),
                    _ => drop(
                        cached_crate_slow_user(id, delay)
                            .await
                            .expect("cached crate"),
                    ),
                }
                let took = started.elapsed().as_nanos() as u64;
                let loader = LOADER_NANOS.load(Ordering::SeqCst) - loaded_before;
                let h = match which {
                    0 => &mut alone,
                    1 => &mut aside,
                    2 => &mut ours,
                    _ => &mut peer,
                };
                h.record(if which == 0 {
                    took
                } else {
                    took.saturating_sub(loader)
                })
                .ok();
            }
        }
    }
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5);
    ratios.push(format!(
        "miss overhead beyond the loader (p50): {:.1} µs vs {:.1} µs hand-written, {:.2}x (target <= 1.3)",
        us(p50(&ours)),
        us(p50(&aside)),
        p50(&ours) as f64 / p50(&aside).max(1) as f64
    ));
    rows.push(row(
        "miss (1 ms loader)",
        "the loader alone (its own time)",
        &alone,
        String::new(),
    ));
    for (contender, h) in [
        ("hand-written GET + SET EX", &aside),
        ("redis-cached (lookup, lock, loader; fill after)", &ours),
        ("`cached` crate, AsyncRedisCache", &peer),
    ] {
        rows.push(row(
            "miss: time beyond the loader",
            contender,
            h,
            String::new(),
        ));
    }
}

/// The miss path with Redis behind a delaying proxy (about 1 ms round trip), where what a
/// caller waits for is counted in round trips rather than microseconds of CPU.
async fn miss_behind_proxy(b: &mut Bench, upstream: u16) {
    let Bench { rows, ratios, .. } = b;
    let one_way = Duration::from_micros(450);
    let proxy = redis_cached_benches::proxy::DelayProxy::start(upstream, one_way);
    let cache = Cache::builder()
        .url(proxy.url())
        .namespace("bench_proxy")
        .operation_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("cache");
    let client = redis::Client::open(proxy.url()).expect("client");
    let mut raw = client.get_connection_manager().await.expect("connection");
    let mut rtt = histogram();
    for _ in 0..200 {
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut raw)
            .await
            .expect("PING");
        rtt.record(started.elapsed().as_nanos() as u64).ok();
    }
    let delay = Wait::Exact(Duration::from_millis(1));
    let (mut aside, mut ours) = (histogram(), histogram());
    let mut next_id = 5_000_000u64;
    for pass in 0..PASSES {
        for which in if pass % 2 == 0 { [0, 1] } else { [1, 0] } {
            for _ in 0..100 {
                next_id += 1;
                let id = next_id;
                let loaded_before = LOADER_NANOS.load(Ordering::SeqCst);
                let started = Instant::now();
                if which == 0 {
                    cache_aside(&mut raw, &format!("bench:aside_proxy:{id}"), id, delay).await;
                } else {
                    drop(cache.scope(slow_user(id, delay)).await);
                }
                let took = started.elapsed().as_nanos() as u64;
                let loader = LOADER_NANOS.load(Ordering::SeqCst) - loaded_before;
                let h = if which == 0 { &mut aside } else { &mut ours };
                h.record(took.saturating_sub(loader)).ok();
            }
        }
    }
    cache.wait_for_writes().await;
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64;
    let round_trip = p50(&rtt);
    ratios.push(format!(
        "miss behind a {:.0} µs round trip (p50 beyond the loader): {:.2} round trips vs {:.2} \
         hand-written, {:.2}x (target: at most the hand-written two)",
        us(round_trip as u64),
        p50(&ours) / round_trip,
        p50(&aside) / round_trip,
        p50(&ours) / p50(&aside).max(1.0)
    ));
    rows.push(row("proxy (~1 ms round trip)", "PING", &rtt, String::new()));
    for (contender, h) in [
        ("hand-written GET + SET EX", &aside),
        ("redis-cached (lookup, lock, loader; fill after)", &ours),
    ] {
        rows.push(row(
            "miss behind the proxy: time beyond the loader",
            contender,
            h,
            format!("{:.2} round trips", p50(h) / round_trip),
        ));
    }
}

/// 1,000 concurrent callers of one cold key: loader runs and wall time.
async fn stampede(b: &mut Bench) {
    let Bench {
        cache, raw, rows, ..
    } = b;
    let stampede_delay = Wait::Timer(Duration::from_millis(20));
    for (contender, run) in [
        ("hand-written cache-aside", 0),
        ("redis-cached", 1),
        ("`cached` crate, AsyncRedisCache", 2),
    ] {
        LOADS.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (cache, mut conn) = (cache.clone(), raw.clone());
            set.spawn(async move {
                match run {
                    0 => drop(cache_aside(&mut conn, "bench:cold", 7, stampede_delay).await),
                    1 => drop(cache.scope(slow_user(7_000_000, stampede_delay)).await),
                    _ => drop(cached_crate_slow_user(7_000_000, stampede_delay).await),
                }
            });
        }
        set.join_all().await;
        let wall = started.elapsed();
        rows.push(Row {
            scenario: "1,000 callers, one cold key (20 ms loader)".into(),
            contender: contender.into(),
            p50: String::new(),
            p99: String::new(),
            other: format!(
                "{} loader runs, all returned after {:.1} ms",
                LOADS.load(Ordering::SeqCst),
                wall.as_secs_f64() * 1e3
            ),
        });
    }
}

/// Tag invalidation with 1, 1,000 and 100,000 tagged entries.
async fn invalidation(b: &mut Bench) {
    let Bench { cache, rows, .. } = b;
    let mut written = 0u64;
    for n in [1u64, 1_000, 100_000] {
        while written < n {
            let upto = (written + 1000).min(n);
            let mut set = tokio::task::JoinSet::new();
            for id in written..upto {
                let cache = cache.clone();
                set.spawn(async move { cache.scope(bulk_put(id, &id)).await.expect("put") });
            }
            set.join_all().await;
            written = upto;
        }
        let mut h = histogram();
        for _ in 0..20 {
            let started = Instant::now();
            cache.invalidate_tags(["bulk"]).await.expect("invalidate");
            h.record(started.elapsed().as_nanos() as u64).ok();
        }
        rows.push(row(
            "tag invalidation",
            &format!("{n} tagged entries"),
            &h,
            "one UNLINK".into(),
        ));
    }
}

/// Redis down with the breaker open: time added per call.
async fn breaker(b: &mut Bench) {
    let Bench { rows, ratios, .. } = b;
    let down = Server::start();
    // The server itself, never a proxy (whose listener would stay up after the drop).
    let down_url = format!("redis://127.0.0.1:{}", down.port);
    drop(down);
    let broken = Cache::builder()
        .url(&down_url)
        .namespace("bench")
        .breaker_open_for(Duration::from_secs(600))
        .build()
        .await
        .expect("cache");
    for _ in 0..5 {
        broken.scope(cached_user(1)).await;
    }
    assert!(broken.is_degraded(), "breaker open");
    let (mut direct, mut open) = (histogram(), histogram());
    for pass in 0..PASSES {
        for which in if pass % 2 == 0 { [0, 1] } else { [1, 0] } {
            if which == 0 {
                latency(&mut direct, 20_000, |id| database(id, Wait::None)).await;
            } else {
                latency(&mut open, 20_000, |_| broken.scope(cached_user(1))).await;
            }
        }
    }
    let added = open
        .value_at_quantile(0.5)
        .saturating_sub(direct.value_at_quantile(0.5));
    ratios.push(format!(
        "breaker open: {:.2} µs added per call at p50 (target <= 2)",
        us(added)
    ));
    rows.push(row(
        "Redis down, breaker open",
        "loader called directly",
        &direct,
        String::new(),
    ));
    rows.push(row(
        "Redis down, breaker open",
        "redis-cached",
        &open,
        format!("+{:.2} µs", us(added)),
    ));
}
