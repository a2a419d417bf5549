//! What each path sends to Redis, counted with `INFO commandstats`: a hit is plain reads
//! (no script), a miss is lookup + lock + fill, renewal keeps a long load's lock alive, and
//! errors are shared with waiters only when they can be cloned.

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis_cached::redis_cached;
use tokio::task::JoinSet;

use crate::{Calls, redis_cache, support::RedisServer};

#[redis_cached(ttl = 60, name = "rt::plain")]
async fn plain(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, stale = 60, name = "rt::aged")]
async fn aged(id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_one_get_and_a_miss_is_lookup_lock_and_fill() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    cache
        .scope(async {
            // Load the scripts once, so the counts below are steady-state.
            plain(0).await;
            cache.wait_for_writes().await;
            crate::reset_command_counts(&server).await;
            plain(1).await;
            cache.wait_for_writes().await;
            // Round trip 1: GET. Round trip 2 (one pipeline): SET lock NX PX, SET generation
            // NX PX GET (created when missing, read either way), MGET entry (a value of another
            // type reads as absent). Round trip 3: EVALSHA of the fill script, which runs GET
            // lock, DEL lock, GET generation and SET entry inside Redis; commandstats counts
            // those too.
            let miss = crate::command_counts(&server).await;
            let expected = [
                ("get", 3),
                ("mget", 1),
                ("set", 3),
                ("evalsha", 1),
                ("del", 1),
            ];
            assert_eq!(
                miss,
                expected.map(|(k, v)| (k.to_owned(), v)).into(),
                "a miss"
            );

            crate::reset_command_counts(&server).await;
            for _ in 0..10 {
                plain(1).await;
            }
            let hits = crate::command_counts(&server).await;
            assert_eq!(
                hits,
                HashMap::from([("get".to_owned(), 10)]),
                "ten hits, ten GETs, nothing else"
            );

            aged(1).await;
            cache.wait_for_writes().await;
            crate::reset_command_counts(&server).await;
            aged(1).await;
            let aged_hit = crate::command_counts(&server).await;
            assert_eq!(
                aged_hit,
                HashMap::from([("get".to_owned(), 1), ("pttl".to_owned(), 1)]),
                "a stale-capable hit adds PTTL in the same pipeline, no script"
            );
        })
        .await;
}

