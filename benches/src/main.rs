//! The benchmark: this library against the floor (raw `redis` commands on the same kind of
//! connection) and a hand-written cache-aside, measured in one run with the contenders
//! interleaved pass by pass, so machine noise hits all alike.
//!
//! Starts its own `redis-server` on a free loopback port. Run with `scripts/bench.sh`.
//! Prints a Markdown table; `docs/benchmarks.md` holds a recorded run.

use std::{
    future::Future,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use redis::{AsyncCommands, aio::ConnectionManager};
use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

const PASSES: usize = 5;
const THROUGHPUT_PASSES: usize = 9;

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    roles: Vec<String>,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
    }
}

static LOADS: AtomicU64 = AtomicU64::new(0);

/// The simulated database call: a short sleep plus a counter.
async fn database(id: u64, delay: Duration) -> User {
    LOADS.fetch_add(1, Ordering::SeqCst);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    user(id)
}

#[redis_cached(ttl = 3600, name = "bench::user")]
async fn cached_user(id: u64) -> User {
    database(id, Duration::ZERO).await
}

#[redis_cached(ttl = 3600, name = "bench::slow_user")]
async fn slow_user(id: u64, #[cache(skip)] delay: Duration) -> User {
    database(id, delay).await
}

#[redis_cached(ttl = 3600, tags = ["a:{id}"], name = "bench::tag1")]
async fn tagged1(id: u64) -> User {
    database(id, Duration::ZERO).await
}

#[redis_cached(ttl = 3600, tags = ["a:{id}", "b:{id}", "c:{id}"], name = "bench::tag3")]
async fn tagged3(id: u64) -> User {
    database(id, Duration::ZERO).await
}

#[redis_cached(ttl = 3600, tags = ["bulk"], name = "bench::bulk")]
async fn bulk(id: u64) -> u64 {
    id
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/bench.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server(child, port)
}

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

async fn raw_get_decode(conn: &mut ConnectionManager, key: &str) -> User {
    let bytes: Vec<u8> = conn.get(key).await.expect("GET");
    serde_json::from_slice(&bytes[34..]).expect("decode")
}

