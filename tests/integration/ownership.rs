//! The read path's ownership defects, one test each (issue 9), against a real `redis-server`:
//! a cancelled call cannot switch the cache off, a hung load frees its key, an outage ends
//! within a second of Redis answering, an invalidation is never handed to a later waiter, an
//! uncached `None` replaces the old value, a lost generation refuses a stale fill, locks are
//! released only by their owner (and by a cancelled one), and renewal never pauses a loader.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::AsyncCommands;
use redis_cached::{Cache, redis_cached};
use tokio::sync::watch;

use crate::{
    Calls, redis_cache,
    support::{RedisServer, wait_until},
};

/// A row whose loads can be held at a gate after they read it.
struct GatedDb {
    value: AtomicU64,
    loads: Calls,
    gate: watch::Sender<bool>,
}

impl GatedDb {
    fn new(value: u64) -> Arc<GatedDb> {
        Arc::new(GatedDb {
            value: AtomicU64::new(value),
            loads: Calls::default(),
            gate: watch::Sender::new(false),
        })
    }

    /// Reads the row, then waits for the gate to open.
    async fn read(&self) -> u64 {
        let value = self.value.load(Ordering::SeqCst);
        self.loads.bump();
        let mut open = self.gate.subscribe();
        let _ = open.wait_for(|open| *open).await;
        value
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }
}

async fn cache_with(server: &RedisServer, timeout_ms: u64, probe_ms: u64) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("test")
        .operation_timeout(Duration::from_millis(timeout_ms))
        .breaker_open_for(Duration::from_millis(probe_ms))
        .build()
        .await
        .expect("build")
}

/// Runs `call` under `cache` in a task of its own.
fn spawn_in<F>(cache: &Cache, call: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cache = cache.clone();
    tokio::spawn(async move { cache.scope(call).await })
}

#[redis_cached(ttl = 60, name = "own::plain")]
async fn plain(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    id
}

/// Calls `plain` with fresh ids until one is stored in Redis; returns when it was.
async fn until_a_call_reaches_redis(cache: &Cache, calls: &Arc<Calls>, limit: Duration) {
    let mut id = 1_000;
    let before = cache.stats().stores;
    wait_until("a call to reach redis again", limit, || {
        id += 1;
        let (cache, calls) = (cache.clone(), calls.clone());
        async move {
            cache.scope(plain(id, calls)).await;
            cache.wait_for_writes().await;
            cache.stats().stores > before
        }
    })
    .await;
}

// The defect: a cancelled caller probe left the breaker open for good. Now the background
// prober recovers whatever callers do; the probe guard itself is unit-tested in
// `connection::breaker` (a dropped probe frees the slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_cannot_keep_the_cache_switched_off() {
    let server = RedisServer::start();
    let cache = cache_with(&server, 100, 200).await;
    let calls = Arc::new(Calls::default());
    server.pause();
    wait_until("the breaker to open", Duration::from_secs(10), || async {
        cache.scope(plain(1, calls.clone())).await;
        cache.is_degraded()
    })
    .await;
    // Calls cancelled mid-flight (a request timeout, a client gone) for a second, while the
    // breaker is open and probes are due: any of them may be the probe.
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for id in 0..100 {
        ticks.tick().await;
        let call = cache.scope(plain(id, calls.clone()));
        let _ = tokio::time::timeout(Duration::from_millis(2), call).await;
    }
    server.resume();
    let resumed = Instant::now();
    until_a_call_reaches_redis(&cache, &calls, Duration::from_secs(5)).await;
    println!(
        "cancelled probes: a call reached redis {:?} after it resumed",
        resumed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_redis_within_a_second_of_it_answering_after_an_outage() {
    let mut server = RedisServer::start();
    let cache = cache_with(&server, 100, 500).await;
    let calls = Arc::new(Calls::default());
    cache.scope(plain(1, calls.clone())).await;
    server.kill();
    // Three seconds of traffic against a dead server: the breaker opens and stays open.
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(3) {
        ticks.tick().await;
        cache.scope(plain(1, calls.clone())).await;
    }
    assert!(cache.is_degraded(), "the breaker opened during the outage");
    server.restart(); // returns once the server answers PING
    let answering = Instant::now();
    until_a_call_reaches_redis(&cache, &calls, Duration::from_secs(5)).await;
    let took = answering.elapsed();
    println!("outage: first call through to redis {took:?} after it answered again");
    assert!(
        took < Duration::from_secs(1),
        "calls reach Redis within a second of it answering (took {took:?})"
    );
}

/// A source whose next load, once armed, never returns.
#[derive(Default)]
struct HangsOnce {
    version: AtomicU64,
    armed: AtomicBool,
    loads: Calls,
}

impl HangsOnce {
    async fn load(&self) -> u64 {
        self.loads.bump();
        if self.armed.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.version.load(Ordering::SeqCst)
    }
}

#[redis_cached(
    ttl = 1,
    stale = 1,
    name = "own::hung",
    lock_ttl = "300ms",
    max_load = "600ms"
)]
async fn hung_refresh(id: u64, #[cache(skip)] source: Arc<HangsOnce>) -> u64 {
    let _ = id;
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_background_refresh_frees_its_key() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let other_process = redis_cache(&server).await;
    let source = Arc::new(HangsOnce::default());
    source.version.store(1, Ordering::SeqCst);
    assert_eq!(cache.scope(hung_refresh(1, source.clone())).await, 1);
    cache.wait_for_writes().await;
    let key = cache.scope(async { hung_refresh_key(1) }).await;
    source.version.store(2, Ordering::SeqCst);
    source.armed.store(true, Ordering::SeqCst);
    // Once stale, a hit starts the background refresh that hangs.
    wait_until("a refresh to start", Duration::from_secs(5), || async {
        assert_eq!(cache.scope(hung_refresh(1, source.clone())).await, 1);
        source.loads.get() == 2
    })
    .await;
    // After ttl + stale the entry is gone; the next callers must not wait on the hung load.
    wait_until("the entry to expire", Duration::from_secs(5), || async {
        crate::pttl(&server, &key).await == -2
    })
    .await;
    let here = tokio::time::timeout(
        Duration::from_secs(5),
        cache.scope(hung_refresh(1, source.clone())),
    )
    .await
    .expect("a caller after expiry is not stranded behind the hung refresh");
    assert_eq!(here, 2);
    tokio::time::timeout(Duration::from_secs(5), cache.wait_for_writes())
        .await
        .expect("the hung refresh was dropped at max_load, so writes settle");
    let there = tokio::time::timeout(
        Duration::from_secs(5),
        other_process.scope(hung_refresh(1, source.clone())),
    )
    .await
    .expect("another process is not stranded either");
    assert_eq!(there, 2);
    assert!(
        crate::pttl(&server, &key).await > 0,
        "the key is cached again"
    );
}

