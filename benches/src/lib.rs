//! What the benchmark binaries share: a private `redis-server`, the simulated database call,
//! and the contenders (this library's functions, the hand-written cache-aside, the `cached`
//! crate's `#[concurrent_cached]` over `AsyncRedisCache`, the raw-command floors).

pub mod proxy;

use std::{
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cached::macros::concurrent_cached;
use redis::{AsyncCommands, aio::ConnectionManager};
use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

/// The cached value: a small record, about 100 bytes of JSON.
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
}

pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
    }
}

/// How many times the simulated database was called.
pub static LOADS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds spent inside the simulated database, in total.
pub static LOADER_NANOS: AtomicU64 = AtomicU64::new(0);

/// How the simulated database call waits.
#[derive(Clone, Copy)]
pub enum Wait {
    /// Not at all.
    None,
    /// A Tokio sleep: many can wait at once, but Tokio's 1 ms timer wheel rounds it up by
    /// up to a millisecond, depending on when it starts.
    Timer(Duration),
    /// A thread sleep on the blocking pool: accurate to a few microseconds whenever it starts,
    /// so the time a cache adds around it can be told from the loader's own.
    Exact(Duration),
}

/// The simulated database call: a short sleep plus a counter.
pub async fn database(id: u64, wait: Wait) -> User {
    LOADS.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    match wait {
        Wait::None => {}
        Wait::Timer(delay) => tokio::time::sleep(delay).await,
        Wait::Exact(delay) => tokio::task::spawn_blocking(move || std::thread::sleep(delay))
            .await
            .expect("blocking sleep"),
    }
    let user = user(id);
    LOADER_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
    user
}

#[redis_cached(ttl = 3600, name = "bench::user")]
pub async fn cached_user(id: u64) -> User {
    database(id, Wait::None).await
}

#[redis_cached(ttl = 3600, name = "bench::slow_user")]
pub async fn slow_user(id: u64, #[cache(skip)] wait: Wait) -> User {
    database(id, wait).await
}

#[redis_cached(ttl = 3600, tags = ["a:{id}"], name = "bench::tag1")]
pub async fn tagged1(id: u64) -> User {
    database(id, Wait::None).await
}

#[redis_cached(ttl = 3600, tags = ["a:{id}", "b:{id}", "c:{id}"], name = "bench::tag3")]
pub async fn tagged3(id: u64) -> User {
    database(id, Wait::None).await
}

#[redis_cached(ttl = 3600, tags = ["bulk"], name = "bench::bulk")]
pub async fn bulk(id: u64) -> u64 {
    id
}

/// Where the `cached` crate's stores connect; set once by [`init_cached_crate`].
static CACHED_CRATE_URL: OnceLock<String> = OnceLock::new();

/// Points the `cached` crate's functions at `url`. Call before their first use.
pub fn init_cached_crate(url: &str) {
    CACHED_CRATE_URL.get_or_init(|| url.to_owned());
}

fn cached_crate_url() -> &'static str {
    CACHED_CRATE_URL
        .get()
        .expect("init_cached_crate before using the cached crate")
}

// The `cached` crate as its README shows it for Redis: `#[concurrent_cached]` over an
// `AsyncRedisCache` (MessagePack values, a multiplexed connection, no stampede protection).
#[concurrent_cached(
    map_error = r##"|e| format!("{e:?}")"##,
    ty = "cached::AsyncRedisCache<u64, User>",
    create = r##" {
        cached::AsyncRedisCache::builder("bench_cached_crate_user")
            .ttl(Duration::from_secs(3600))
            .connection_string(cached_crate_url())
            .build()
            .await
            .expect("cached crate store")
    } "##
)]
pub async fn cached_crate_user(id: u64) -> Result<User, String> {
    Ok(database(id, Wait::None).await)
}

#[concurrent_cached(
    map_error = r##"|e| format!("{e:?}")"##,
    ty = "cached::AsyncRedisCache<u64, User>",
    convert = r##"{ id }"##,
    create = r##" {
        cached::AsyncRedisCache::builder("bench_cached_crate_slow_user")
            .ttl(Duration::from_secs(3600))
            .connection_string(cached_crate_url())
            .build()
            .await
            .expect("cached crate store")
    } "##
)]
pub async fn cached_crate_slow_user(id: u64, wait: Wait) -> Result<User, String> {
    Ok(database(id, wait).await)
}

