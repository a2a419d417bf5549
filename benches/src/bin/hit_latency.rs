//! Hit latency, one task: a `#[redis_cached]` hit against the floor, a raw `redis` GET of the
//! same bytes plus `serde_json` decode of the payload, on the same kind of connection
//! (`ConnectionManager`). Contenders alternate in 5 passes so machine noise hits both alike.
//!
//! Starts its own `redis-server` on a free port; prints p50/p99 and the ratio.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

const PASSES: usize = 5;
const OPS_PER_PASS: usize = 20_000;

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

#[redis_cached(ttl = 3600, name = "bench::user")]
async fn cached_user(id: u64) -> User {
    user(id)
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
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
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

fn report(name: &str, h: &Histogram<u64>) -> f64 {
    let p50 = h.value_at_quantile(0.5) as f64 / 1000.0;
    println!(
        "{name:<34} p50 {p50:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs   n {}",
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.mean() / 1000.0,
        h.len()
    );
    p50
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = start_server();
    let url = format!("redis://127.0.0.1:{}", server.1);
    let cache = Cache::builder().url(&url).namespace("bench").build().await.expect("cache");
    cache.install();

    // Warm the entry, then read back its bytes for the raw contender.
    cached_user(1).await;
    let key = cached_user_key(1);
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut raw = client.get_connection_manager().await.expect("connection");
    let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut raw).await.expect("GET");
    let payload_at = 34; // envelope header without tags
    let raw_key = "bench:raw";
    let _: () = redis::cmd("SET").arg(raw_key).arg(&bytes).query_async(&mut raw).await.expect("SET");

    let mut floor = Histogram::<u64>::new(3).expect("histogram");
    let mut ours = Histogram::<u64>::new(3).expect("histogram");
    for pass in 0..PASSES {
        let contenders: [&str; 2] = if pass % 2 == 0 { ["floor", "ours"] } else { ["ours", "floor"] };
        for contender in contenders {
            for _ in 0..OPS_PER_PASS {
                let started = Instant::now();
                if contender == "floor" {
                    let b: Vec<u8> = redis::cmd("GET").arg(raw_key).query_async(&mut raw).await.expect("GET");
                    let u: User = serde_json::from_slice(&b[payload_at..]).expect("decode");
                    std::hint::black_box(u);
                    floor.record(started.elapsed().as_nanos() as u64).ok();
                } else {
                    std::hint::black_box(cached_user(1).await);
                    ours.record(started.elapsed().as_nanos() as u64).ok();
                }
            }
        }
    }
    let stats = cache.stats();
    assert_eq!(stats.misses, 1, "every measured call was a hit: {stats:?}");
    println!("hit latency, 1 task, {PASSES} interleaved passes x {OPS_PER_PASS} ops, {} byte entry", bytes.len());
    let f = report("raw redis GET + serde_json decode", &floor);
    let o = report("#[redis_cached] hit", &ours);
    println!("ratio (p50): {:.3}x the floor", o / f);
}