/// A loader that, once armed, never returns (a hung database call).
#[redis_cached(ttl = 60, name = "own::stuck", lock_wait = "200ms", max_load = "60s")]
async fn stuck(id: u64, #[cache(skip)] source: Arc<HangsOnce>) -> u64 {
    let _ = id;
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_stops_waiting_for_a_hung_load_after_lock_wait() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let source = Arc::new(HangsOnce::default());
    source.version.store(7, Ordering::SeqCst);
    source.armed.store(true, Ordering::SeqCst);
    // The leader's load hangs (and keeps renewing its lock: `max_load` is a minute).
    let hung = spawn_in(&cache, stuck(1, source.clone()));
    wait_until("the hung load to start", Duration::from_secs(5), || async {
        source.loads.get() == 1
    })
    .await;
    // A waiter of this process gives up on it after `lock_wait` and loads once itself; the
    // callers behind it share that one extra load.
    let waiters: Vec<_> = (0..10)
        .map(|_| spawn_in(&cache, stuck(1, source.clone())))
        .collect();
    for waiter in waiters {
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("no waiter waits on a hung load without a deadline")
            .expect("waiter");
        assert_eq!(got, 7);
    }
    assert_eq!(
        source.loads.get(),
        2,
        "one extra load in the process, not one per waiter"
    );
    hung.abort();
}

#[redis_cached(ttl = 60, tags = ["doc:{id}"], name = "own::doc", lock_wait = "100ms")]
async fn doc(id: u64, #[cache(skip)] db: Arc<GatedDb>) -> u64 {
    let _ = id;
    db.read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_overtaken_by_an_invalidation_is_not_handed_to_a_later_waiter() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let elsewhere = redis_cache(&server).await;
    let db = GatedDb::new(1);
    // Another process holds the lock and never fills: this process's leader waits out
    // `lock_wait`, then loads without a claim of its own.
    let key = cache.scope(async { doc_key(1) }).await;
    let mut raw = server.conn().await;
    let _: () = raw
        .set_ex(format!("{key}:lock"), "foreign", 60)
        .await
        .expect("SET");

    let first = spawn_in(&cache, doc(1, db.clone()));
    wait_until("the first load to read", Duration::from_secs(5), || async {
        db.loads.get() == 1
    })
    .await;
    // The row changes and another process invalidates; that call has returned.
    db.value.store(2, Ordering::SeqCst);
    elsewhere
        .invalidate_tags(["doc:1"])
        .await
        .expect("invalidate");
    // A caller that starts now joins the load that read the old row.
    let misses = cache.stats().misses;
    let later = spawn_in(&cache, doc(1, db.clone()));
    wait_until(
        "the later caller to join",
        Duration::from_secs(5),
        || async { cache.stats().misses > misses },
    )
    .await;
    db.open();
    assert_eq!(first.await.expect("first"), 1, "the leader's own caller");
    assert_eq!(
        later.await.expect("later"),
        2,
        "a caller that began after the invalidation never gets the old row"
    );
    assert!(cache.stats().outcomes_rejected >= 1);
}

