//! Freshness: stale-while-revalidate (background and foreground), stale-if-error, and XFetch
//! early refresh, each running exactly one refresh while callers are served.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis_cached::{Cache, redis_cached};
use tokio::task::JoinSet;

use crate::{
    Calls, pttl, redis_cache,
    support::{RedisServer, wait_until},
};

/// A versioned source of truth: each load returns the current version and counts itself.
#[derive(Default)]
struct Source {
    version: AtomicU64,
    loads: Calls,
    slow: AtomicBool,
}

impl Source {
    async fn load(&self) -> u64 {
        self.loads.bump();
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        self.version.load(Ordering::SeqCst)
    }
}

#[redis_cached(ttl = 1, stale = 30, name = "fresh::swr")]
async fn swr(id: u64, #[cache(skip)] source: Arc<Source>) -> u64 {
    let _ = id;
    source.load().await
}

/// Waits until the entry is past its TTL and inside its stale window.
async fn wait_until_stale(server: &RedisServer, key: &str, stale_ms: i64) {
    wait_until("the entry to go stale", Duration::from_secs(10), || async {
        let left = pttl(server, key).await;
        left > 0 && left <= stale_ms
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_the_old_value_during_one_background_refresh() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let source = Arc::new(Source::default());
    source.version.store(1, Ordering::SeqCst);
    assert_eq!(cache.scope(swr(1, source.clone())).await, 1);
    cache.wait_for_writes().await;
    let key = cache.scope(async { swr_key(1) }).await;
    assert!(pttl(&server, &key).await > 30_000, "stored for ttl + stale");

    source.version.store(2, Ordering::SeqCst);
    source.slow.store(true, Ordering::SeqCst);
    wait_until_stale(&server, &key, 30_000).await;
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (cache, source) = (cache.clone(), source.clone());
        set.spawn(async move { cache.scope(swr(1, source)).await });
    }
    let served = set.join_all().await;
    assert!(
        served.iter().all(|&v| v == 1),
        "everyone got the stale value at once: {served:?}"
    );
    // Counted when the refresh is started, before its task runs.
    assert_eq!(cache.stats().refreshes, 1, "exactly one refresh started");
    assert!(cache.stats().stale_serves >= 50);

    wait_until("the refreshed value", Duration::from_secs(10), || async {
        cache.scope(swr(1, source.clone())).await == 2
    })
    .await;
    assert_eq!(source.loads.get(), 2, "and only one ran");
}

#[redis_cached(ttl = 1, stale = 30, name = "fresh::foreground")]
async fn swr_borrowed(id: &str, #[cache(skip)] source: &Source) -> u64 {
    let _ = id;
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_arguments_refresh_in_the_foreground_of_one_caller() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let source = Arc::new(Source::default());
    source.version.store(1, Ordering::SeqCst);
    cache.scope(swr_borrowed("a", &source)).await;
    let key = cache.scope(async { swr_borrowed_key("a") }).await;
    source.version.store(2, Ordering::SeqCst);
    source.slow.store(true, Ordering::SeqCst);
    wait_until_stale(&server, &key, 30_000).await;

    let mut set = JoinSet::new();
    for _ in 0..20 {
        let (cache, source) = (cache.clone(), source.clone());
        set.spawn(async move { cache.scope(swr_borrowed("a", &source)).await });
    }
    let mut served = set.join_all().await;
    served.sort_unstable();
    assert_eq!(
        served.iter().filter(|&&v| v == 2).count(),
        1,
        "the refreshing caller got the new value: {served:?}"
    );
    assert_eq!(
        served.iter().filter(|&&v| v == 1).count(),
        19,
        "the others got the stale one"
    );
    assert_eq!(source.loads.get(), 2);
    assert_eq!(cache.scope(swr_borrowed("a", &source)).await, 2);
}

#[derive(Debug, Clone, PartialEq)]
struct Down;

#[redis_cached(ttl = 1, stale = 3, name = "fresh::if_error")]
async fn fragile(
    id: u64,
    #[cache(skip)] healthy: Arc<AtomicBool>,
    #[cache(skip)] calls: Arc<Calls>,
) -> Result<u64, Down> {
    calls.bump();
    if healthy.load(Ordering::SeqCst) {
        Ok(id)
    } else {
        Err(Down)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_old_value_until_the_stale_window_ends() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let healthy = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(Calls::default());
    assert_eq!(
        cache
            .scope(fragile(8, healthy.clone(), calls.clone()))
            .await,
        Ok(8)
    );
    let key = cache.scope(async { fragile_key(8) }).await;
    healthy.store(false, Ordering::SeqCst);
    wait_until_stale(&server, &key, 3_000).await;

    // The refresh fails: callers keep getting the stale value.
    wait_until("a failed refresh", Duration::from_secs(5), || async {
        assert_eq!(
            cache
                .scope(fragile(8, healthy.clone(), calls.clone()))
                .await,
            Ok(8)
        );
        cache.stats().stale_if_error >= 1
    })
    .await;
    assert!(calls.get() >= 2);

    // After ttl + stale the entry is gone and the error reaches the caller.
    wait_until(
        "the stale window to end",
        Duration::from_secs(10),
        || async {
            cache
                .scope(fragile(8, healthy.clone(), calls.clone()))
                .await
                == Err(Down)
        },
    )
    .await;
}

#[redis_cached(ttl = 2, early_refresh = 200.0, name = "fresh::xfetch")]
async fn early(id: u64, #[cache(skip)] source: Arc<Source>) -> u64 {
    let _ = id;
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_runs_once_while_callers_are_served() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let source = Arc::new(Source::default());
    source.version.store(1, Ordering::SeqCst);
    source.slow.store(true, Ordering::SeqCst);
    // A 400 ms load with beta 200: every hit of a 2 s entry draws an early refresh
    // (exp(-2 / 80) ~ 0.98), so a burst must still start exactly one.
    assert_eq!(cache.scope(early(1, source.clone())).await, 1);
    cache.wait_for_writes().await;
    source.version.store(2, Ordering::SeqCst);
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (cache, source) = (cache.clone(), source.clone());
        set.spawn(async move { cache.scope(early(1, source)).await });
    }
    let served = set.join_all().await;
    assert!(
        served.iter().all(|&v| v == 1),
        "callers were served the current value meanwhile"
    );
    assert_eq!(
        cache.stats().refreshes,
        1,
        "one early refresh for the burst"
    );
    wait_until(
        "the early refresh to land",
        Duration::from_secs(10),
        || async { cache.scope(early(1, source.clone())).await == 2 },
    )
    .await;
}

#[redis_cached(ttl = 1, stale = 30, lock = false, name = "fresh::memory")]
async fn in_memory(id: u64, #[cache(skip)] source: Arc<Source>) -> u64 {
    let _ = id;
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_serves_stale_and_refreshes_once() {
    let cache = Cache::builder().url("mem://").build().await.expect("build");
    let source = Arc::new(Source::default());
    source.version.store(1, Ordering::SeqCst);
    cache.scope(in_memory(1, source.clone())).await;
    source.version.store(2, Ordering::SeqCst);
    wait_until("a stale serve", Duration::from_secs(5), || async {
        cache.scope(in_memory(1, source.clone())).await;
        cache.stats().stale_serves > 0
    })
    .await;
    wait_until("the refreshed value", Duration::from_secs(5), || async {
        cache.scope(in_memory(1, source.clone())).await == 2
    })
    .await;
    assert_eq!(source.loads.get(), 2);
}

/// A `static` in the body counts every run of the body: one counter only if the body is emitted
/// once (a refresh running a second copy of it would count in a second `static`).
#[redis_cached(ttl = 1, stale = 30, name = "fresh::one_body")]
async fn counted_runs(id: u64) -> u64 {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let _ = id;
    RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loader_and_the_background_refresh_run_the_same_body() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    assert_eq!(cache.scope(counted_runs(1)).await, 1);
    cache.wait_for_writes().await;
    let key = cache.scope(async { counted_runs_key(1) }).await;
    wait_until_stale(&server, &key, 30_000).await;
    // This stale hit starts the background refresh, whose run is the body's second.
    assert_eq!(cache.scope(counted_runs(1)).await, 1);
    wait_until("the refresh's value", Duration::from_secs(10), || async {
        cache.wait_for_writes().await;
        cache.scope(counted_runs(1)).await == 2
    })
    .await;
}
