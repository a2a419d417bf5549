//! Stampede control: one load per key in a process (single-flight) and across processes (the
//! owner-token lock), waiters served from the stored bytes, nothing stranded by a cancelled,
//! panicking or killed leader.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redis::AsyncCommands;
use redis_cached::{Cache, redis_cached};
use tokio::task::JoinSet;

use crate::{
    Calls, redis_cache,
    support::{RedisServer, wait_until},
};

#[redis_cached(ttl = 60, name = "stampede::slow")]
async fn slow(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    id + 1
}

/// Spawns `n` callers of `slow(id)` on `cache` and returns their results.
async fn callers(cache: &Cache, calls: &Arc<Calls>, id: u64, n: usize) -> Vec<u64> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(slow(id, calls)).await });
    }
    set.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_of_a_cold_key_run_the_loader_once() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let results = callers(&cache, &calls, 7, 1000).await;
    assert!(
        results.iter().all(|&r| r == 8),
        "every caller got the value"
    );
    assert_eq!(calls.get(), 1, "one loader run for 1,000 callers");
    println!("1,000 callers, one process: {} loader run(s)", calls.get());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_holds_while_redis_is_down() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server).await;
    server.kill();
    let calls = Arc::new(Calls::default());
    let results = callers(&cache, &calls, 3, 200).await;
    assert!(results.iter().all(|&r| r == 4));
    assert_eq!(calls.get(), 1, "callers share one load even without Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_also_runs_one_load() {
    let cache = Cache::builder().url("mem://").build().await.expect("build");
    let calls = Arc::new(Calls::default());
    let results = callers(&cache, &calls, 5, 500).await;
    assert!(results.iter().all(|&r| r == 6));
    assert_eq!(calls.get(), 1);
}

/// The cache a child process of these tests uses on `url`.
async fn child_cache(url: &str) -> Cache {
    Cache::builder()
        .url(url)
        .namespace("stampede")
        .build()
        .await
        .expect("build")
}

// ---- across processes -------------------------------------------------------------------

const CHILD_ENV: &str = "REDIS_CACHED_STAMPEDE_CHILD";
const CHILDREN: usize = 4;
const CALLERS_PER_CHILD: usize = 250;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The loader of the cross-process test counts its runs in Redis, which every process shares.
#[redis_cached(ttl = 60, name = "stampede::shared", lock_wait = "60s")]
async fn shared(id: u64, #[cache(skip)] url: Arc<String>) -> u64 {
    let mut conn = crate::raw_conn(&url).await;
    let _: i64 = conn.incr("loads", 1).await.expect("INCR");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: () = conn.set("loaded_at_us", now_us()).await.expect("SET");
    id * 3
}

/// Child mode: when run as `integration stampede::child_process --exact` with the env var set,
/// wait for the start signal, call `shared` from 250 tasks, and report in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let url = Arc::new(url);
    let cache = child_cache(&url).await;
    let mut conn = crate::raw_conn(&url).await;
    let _: i64 = conn.incr("ready", 1).await.expect("INCR");
    wait_until("the start signal", Duration::from_secs(60), || {
        let mut conn = conn.clone();
        async move { conn.exists::<_, bool>("go").await.unwrap_or(false) }
    })
    .await;
    let mut set = JoinSet::new();
    for _ in 0..CALLERS_PER_CHILD {
        let (cache, url) = (cache.clone(), url.clone());
        set.spawn(async move {
            let value = cache.scope(shared(11, url)).await;
            (value, now_us())
        });
    }
    let results = set.join_all().await;
    let ok = results.iter().filter(|(v, _)| *v == 33).count();
    let last_return = results.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let _: () = conn
        .rpush(
            "results",
            format!("{ok} {last_return} {}", cache.stats().lock_waits),
        )
        .await
        .expect("RPUSH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_of_250_callers_run_the_loader_once() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "stampede::child_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, server.url())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child test process")
        })
        .collect();
    let mut conn = server.conn().await;
    wait_until("all children ready", Duration::from_secs(60), || {
        let mut conn = conn.clone();
        async move { conn.get::<_, Option<usize>>("ready").await.ok().flatten() == Some(CHILDREN) }
    })
    .await;
    let _: () = conn.set("go", 1).await.expect("SET go");
    for child in &mut children {
        let status = child.wait().expect("child exit");
        assert!(status.success(), "child failed: {status}");
    }
    let loads: usize = conn.get("loads").await.expect("loads");
    let loaded_at: i64 = conn.get("loaded_at_us").await.expect("loaded_at");
    let results: Vec<String> = conn.lrange("results", 0, -1).await.expect("results");
    assert_eq!(results.len(), CHILDREN);
    let mut delays = Vec::new();
    for line in &results {
        let parts: Vec<i64> = line.split(' ').map(|p| p.parse().unwrap_or(-1)).collect();
        assert_eq!(
            parts[0], CALLERS_PER_CHILD as i64,
            "every caller of every process got the value"
        );
        delays.push((parts[1] - loaded_at) as f64 / 1000.0);
    }
    assert_eq!(
        loads, 1,
        "one loader run across {CHILDREN} processes x {CALLERS_PER_CHILD} callers"
    );
    println!(
        "{CHILDREN} processes x {CALLERS_PER_CHILD} callers: {loads} loader run; last caller per process returned \
         {delays:.1?} ms after the loader finished (fill round trip and wake-up included)"
    );
}