#[redis_cached(
    ttl = 60,
    name = "rt::long",
    lock_ttl = "300ms",
    lock_wait = "30s",
    max_load = "10s"
)]
async fn long_load(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_that_outlives_lock_ttl_keeps_its_lock_by_renewal() {
    let server = RedisServer::start();
    // Two caches on one Redis behave like two processes: separate single-flights.
    let first = redis_cache(&server).await;
    let second = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let a = {
        let (cache, calls) = (first.clone(), calls.clone());
        tokio::spawn(async move { cache.scope(long_load(1, calls)).await })
    };
    crate::support::wait_until(
        "the first load to start",
        Duration::from_secs(5),
        || async { calls.get() == 1 },
    )
    .await;
    let b = second.scope(long_load(1, calls.clone())).await;
    assert_eq!(a.await.expect("first"), 1);
    assert_eq!(b, 1);
    assert_eq!(
        calls.get(),
        1,
        "the lock outlived its 300 ms TTL by renewal, so the other waited"
    );
    assert_eq!(second.stats().lock_waits, 1);
}

#[derive(Debug, Clone, PartialEq)]
struct Shared(u32);

#[redis_cached(ttl = 60, name = "rt::shared_err")]
async fn shared_error(id: u64, #[cache(skip)] calls: Arc<Calls>) -> Result<u64, Shared> {
    let n = calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = id;
    Err(Shared(n as u32))
}

/// An error that is not `Clone` and has no `From<redis_cached::Error>`.
#[derive(Debug, PartialEq)]
struct Opaque(u32);

/// An error that is not `Clone` but can carry a cache error.
#[derive(Debug, PartialEq)]
enum AppError {
    Source(u32),
    Cache(String),
}

impl From<redis_cached::Error> for AppError {
    fn from(err: redis_cached::Error) -> Self {
        AppError::Cache(err.to_string())
    }
}

/// Counts loads running at once.
#[derive(Default)]
struct Concurrency {
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl Concurrency {
    async fn run<T>(&self, body: impl std::future::Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        let out = body.await;
        self.running.fetch_sub(1, SeqCst);
        out
    }

    fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[redis_cached(ttl = 60, name = "rt::opaque_err")]
async fn opaque_error(
    id: u64,
    #[cache(skip)] calls: Arc<Calls>,
    #[cache(skip)] running: Arc<Concurrency>,
) -> Result<u64, Opaque> {
    let n = calls.bump();
    running
        .run(tokio::time::sleep(Duration::from_millis(100)))
        .await;
    let _ = id;
    Err(Opaque(n as u32))
}

#[redis_cached(ttl = 60, name = "rt::app_err")]
async fn app_error(id: u64, #[cache(skip)] calls: Arc<Calls>) -> Result<u64, AppError> {
    let n = calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = id;
    Err(AppError::Source(n as u32))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_ends_every_wait_at_once() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;

    // E: Clone: one failing load, its error shared.
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(shared_error(1, calls)).await });
    }
    let results = set.join_all().await;
    assert!(results.iter().all(|r| *r == Err(Shared(1))), "{results:?}");
    assert_eq!(calls.get(), 1, "one failing load, its error shared");

    // E: From<redis_cached::Error>: one failing load; waiters get a typed "load failed".
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for _ in 0..30 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(app_error(2, calls)).await });
    }
    let results = set.join_all().await;
    assert_eq!(calls.get(), 1, "one database load in all: {results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(AppError::Source(1)))
            .count(),
        1,
        "the leader got its own error"
    );
    let failed = redis_cached::Error::LoadFailed.to_string();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(AppError::Cache(failed.clone())))
            .count(),
        29,
        "every waiter got the typed error: {results:?}"
    );

    // Neither: waiters cannot be given the error, so each loads by itself at once, side by
    // side (a queue of one-at-a-time retries would keep the peak at one).
    let calls = Arc::new(Calls::default());
    let running = Arc::new(Concurrency::default());
    let mut set = JoinSet::new();
    for _ in 0..30 {
        let (cache, calls, running) = (cache.clone(), calls.clone(), running.clone());
        set.spawn(async move { cache.scope(opaque_error(3, calls, running)).await });
    }
    let results = set.join_all().await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(
        calls.get(),
        30,
        "each caller loaded once: the leader, then every waiter"
    );
    // All 29 waiters load the moment the leader fails; regrouping behind new leaders first
    // (a queue of even a few rounds) would keep the peak below that.
    assert!(
        running.peak() >= 28,
        "the waiters' loads ran side by side, not queued: peak {}",
        running.peak()
    );
}

/// A value JSON cannot carry: a NaN float is written as `null` and fails to decode back.
#[redis_cached(ttl = 60, name = "rt::nan")]
async fn not_a_number(
    id: u64,
    #[cache(skip)] calls: Arc<Calls>,
    #[cache(skip)] running: Arc<Concurrency>,
) -> f64 {
    calls.bump();
    running
        .run(tokio::time::sleep(Duration::from_millis(100)))
        .await;
    let _ = id;
    f64::NAN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_cannot_be_stored_sends_waiters_to_load_at_once() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Arc::new(Calls::default());
    let running = Arc::new(Concurrency::default());
    let mut set = JoinSet::new();
    for _ in 0..30 {
        let (cache, calls, running) = (cache.clone(), calls.clone(), running.clone());
        set.spawn(async move { cache.scope(not_a_number(1, calls, running)).await });
    }
    let results = set.join_all().await;
    assert!(results.iter().all(|v| v.is_nan()));
    assert_eq!(calls.get(), 30, "each caller loaded once");
    assert!(
        running.peak() >= 28,
        "loads ran side by side, not queued: peak {}",
        running.peak()
    );
    cache.wait_for_writes().await;
    assert!(
        crate::all_keys(&server)
            .await
            .iter()
            .all(|k| !k.contains("rt::nan") || k.ends_with(":gen")),
        "nothing stored that would not decode"
    );
}