#[redis_cached(ttl = 60, cache_none = false, name = "own::row")]
async fn row(id: u64, #[cache(skip)] db: Arc<GatedDb>) -> Option<u64> {
    let _ = id;
    db.open();
    Some(db.read().await).filter(|v| *v != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_an_uncached_none_removes_the_old_value() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = GatedDb::new(5);
    cache
        .scope(async {
            assert_eq!(row(1, db.clone()).await, Some(5));
            cache.wait_for_writes().await;
            db.value.store(0, Ordering::SeqCst); // the row was deleted
            assert_eq!(row_refresh(1, db.clone()).await.expect("refresh"), None);
            assert_eq!(
                row(1, db.clone()).await,
                None,
                "the old value is gone, not served until its TTL"
            );
        })
        .await;
    assert_eq!(db.loads.get(), 3);
}

#[redis_cached(ttl = 60, lock = false, name = "own::gen")]
async fn generational(id: u64, #[cache(skip)] db: Arc<GatedDb>) -> u64 {
    let _ = id;
    db.read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_generation_key_refuses_a_fill_that_began_before_an_invalidation() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = GatedDb::new(1);
    let key = cache.scope(async { generational_key(1) }).await;
    let load = spawn_in(&cache, generational(1, db.clone()));
    wait_until("the load to read", Duration::from_secs(5), || async {
        db.loads.get() == 1
    })
    .await;
    db.value.store(2, Ordering::SeqCst);
    cache
        .scope(generational_invalidate(1))
        .await
        .expect("invalidate");
    // The generation key is lost (evicted, or a restart without persistence).
    let mut raw = server.conn().await;
    let _: () = raw.del(format!("{key}:gen")).await.expect("DEL");
    db.open();
    assert_eq!(load.await.expect("load"), 1);
    cache.wait_for_writes().await;
    assert_eq!(
        cache.stats().fills_refused_generation,
        1,
        "the fill was refused"
    );
    assert_eq!(crate::pttl(&server, &key).await, -2, "nothing stored");
    assert_eq!(cache.scope(generational(1, db.clone())).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_leaves_another_owners_lock_alone() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let key = cache.scope(async { doc_key(7) }).await;
    let lock = format!("{key}:lock");
    let mut raw = server.conn().await;
    let _: () = raw.set_ex(&lock, "foreign", 60).await.expect("SET");
    cache.scope(doc_invalidate(7)).await.expect("invalidate");
    let owner: Option<String> = raw.get(&lock).await.expect("GET");
    assert_eq!(
        owner.as_deref(),
        Some("foreign"),
        "released only by its owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_load_releases_its_lock() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = GatedDb::new(1);
    let key = cache.scope(async { doc_key(3) }).await;
    let load = spawn_in(&cache, doc(3, db.clone()));
    wait_until("the load to start", Duration::from_secs(5), || async {
        db.loads.get() == 1
    })
    .await;
    let mut raw = server.conn().await;
    assert!(
        raw.exists::<_, bool>(format!("{key}:lock"))
            .await
            .expect("EXISTS")
    );
    load.abort();
    wait_until("the lock to be released", Duration::from_secs(2), || {
        let mut raw = raw.clone();
        let lock = format!("{key}:lock");
        async move { !raw.exists::<_, bool>(lock).await.unwrap_or(true) }
    })
    .await;
}

#[redis_cached(ttl = 60, name = "own::steady", lock_ttl = "60ms", max_load = "10s")]
async fn steady(id: u64, #[cache(skip)] gaps: Arc<Mutex<Vec<Duration>>>) -> u64 {
    let mut last = Instant::now();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        gaps.lock().expect("gaps").push(last.elapsed());
        last = Instant::now();
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_renewal_never_pauses_the_loader() {
    let server = RedisServer::start();
    let cache = cache_with(&server, 200, 500).await;
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let load = spawn_in(&cache, steady(1, gaps.clone()));
    wait_until("the load to run", Duration::from_secs(5), || async {
        !gaps.lock().expect("gaps").is_empty()
    })
    .await;
    // Redis hangs while the loader runs: every renewal (each 20 ms) waits out its timeout.
    server.pause();
    assert_eq!(load.await.expect("load"), 1);
    server.resume();
    let worst = gaps.lock().expect("gaps").iter().copied().max();
    let worst = worst.unwrap_or_default();
    assert!(
        worst < Duration::from_millis(150),
        "a 10 ms loader step took {worst:?}: renewal paused the loader"
    );
}