// ---- lock ownership, cancellation, panics, dead holders -----------------------------------

#[redis_cached(ttl = 60, name = "stampede::guarded", lock_wait = "300ms")]
async fn guarded_load(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_someone_else_is_neither_released_nor_overwritten() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let key = cache.scope(async { guarded_load_key(1) }).await;
    let lock = format!("{key}:lock");
    let mut conn = server.conn().await;
    let _: () = conn
        .set_ex(&lock, "another-process", 30)
        .await
        .expect("SET lock");

    // The caller waits lock_wait, then loads without the lock and does not store.
    assert_eq!(cache.scope(guarded_load(1, calls.clone())).await, 1);
    assert_eq!(calls.get(), 1);
    assert_eq!(cache.stats().lock_timeouts, 1);
    let holder: Option<String> = conn.get(&lock).await.expect("GET lock");
    assert_eq!(
        holder.as_deref(),
        Some("another-process"),
        "a foreign lock is left alone"
    );
    assert!(
        !conn.exists::<_, bool>(&key).await.expect("EXISTS"),
        "no value written without the lock"
    );
}

#[redis_cached(ttl = 60, name = "stampede::stolen")]
async fn stolen(id: u64, #[cache(skip)] lock: String, #[cache(skip)] url: String) -> u64 {
    // While we load, our lock expires and another process takes it.
    let mut conn = crate::raw_conn(&url).await;
    let _: () = conn.set_ex(&lock, "the-new-owner", 30).await.expect("SET");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_lost_its_lock_does_not_fill() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let key = cache.scope(async { stolen_key(2) }).await;
    let lock = format!("{key}:lock");
    assert_eq!(cache.scope(stolen(2, lock.clone(), server.url())).await, 2);
    cache.wait_for_writes().await;
    let mut conn = server.conn().await;
    assert!(
        !conn.exists::<_, bool>(&key).await.expect("EXISTS"),
        "the fill was refused"
    );
    let holder: Option<String> = conn.get(&lock).await.expect("GET");
    assert_eq!(
        holder.as_deref(),
        Some("the-new-owner"),
        "the new owner's lock survives"
    );
    assert_eq!(cache.stats().fills_rejected, 1);
}

#[redis_cached(ttl = 60, name = "stampede::cancellable")]
async fn cancellable(
    id: u64,
    #[cache(skip)] calls: Arc<Calls>,
    #[cache(skip)] hang_first: Arc<AtomicBool>,
) -> u64 {
    calls.bump();
    if hang_first.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_leaves_no_waiter_hanging_and_no_lock_behind() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let hang = Arc::new(AtomicBool::new(true));
    let leader = {
        let (cache, calls, hang) = (cache.clone(), calls.clone(), hang.clone());
        tokio::spawn(async move { cache.scope(cancellable(4, calls, hang)).await })
    };
    wait_until(
        "the leader to start loading",
        Duration::from_secs(5),
        || async { calls.get() == 1 },
    )
    .await;
    let mut waiters = JoinSet::new();
    for _ in 0..20 {
        let (cache, calls, hang) = (cache.clone(), calls.clone(), hang.clone());
        waiters.spawn(async move { cache.scope(cancellable(4, calls, hang)).await });
    }
    // Abort only once every waiter waits on the leader: each counts its lookup's miss, then
    // joins the flight in the same poll.
    wait_until("the waiters to join", Duration::from_secs(5), || async {
        cache.stats().misses == 21
    })
    .await;
    leader.abort();
    assert!(leader.await.is_err(), "the leader was cancelled");
    let results = tokio::time::timeout(Duration::from_secs(10), waiters.join_all())
        .await
        .expect("waiters did not hang");
    assert!(results.iter().all(|&r| r == 4));
    assert_eq!(
        calls.get(),
        2,
        "the waiters regrouped behind one new leader"
    );
    let key = cache.scope(async { cancellable_key(4) }).await;
    let mut conn = server.conn().await;
    wait_until("the lock to be released", Duration::from_secs(5), || {
        let (mut conn, lock) = (conn.clone(), format!("{key}:lock"));
        async move { !conn.exists::<_, bool>(&lock).await.unwrap_or(true) }
    })
    .await;
    let _ = &mut conn;
}

