//! The load generator: a fixed mix over the service, Zipf (s = 1.0) over users and posts, 5%
//! writes that invalidate, run with caching off and on (the same service binary, `CACHE=off`
//! or not), twice each; writes `RESULTS.md` with requests/s, p50/p99 per endpoint, database
//! queries/s (PostgreSQL's own count: committed transactions in `pg_stat_database`; every
//! statement of the service is one), the cache hit rate and the share of database load removed.
//!
//! ```sh
//! cd examples/service
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --release --features loadgen --bin loadgen
//! ```
//! `SECONDS` (default 60) per run, `CONCURRENCY` (default 32).

use std::{
    collections::BTreeMap,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis_cached::redis;

/// Zipf (s = 1.0) over 1..=n: an inverse-CDF table.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / k as f64;
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf(cdf)
    }

    fn sample(&self) -> i64 {
        let u = fastrand::f64();
        self.0.partition_point(|c| *c < u) as i64 + 1
    }
}

#[derive(Default)]
struct Samples {
    by_endpoint: BTreeMap<&'static str, Vec<u32>>,
    errors: u64,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

async fn db_transactions(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        &[],
    )
    .await
    .map(|row| row.get(0))
    .expect("pg_stat_database")
}

/// Hits and misses so far, from the service's own `/metrics` (zero without a cache).
async fn cache_counts(http: &reqwest::Client, base: &str) -> (f64, f64) {
    let Some(text) = metrics_text(http, base).await else {
        return (0.0, 0.0);
    };
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("redis_cached_hits_total"),
        sum("redis_cached_misses_total"),
    )
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> Option<String> {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

struct Run {
    mode: &'static str,
    requests: u64,
    seconds: f64,
    db_per_second: f64,
    hit_rate: Option<f64>,
    latencies: BTreeMap<&'static str, (f64, f64)>,
    errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The stats job builds the views of the first this many users (the Zipf head), before the
/// clock starts; the others answer 503 ("not built yet") in the cached runs.
const STATS_USERS: i64 = 2000;

fn start_service(cache: bool, port: u16) -> Child {
    let exe = std::env::current_exe().expect("loadgen path");
    let service = exe.with_file_name("redis-cached-service");
    let mut command = Command::new(service);
    command
        .env("PORT", port.to_string())
        .env("STATS_EVERY", "3600")
        .env("STATS_USERS", STATS_USERS.to_string());
    if !cache {
        command.env("CACHE", "off");
    }
    command
        .spawn()
        .expect("start the service (cargo build --release first)")
}

async fn run(mode: &'static str, cache: bool, users: usize, posts: usize) -> Run {
    let port = 3917;
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start_service(cache, port);
    let http = reqwest::Client::new();
    let ready = Instant::now();
    // Cached runs start once the stats job has built the views of the Zipf head.
    let ready_url = if cache {
        format!("{base}/users/{STATS_USERS}/stats")
    } else {
        format!("{base}/users/1")
    };
    loop {
        let answered = http.get(&ready_url).send().await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(900),
            "the service never became ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (db, connection) = tokio_postgres::connect(&env("DATABASE_URL", ""), tokio_postgres::NoTls)
        .await
        .expect("connect to DATABASE_URL");
    tokio::spawn(connection);
    let seconds: u64 = env("SECONDS", "60").parse().expect("SECONDS");
    let concurrency: usize = env("CONCURRENCY", "32").parse().expect("CONCURRENCY");
    let users_zipf = Arc::new(Zipf::new(users));
    let posts_zipf = Arc::new(Zipf::new(posts));
    let samples = Arc::new(Mutex::new(Samples::default()));
    // A warm-up of the same load, not measured (both modes: PostgreSQL's buffers warm too),
    // then the measured window.
    let warmup: u64 = env("WARMUP", "30").parse().expect("WARMUP");
    let mut before = 0;
    let mut counts_before = (0.0, 0.0);
    let mut started = Instant::now();
    for (phase, record) in [(warmup, false), (seconds, true)] {
        if record {
            // PostgreSQL's backends report their counts up to a second late: let them settle.
            tokio::time::sleep(Duration::from_secs(2)).await;
            before = db_transactions(&db).await;
            counts_before = cache_counts(&http, &base).await;
            started = Instant::now();
        }
        let deadline = Instant::now() + Duration::from_secs(phase);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (http, base, samples) = (http.clone(), base.clone(), samples.clone());
            let (users_zipf, posts_zipf) = (users_zipf.clone(), posts_zipf.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let roll = fastrand::u32(0..100);
                    let (user, post) = (users_zipf.sample(), posts_zipf.sample());
                    let (endpoint, request) = match roll {
                        0..35 => ("GET /users/{id}", http.get(format!("{base}/users/{user}"))),
                        35..60 => ("GET /posts/{id}", http.get(format!("{base}/posts/{post}"))),
                        60..80 => (
                            "GET /posts/trending",
                            http.get(format!("{base}/posts/trending")),
                        ),
                        // Views exist for the first STATS_USERS users only: both modes ask for those.
                        80..95 => (
                            "GET /users/{id}/stats",
                            http.get(format!(
                                "{base}/users/{}/stats",
                                1 + (user - 1) % STATS_USERS
                            )),
                        ),
                        95..98 => (
                            "POST /posts/{id}/votes",
                            http.post(format!("{base}/posts/{post}/votes"))
                                .json(&serde_json::json!({ "user_id": user })),
                        ),
                        _ => (
                            "PUT /users/{id}",
                            http.put(format!("{base}/users/{user}"))
                                .json(&serde_json::json!({
                                    "name": format!("user {user} v{}", fastrand::u32(..)),
                                    "email": format!("user{user}@example.com"),
                                })),
                        ),
                    };
                    let sent = Instant::now();
                    let ok = request
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 503);
                    if !record {
                        continue;
                    }
                    let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    let mut samples = samples.lock().unwrap();
                    samples
                        .by_endpoint
                        .entry(endpoint)
                        .or_default()
                        .push(micros);
                    if !ok {
                        samples.errors += 1;
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hit_rate = if cache {
        let (hits, misses) = cache_counts(&http, &base).await;
        let (hits, misses) = (hits - counts_before.0, misses - counts_before.1);
        (hits + misses > 0.0).then(|| hits / (hits + misses))
    } else {
        None
    };
    let _ = child.kill();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = db_transactions(&db).await;
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    let requests = samples.by_endpoint.values().map(|v| v.len() as u64).sum();
    let latencies = samples
        .by_endpoint
        .iter_mut()
        .map(|(name, v)| {
            v.sort_unstable();
            (*name, (percentile(v, 0.5), percentile(v, 0.99)))
        })
        .collect();
    Run {
        mode,
        requests,
        seconds: elapsed,
        db_per_second: (after - before) as f64 / elapsed,
        hit_rate,
        latencies,
        errors: samples.errors,
    }
}

/// Empties the service's namespace, so each cached run starts cold.
async fn clear_cache() {
    let url = env("REDIS_URL", "redis://127.0.0.1:6379");
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("service[:;]*")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
    }
}

#[tokio::main]
async fn main() {
    let (db, connection) = tokio_postgres::connect(&env("DATABASE_URL", ""), tokio_postgres::NoTls)
        .await
        .expect("set DATABASE_URL to the service's database");
    tokio::spawn(connection);
    // The service seeds the database at its first start if it is empty.
    let mut seeding = start_service(false, 3917);
    let http = reqwest::Client::new();
    while http
        .get("http://127.0.0.1:3917/users/1")
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = seeding.kill();
    let _ = seeding.wait();
    let count = |table: &'static str| {
        let db = &db;
        async move {
            db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map(|row| row.get::<_, i64>(0))
                .expect("count the seeded rows")
        }
    };
    let (users, posts) = (count("users").await as usize, count("posts").await as usize);
    let mut runs = Vec::new();
    for _ in 0..2 {
        runs.push(run("cache off", false, users, posts).await);
        clear_cache().await;
        runs.push(run("cache on", true, users, posts).await);
    }
    let mut out = String::new();
    out.push_str("# Load test results\n\n");
    out.push_str(&format!(
        "Machine: {} cores, {}. Date: {}. Command: `cargo run --release --features loadgen --bin loadgen` \
         (SECONDS={}, CONCURRENCY={}, WARMUP={} s of the same load before each measured run).\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::OS,
        String::from_utf8_lossy(&Command::new("date").arg("-u").output().map(|o| o.stdout).unwrap_or_default()).trim(),
        env("SECONDS", "60"),
        env("CONCURRENCY", "32"),
        env("WARMUP", "30"),
    ));
    out.push_str(
        "| run | requests/s | DB queries/s | hit rate | errors |\n|---|---|---|---|---|\n",
    );
    for r in &runs {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} | {} |\n",
            r.mode,
            r.requests as f64 / r.seconds,
            r.db_per_second,
            r.hit_rate
                .map_or("-".into(), |h| format!("{:.1}%", h * 100.0)),
            r.errors
        ));
    }
    out.push_str("\n| endpoint | run | p50 ms | p99 ms |\n|---|---|---|---|\n");
    let endpoints: Vec<&str> = runs[0].latencies.keys().copied().collect();
    for endpoint in endpoints {
        for r in &runs {
            if let Some((p50, p99)) = r.latencies.get(endpoint) {
                out.push_str(&format!(
                    "| {endpoint} | {} | {p50:.2} | {p99:.2} |\n",
                    r.mode
                ));
            }
        }
    }
    let off: f64 = runs
        .iter()
        .filter(|r| r.mode == "cache off")
        .map(|r| r.db_per_second / r.requests as f64 * r.seconds)
        .sum::<f64>();
    let on: f64 = runs
        .iter()
        .filter(|r| r.mode == "cache on")
        .map(|r| r.db_per_second / r.requests as f64 * r.seconds)
        .sum::<f64>();
    out.push_str(&format!(
        "\nDatabase queries per request: {:.3} with caching off, {:.3} with it on: {:.1}% of the \
         database load removed.\n",
        off / 2.0,
        on / 2.0,
        (1.0 - on / off) * 100.0
    ));
    print!("{out}");
    std::fs::write("RESULTS.md", &out).expect("write RESULTS.md");
}