/// Hand-written cache-aside: GET, on a miss load then SET EX.
async fn cache_aside(conn: &mut ConnectionManager, key: &str, id: u64, delay: Duration) -> User {
    let cached: Option<Vec<u8>> = conn.get(key).await.expect("GET");
    if let Some(bytes) = cached {
        return serde_json::from_slice(&bytes).expect("decode");
    }
    let value = database(id, delay).await;
    let _: () = conn
        .set_ex(key, serde_json::to_vec(&value).expect("encode"), 3600)
        .await
        .expect("SET");
    value
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = start_server();
    let url = format!("redis://127.0.0.1:{}", server.1);
    let cache = Cache::builder()
        .url(&url)
        .namespace("bench")
        .operation_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("cache");
    let memory = Cache::builder()
        .url("mem://")
        .namespace("bench")
        .build()
        .await
        .expect("memory cache");
    cache.install();
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut raw = client.get_connection_manager().await.expect("connection");
    let mut rows = Vec::new();
    let mut ratios = Vec::new();

    // --- Hot hits, one task -------------------------------------------------------------
    cached_user(1).await;
    let bytes: Vec<u8> = raw.get(cached_user_key(1)).await.expect("GET");
    let _: () = raw.set("bench:raw", &bytes).await.expect("SET");
    memory.scope(cached_user(1)).await;
    let moka: moka::future::Cache<u64, Arc<User>> = moka::future::Cache::new(10_000);
    let (mut floor, mut ours, mut mem, mut moka_h) =
        (histogram(), histogram(), histogram(), histogram());
    for pass in 0..PASSES {
        let order = if pass % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
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

    // --- Hot hits, 64 tasks ---------------------------------------------------------------
    let only_throughput = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "throughput");
    for id in 0..64 {
        cached_user(id).await;
    }
    let (mut floor_ops, mut ours_ops) = (Vec::new(), Vec::new());
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
        if pass % 2 == 0 {
            floor_ops.push(throughput(64, 2000, raw_op).await);
            ours_ops.push(throughput(64, 2000, ours_op).await);
        } else {
            ours_ops.push(throughput(64, 2000, ours_op).await);
            floor_ops.push(throughput(64, 2000, raw_op).await);
        }
    }
    // Throughput swings with the VM's noise from pass to pass, so the ratio is the median of
    // the ratios of adjacent passes, which share their noise.
    let pair_ratios: Vec<f64> = floor_ops
        .iter()
        .zip(&ours_ops)
        .map(|(f, o)| o / f)
        .collect();
    let (f, o) = (median(&floor_ops), median(&ours_ops));
    let pair_ratio = median(&pair_ratios);
    ratios.push(format!(
        "64-task hit throughput: {pair_ratio:.3}x raw GET, median of adjacent-pass ratios {pair_ratios:.2?} (target >= 0.90)"
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
    if only_throughput {
        println!(
            "64 tasks: floor {floor_ops:.0?} ours {ours_ops:.0?} -> {pair_ratio:.3}x ({pair_ratios:.2?})"
        );
        return;
    }

    // --- Tagged hits ---------------------------------------------------------------------
    tagged1(1).await;
    tagged3(1).await;
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
                        async move {
                            let v: Vec<Option<Vec<u8>>> = c.mget(&keys).await.expect("MGET");
                            v
                        }
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
            &format!("raw MGET of {read_keys} keys"),
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

    // --- Miss path ---------------------------------------------------------------------------
    let delay = Duration::from_millis(1);
    let (mut aside, mut miss) = (histogram(), histogram());
    let mut next_id = 1_000_000u64;
    for pass in 0..PASSES {
        for which in if pass % 2 == 0 { [0, 1] } else { [1, 0] } {
            for _ in 0..300 {
                next_id += 1;
                let id = next_id;
                let started = Instant::now();
                if which == 0 {
                    let key = format!("bench:aside:{id}");
                    cache_aside(&mut raw, &key, id, delay).await;
                    aside.record(started.elapsed().as_nanos() as u64).ok();
                } else {
                    slow_user(id, delay).await;
                    miss.record(started.elapsed().as_nanos() as u64).ok();
                }
            }
        }
    }
    let loader_ns = delay.as_nanos() as u64;
    let aside_over = aside.value_at_quantile(0.5).saturating_sub(loader_ns);
    let ours_over = miss.value_at_quantile(0.5).saturating_sub(loader_ns);
    ratios.push(format!(
        "miss overhead beyond the loader (p50): {:.1} µs vs {:.1} µs hand-written, {:.2}x (target <= 1.3)",
        us(ours_over), us(aside_over), ours_over as f64 / aside_over.max(1) as f64
    ));
    rows.push(row(
        "miss (1 ms loader)",
        "hand-written GET + SET EX",
        &aside,
        format!("{:.1} µs beyond the loader", us(aside_over)),
    ));
    rows.push(row(
        "miss (1 ms loader)",
        "redis-cached (lock + fill script)",
        &miss,
        format!("{:.1} µs beyond the loader", us(ours_over)),
    ));

    // --- 1,000 callers of one cold key -------------------------------------------------------
    let stampede_delay = Duration::from_millis(20);
    for (contender, run) in [("hand-written cache-aside", 0), ("redis-cached", 1)] {
        LOADS.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (cache, mut conn) = (cache.clone(), raw.clone());
            set.spawn(async move {
                if run == 0 {
                    cache_aside(&mut conn, "bench:cold", 7, stampede_delay).await
                } else {
                    cache.scope(slow_user(7_000_000, stampede_delay)).await
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

    // --- Tag invalidation --------------------------------------------------------------------
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

    // --- Redis down, breaker open ------------------------------------------------------------
    let down = start_server();
    let down_url = format!("redis://127.0.0.1:{}", down.1);
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
                latency(&mut direct, 20_000, |id| database(id, Duration::ZERO)).await;
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