/// The floor for a hit: `GET` of the same envelope bytes plus a `serde_json` decode.
pub async fn raw_get_decode(conn: &mut ConnectionManager, key: &str) -> User {
    let bytes: Vec<u8> = conn.get(key).await.expect("GET");
    serde_json::from_slice(&bytes[34..bytes.len() - 8]).expect("decode")
}

/// The floor for a tagged hit: `MGET` of as many keys (the entry and its tag versions), plus the
/// same decode of the first value's payload as [`raw_get_decode`].
pub async fn raw_mget_decode(conn: &mut ConnectionManager, keys: &[String]) -> User {
    let values: Vec<Option<Vec<u8>>> = conn.mget(keys).await.expect("MGET");
    let bytes = values.into_iter().next().flatten().expect("stored");
    serde_json::from_slice(&bytes[34..bytes.len() - 8]).expect("decode")
}

/// Hand-written cache-aside: `GET`, on a miss load then `SET EX`.
pub async fn cache_aside(conn: &mut ConnectionManager, key: &str, id: u64, wait: Wait) -> User {
    let cached: Option<Vec<u8>> = conn.get(key).await.expect("GET");
    if let Some(bytes) = cached {
        return serde_json::from_slice(&bytes).expect("decode");
    }
    let value = database(id, wait).await;
    let _: () = conn
        .set_ex(key, serde_json::to_vec(&value).expect("encode"), 3600)
        .await
        .expect("SET");
    value
}

/// What every benchmark binary starts with: a private server, the `cached` crate pointed at it,
/// the library's cache on it (installed as the default) and an embedded-store cache.
pub async fn setup() -> (Server, Cache, Cache) {
    let server = Server::start();
    let url = server.url();
    init_cached_crate(&url);
    let cache = Cache::builder()
        .url(&url)
        .namespace("bench")
        // Generous: a timeout under a loaded VM would count as a Redis failure.
        .operation_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("cache");
    cache.install();
    let memory = Cache::builder()
        .url("mem://")
        .namespace("bench")
        .build()
        .await
        .expect("memory cache");
    (server, cache, memory)
}

/// A private `redis-server` on a free loopback port, killed on drop.
///
/// With `BENCH_RTT_US` set, every client of the bench reaches it through a
/// [`proxy::DelayProxy`] adding that round trip (half each way): `url()` is the proxy's, so
/// the floors, the peers and this library all pay the same network. `BENCH_RTT_US=0` measures
/// the proxy's own overhead. (`miss_proxy` keeps its own ~1 ms proxy to the server itself, and
/// `breaker` needs a server that is gone.)
pub struct Server {
    child: Child,
    pub port: u16,
    proxy: Option<proxy::DelayProxy>,
}

/// The round trip `BENCH_RTT_US` asks for, if any.
pub fn simulated_rtt() -> Option<Duration> {
    std::env::var("BENCH_RTT_US")
        .ok()
        .and_then(|us| us.parse().ok())
        .map(Duration::from_micros)
}

impl Server {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Server {
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
        let proxy = simulated_rtt().map(|rtt| proxy::DelayProxy::start(port, rtt / 2));
        Server { child, port, proxy }
    }

    /// Where clients connect: the proxy when a round trip is simulated, else the server.
    pub fn url(&self) -> String {
        match &self.proxy {
            Some(proxy) => proxy.url(),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first level's hit path: the same record as [`cached_user`], kept decoded in process.
#[redis_cached(ttl = 3600, name = "bench::l1_user", l1 = true, l1_ttl = "1h")]
pub async fn l1_user(id: u64) -> User {
    database(id, Wait::None).await
}

/// A counter only `NAME_put` changes: the invalidation-lag scenario's value.
#[redis_cached(ttl = 3600, name = "bench::l1_counter", l1 = true, l1_ttl = "1h")]
pub async fn l1_counter(id: u64) -> u64 {
    let _ = id;
    0
}