#[redis_cached(ttl = 60, name = "stampede::panicky", lock_ttl = "30s")]
async fn panicky(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    if calls.bump() == 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        panic!("loader blew up");
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_leaves_no_waiter_hanging_and_no_lock_behind() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for _ in 0..20 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(panicky(9, calls)).await });
    }
    let results = tokio::time::timeout(Duration::from_secs(10), set.join_all_results())
        .await
        .expect("nothing hangs");
    let panicked = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(panicked, 1, "only the panicking leader's caller fails");
    assert!(results.iter().flatten().all(|&v| v == 9));
    assert_eq!(calls.get(), 2, "one retry by a new leader");
    let key = cache.scope(async { panicky_key(9) }).await;
    let mut conn = server.conn().await;
    assert!(
        !conn
            .exists::<_, bool>(format!("{key}:lock"))
            .await
            .expect("EXISTS"),
        "lock released (the new leader filled)"
    );
}

trait JoinAllResults<T> {
    async fn join_all_results(self) -> Vec<Result<T, tokio::task::JoinError>>;
}

impl<T: 'static> JoinAllResults<T> for JoinSet<T> {
    async fn join_all_results(mut self) -> Vec<Result<T, tokio::task::JoinError>> {
        let mut out = Vec::new();
        while let Some(result) = self.join_next().await {
            out.push(result);
        }
        out
    }
}

#[redis_cached(
    ttl = 60,
    name = "stampede::holder",
    lock_ttl = "1s",
    lock_wait = "30s"
)]
async fn held(id: u64, #[cache(skip)] url: Arc<String>, #[cache(skip)] hang: bool) -> u64 {
    let mut conn = crate::raw_conn(&url).await;
    let _: i64 = conn.incr("holder_loads", 1).await.expect("INCR");
    if hang {
        std::future::pending::<()>().await;
    }
    id
}

const HOLDER_ENV: &str = "REDIS_CACHED_HOLDER_CHILD";

/// Child mode of the dead-holder test: takes the lock and hangs in the loader until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_process() {
    let Ok(url) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let url = Arc::new(url);
    let cache = child_cache(&url).await;
    cache.scope(held(5, url, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_frees_the_lock_by_expiry_and_another_process_loads() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(&exe)
        .args(["stampede::holder_process", "--exact", "--test-threads=1"])
        .env(HOLDER_ENV, server.url())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn holder");
    let mut conn = server.conn().await;
    wait_until("the holder to be loading", Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move {
            conn.get::<_, Option<i64>>("holder_loads")
                .await
                .ok()
                .flatten()
                == Some(1)
        }
    })
    .await;
    child.kill().expect("kill holder");
    child.wait().expect("reap holder");

    let cache = child_cache(&server.url()).await;
    let url = Arc::new(server.url());
    let started = Instant::now();
    let value = tokio::time::timeout(Duration::from_secs(20), cache.scope(held(5, url, false)))
        .await
        .expect("the waiter did not hang");
    assert_eq!(value, 5);
    let loads: i64 = conn.get("holder_loads").await.expect("GET");
    assert_eq!(
        loads, 2,
        "the dead holder's load, then ours after its lock expired"
    );
    assert_eq!(
        cache.stats().lock_timeouts,
        0,
        "took the lock over instead of giving up"
    );
    println!(
        "took over a dead holder's lock after {:?}",
        started.elapsed()
    );
}
