//! Invalidation that cannot go stale: tags across functions, one round trip whatever the number
//! of entries, no stale set after key or tag invalidation (a randomized race repeated 600 times
//! each with and without the lock, and 150 times against a stale refresh, each asserting which
//! check refused), a fill whose lock was taken, refresh and put ordering, tag keys evicted by
//! hand, update-path attributes, and errors when Redis is down.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::AsyncCommands;
use redis_cached::{Cache, Error, cache_evict, redis_cached};
use tokio::{sync::Notify, task::JoinSet};

use crate::{
    Calls, redis_cache,
    support::{RedisServer, wait_until},
};

/// Versioned rows, as a database would hold them.
#[derive(Default)]
struct Db {
    rows: std::sync::Mutex<HashMap<u64, u64>>,
    loads: Calls,
}

impl Db {
    fn get(&self, id: u64) -> u64 {
        self.loads.bump();
        *self.rows.lock().expect("rows").get(&id).unwrap_or(&0)
    }

    fn set(&self, id: u64, value: u64) {
        self.rows.lock().expect("rows").insert(id, value);
    }
}

#[redis_cached(ttl = 600, tags = ["user:{id}", "org:{org}"], name = "inv::profile")]
async fn profile(id: u64, org: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.get(id)
}

#[redis_cached(ttl = 600, tags = ["org:{org}"], name = "inv::members")]
async fn members(org: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.get(1000 + org)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_reloads_exactly_the_tagged_entries_across_functions() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    cache
        .scope(async {
            for id in 1..=4 {
                profile(id, id % 2, db.clone()).await; // users 1, 3 in org 1; 2, 4 in org 0
            }
            members(0, db.clone()).await;
            members(1, db.clone()).await;
            assert_eq!(db.loads.get(), 6);
            // Entries stored, so the invalidations below have something to act on.
            cache.wait_for_writes().await;

            redis_cached::invalidate_tags(["org:1"])
                .await
                .expect("invalidate");
            for id in 1..=4 {
                profile(id, id % 2, db.clone()).await;
            }
            members(0, db.clone()).await;
            members(1, db.clone()).await;
            assert_eq!(
                db.loads.get(),
                6 + 3,
                "profiles 1 and 3 and org 1's members reloaded, nothing else"
            );
            cache.wait_for_writes().await;

            cache.invalidate_tags(["user:2"]).await.expect("invalidate");
            profile(2, 0, db.clone()).await;
            profile(4, 0, db.clone()).await;
            assert_eq!(db.loads.get(), 10, "only user 2");
            assert_eq!(cache.stats().tag_misses, 4);
        })
        .await;
}

#[redis_cached(ttl = 600, tags = ["bulk"], name = "inv::bulk")]
async fn bulk(id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_a_tag_on_100_000_entries_costs_what_it_costs_on_one() {
    let server = RedisServer::start();
    // Filling 100,000 entries from many tasks at once: give each write room.
    let cache = Cache::builder()
        .url(server.url())
        .namespace("test")
        .operation_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("build");
    let measure = |n: u64| {
        let (cache, server) = (cache.clone(), &server);
        async move {
            let mut ids = 0..n;
            loop {
                let batch: Vec<u64> = ids.by_ref().take(500).collect();
                if batch.is_empty() {
                    break;
                }
                let mut set = JoinSet::new();
                for id in batch {
                    let cache = cache.clone();
                    set.spawn(async move { cache.scope(bulk_put(id, &id)).await });
                }
                for result in set.join_all().await {
                    result.expect("put");
                }
            }
            crate::reset_command_counts(server).await;
            cache.invalidate_tags(["bulk"]).await.expect("invalidate");
            let sent = crate::command_counts(server).await;
            assert_eq!(cache.scope(bulk(n - 1)).await, n - 1);
            assert!(
                cache.stats().tag_misses >= 1,
                "the tagged entry missed after invalidation"
            );
            sent
        }
    };
    let one = measure(1).await;
    let many = measure(100_000).await;
    assert_eq!(
        one,
        HashMap::from([("unlink".to_owned(), 1)]),
        "one command for one entry"
    );
    assert_eq!(many, one, "and the same single command for 100,000 entries");
    println!("tag invalidation: {one:?} for 1 entry, {many:?} for 100,000 entries");
}

/// The racing loads' body: read the row, say so, then take `jitter_us` to finish.
async fn read_row_slowly(db: &Db, id: u64, read: &Notify, jitter_us: u64) -> u64 {
    let value = db.get(id);
    read.notify_one();
    tokio::time::sleep(Duration::from_micros(jitter_us)).await;
    value
}

#[redis_cached(ttl = 600, tags = ["row:{id}"], name = "inv::race")]
async fn racy(
    id: u64,
    #[cache(skip)] db: Arc<Db>,
    #[cache(skip)] read: Arc<Notify>,
    #[cache(skip)] jitter_us: u64,
) -> u64 {
    read_row_slowly(&db, id, &read, jitter_us).await
}

#[redis_cached(ttl = 600, tags = ["row:{id}"], lock = false, name = "inv::race_unlocked")]
async fn racy_unlocked(
    id: u64,
    #[cache(skip)] db: Arc<Db>,
    #[cache(skip)] read: Arc<Notify>,
    #[cache(skip)] jitter_us: u64,
) -> u64 {
    read_row_slowly(&db, id, &read, jitter_us).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Race {
    /// A miss's load, with the default lock.
    Locked,
    /// A miss's load without a lock: only the generation and tag checks stand.
    Unlocked,
}

/// One round of the race: a load reads the old row and is slow to finish; meanwhile the row
/// changes and is invalidated (by key or by tag); afterwards a read must see the new row.
async fn race_round(cache: &Cache, db: &Arc<Db>, id: u64, by_tag: bool, race: Race) -> bool {
    let read = Arc::new(Notify::new());
    let jitter = fastrand_u64(3000);
    db.set(id, 1);
    let call = |db: Arc<Db>, read: Arc<Notify>, jitter| {
        let cache = cache.clone();
        async move {
            match race {
                Race::Locked => cache.scope(racy(id, db, read, jitter)).await,
                Race::Unlocked => cache.scope(racy_unlocked(id, db, read, jitter)).await,
            }
        }
    };
    let slow = tokio::spawn(call(db.clone(), read.clone(), jitter));
    read.notified().await;
    tokio::time::sleep(Duration::from_micros(fastrand_u64(1500))).await;
    db.set(id, 2);
    let invalidated = if by_tag {
        cache.invalidate_tags([format!("row:{id}")]).await
    } else {
        match race {
            Race::Locked => cache.scope(racy_invalidate(id)).await,
            Race::Unlocked => cache.scope(racy_unlocked_invalidate(id)).await,
        }
    };
    invalidated.expect("invalidate");
    slow.await.expect("slow load");
    call(db.clone(), Arc::new(Notify::new()), 0).await == 2
}

fn fastrand_u64(below: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(below);
    h.finish() % below.max(1)
}

/// Runs the race and checks that no read saw the old row, and that each check that can
/// refuse a fill did so at least once (so each was exercised).
async fn run_race(race: Race) {
    let server = RedisServer::start();
    let cache = crate::patient_cache(&server).await;
    let db = Arc::new(Db::default());
    let mut stale_results = 0;
    const ROUNDS: u64 = 600;
    for round in 0..ROUNDS {
        if !race_round(&cache, &db, round, round % 2 == 0, race).await {
            stale_results += 1;
        }
    }
    cache.wait_for_writes().await;
    let stats = cache.stats();
    println!(
        "race ({race:?}): {ROUNDS} rounds, {stale_results} stale results, fills refused: \
         {} by generation, {} by tags, {} by lock",
        stats.fills_refused_generation, stats.fills_refused_tags, stats.fills_refused_lock
    );
    assert_eq!(
        stale_results, 0,
        "a read after an invalidation returned old data"
    );
    assert!(
        stats.fills_refused_generation > 0,
        "key invalidations refused fills by generation: {stats:?}"
    );
    assert!(
        stats.fills_refused_tags > 0,
        "tag invalidations refused fills by tag version: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_set_after_key_or_tag_invalidation_with_the_lock() {
    run_race(Race::Locked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_set_after_key_or_tag_invalidation_without_a_lock() {
    run_race(Race::Unlocked).await;
}

#[redis_cached(ttl = "20ms", stale = 600, tags = ["row:{id}"], name = "inv::race_refresh")]
async fn racy_revalidated(
    id: u64,
    #[cache(skip)] db: Arc<Db>,
    #[cache(skip)] read: Arc<Notify>,
    #[cache(skip)] jitter_us: u64,
) -> u64 {
    read_row_slowly(&db, id, &read, jitter_us).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_refresh_racing_an_invalidation_never_lands() {
    let server = RedisServer::start();
    let cache = crate::patient_cache(&server).await;
    let db = Arc::new(Db::default());
    let mut stale_results = 0;
    const ROUNDS: u64 = 150;
    for id in 0..ROUNDS {
        db.set(id, 1);
        let call =
            |read: Arc<Notify>, jitter| cache.scope(racy_revalidated(id, db.clone(), read, jitter));
        assert_eq!(call(Arc::new(Notify::new()), 0).await, 1);
        cache.wait_for_writes().await;
        let key = cache.scope(async { racy_revalidated_key(id) }).await;
        wait_until(
            "the entry to turn stale",
            Duration::from_secs(5),
            || async { crate::pttl(&server, &key).await <= 600_000 },
        )
        .await;
        // A stale hit: served at once, refreshed in the background (reading the old row).
        let read = Arc::new(Notify::new());
        assert_eq!(
            call(read.clone(), fastrand_u64(3000)).await,
            1,
            "served stale"
        );
        tokio::time::timeout(Duration::from_secs(10), read.notified())
            .await
            .expect("the refresh read the row");
        tokio::time::sleep(Duration::from_micros(fastrand_u64(1500))).await;
        db.set(id, 2);
        let invalidated = if id % 2 == 0 {
            cache.invalidate_tags([format!("row:{id}")]).await
        } else {
            cache.scope(racy_revalidated_invalidate(id)).await
        };
        invalidated.expect("invalidate");
        cache.wait_for_writes().await;
        if call(Arc::new(Notify::new()), 0).await != 2 {
            stale_results += 1;
        }
    }
    let stats = cache.stats();
    println!(
        "stale refresh race: {ROUNDS} rounds, {stale_results} stale results, {} refreshes, \
         fills refused: {} by generation, {} by tags",
        stats.refreshes, stats.fills_refused_generation, stats.fills_refused_tags
    );
    assert_eq!(stale_results, 0, "an invalidated refresh landed");
    assert_eq!(stats.refreshes, ROUNDS, "every round refreshed a stale hit");
    assert!(
        stats.fills_refused_generation > 0 && stats.fills_refused_tags > 0,
        "{stats:?}"
    );
}

/// A loader that holds at `gate` (when given) after reading `value`.
#[redis_cached(
    ttl = 600,
    name = "inv::lock_lost",
    lock_ttl = "100ms",
    max_load = "1ms"
)]
async fn lock_lost(
    id: u64,
    #[cache(skip)] value: u64,
    #[cache(skip)] gate: Option<Arc<Notify>>,
) -> u64 {
    let _ = id;
    if let Some(gate) = gate {
        gate.notified().await;
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_whose_lock_expired_and_was_taken_is_refused() {
    let server = RedisServer::start();
    let first = redis_cache(&server).await;
    let second = redis_cache(&server).await;
    let key = first.scope(async { lock_lost_key(1) }).await;
    let lock = format!("{key}:lock");
    let gate = Arc::new(Notify::new());
    let slow = {
        let (cache, gate) = (first.clone(), gate.clone());
        tokio::spawn(async move { cache.scope(lock_lost(1, 1, Some(gate))).await })
    };
    // `max_load` is over at once, so the lock is not renewed and expires after 500 ms.
    wait_until(
        "the first load's lock to appear",
        Duration::from_secs(5),
        || async { crate::pttl(&server, &lock).await > 0 },
    )
    .await;
    wait_until(
        "the first load's lock to expire",
        Duration::from_secs(5),
        || async { crate::pttl(&server, &lock).await == -2 },
    )
    .await;
    // Another process takes the free lock, loads and fills.
    assert_eq!(second.scope(lock_lost(1, 2, None)).await, 2);
    second.wait_for_writes().await;
    gate.notify_one();
    assert_eq!(
        slow.await.expect("slow"),
        1,
        "its own caller gets its value"
    );
    first.wait_for_writes().await;
    assert_eq!(first.stats().fills_refused_lock, 1, "{:?}", first.stats());
    assert_eq!(
        first.scope(lock_lost(1, 3, None)).await,
        2,
        "the other process's fill stands"
    );
}

#[redis_cached(ttl = 1, stale = 60, tags = ["doc:{id}"], name = "inv::stale_doc")]
async fn stale_doc(id: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.get(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_entry_is_never_served_stale() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    for (id, by_tag) in [(1, true), (2, false)] {
        db.set(id, 1);
        assert_eq!(cache.scope(stale_doc(id, db.clone())).await, 1);
        let key = cache.scope(async { stale_doc_key(id) }).await;
        crate::support::wait_until("the entry to go stale", Duration::from_secs(10), || async {
            let left = crate::pttl(&server, &key).await;
            left > 0 && left <= 60_000
        })
        .await;
        db.set(id, 2);
        if by_tag {
            cache
                .invalidate_tags([format!("doc:{id}")])
                .await
                .expect("invalidate");
        } else {
            cache
                .scope(stale_doc_invalidate(id))
                .await
                .expect("invalidate");
        }
        assert_eq!(
            cache.scope(stale_doc(id, db.clone())).await,
            2,
            "not the stale value (by tag: {by_tag})"
        );
    }
    assert_eq!(cache.stats().stale_serves, 0);
}

#[redis_cached(ttl = 600, name = "inv::refreshed")]
async fn refreshed(id: u64, #[cache(skip)] db: Arc<Db>, #[cache(skip)] delay_ms: u64) -> u64 {
    let value = db.get(id);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    value
}

/// Starts `refreshed_refresh(1)` with a 300 ms load and waits until it has read the database
/// (its `loads`-th read).
async fn start_slow_refresh(
    cache: &Cache,
    db: &Arc<Db>,
    loads: usize,
) -> tokio::task::JoinHandle<Result<u64, Error>> {
    let slow = {
        let (cache, db) = (cache.clone(), db.clone());
        tokio::spawn(async move { cache.scope(refreshed_refresh(1, db, 300)).await })
    };
    crate::support::wait_until(
        "the slow refresh to read",
        Duration::from_secs(5),
        || async { db.loads.get() == loads },
    )
    .await;
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refresh_that_started_first_cannot_overwrite_a_later_one_or_a_put() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    let slow = start_slow_refresh(&cache, &db, 1).await;
    db.set(1, 2);
    cache
        .scope(refreshed_refresh(1, db.clone(), 0))
        .await
        .expect("fast refresh");
    let _ = slow.await.expect("slow refresh");
    assert_eq!(
        cache.scope(refreshed(1, db.clone(), 0)).await,
        2,
        "the later refresh's value stays"
    );

    // A put during a slow load wins too.
    let slow = start_slow_refresh(&cache, &db, 3).await;
    cache.scope(refreshed_put(1, &99)).await.expect("put");
    let _ = slow.await.expect("slow refresh");
    assert_eq!(
        cache.scope(refreshed(1, db.clone(), 0)).await,
        99,
        "the put value stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_entries_carry_their_tags() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    cache
        .scope(async {
            profile_put(5, 9, &555).await.expect("put");
            assert_eq!(profile(5, 9, db.clone()).await, 555);
            assert_eq!(db.loads.get(), 0);
            redis_cached::invalidate_tags(["org:9"])
                .await
                .expect("invalidate");
            assert_eq!(
                profile(5, 9, db.clone()).await,
                0,
                "the put entry was reachable by its tag"
            );
            assert_eq!(db.loads.get(), 1);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_tag_key_never_brings_an_invalidated_entry_back() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    let mut conn = server.conn().await;
    let tag_key = "test:tag:{user:7}";
    cache
        .scope(async {
            db.set(7, 1);
            assert_eq!(profile(7, 0, db.clone()).await, 1);
            let old_entry: Vec<u8> = conn.get(profile_key(7, 0)).await.expect("GET");

            db.set(7, 2);
            redis_cached::invalidate_tags(["user:7"])
                .await
                .expect("invalidate");
            assert_eq!(profile(7, 0, db.clone()).await, 2);

            // Eviction of the tag key, then the old entry written back by someone: still a miss.
            let _: () = conn.del(tag_key).await.expect("DEL");
            let _: () = conn
                .set_ex(profile_key(7, 0), old_entry, 600)
                .await
                .expect("SET");
            db.set(7, 3);
            assert_eq!(
                profile(7, 0, db.clone()).await,
                3,
                "the invalidated entry did not come back"
            );
            assert!(
                conn.pttl::<_, i64>(tag_key).await.expect("PTTL") > 0,
                "tag keys expire"
            );
        })
        .await;
}

#[derive(Debug)]
enum AppError {
    Cache(Error),
}

impl From<Error> for AppError {
    fn from(err: Error) -> Self {
        AppError::Cache(err)
    }
}

#[cache_evict(tags = ["user:{id}"])]
async fn rename(id: u64, name: &str, #[cache(skip)] db: Arc<Db>) -> Result<(), AppError> {
    let _ = name;
    let current = db.rows.lock().expect("rows").get(&id).copied().unwrap_or(0);
    db.set(id, current + 10);
    Ok(())
}

#[cache_evict(tags = ["user:{id}"])]
async fn failing_update(id: u64) -> Result<(), AppError> {
    let _ = id;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_functions_evict_on_ok_and_report_failed_invalidations() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    cache
        .scope(async {
            db.set(3, 1);
            assert_eq!(profile(3, 0, db.clone()).await, 1);
            rename(3, "Ada", db.clone()).await.expect("update");
            assert_eq!(
                profile(3, 0, db.clone()).await,
                11,
                "the update evicted the entry"
            );

            server.kill();
            let err = failing_update(3)
                .await
                .expect_err("a failed invalidation must be reported");
            assert!(matches!(
                err,
                AppError::Cache(Error::Backend(_) | Error::Timeout(_) | Error::Unavailable)
            ));
            let err = cache.invalidate_tags(["user:3"]).await.expect_err("tags");
            assert!(
                matches!(
                    err,
                    Error::Backend(_) | Error::Timeout(_) | Error::Unavailable
                ),
                "{err}"
            );
            assert!(profile_invalidate(3, 0).await.is_err());
            assert!(profile_put(3, 0, &1).await.is_err());
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_invalidation_work_on_the_embedded_store() {
    let cache = Cache::builder().url("mem://").build().await.expect("build");
    let db = Arc::new(Db::default());
    cache
        .scope(async {
            db.set(1, 1);
            assert_eq!(profile(1, 1, db.clone()).await, 1);
            db.set(1, 2);
            redis_cached::invalidate_tags(["org:1"])
                .await
                .expect("invalidate");
            assert_eq!(profile(1, 1, db.clone()).await, 2);
            db.set(1, 3);
            profile_invalidate(1, 1).await.expect("invalidate");
            assert_eq!(profile(1, 1, db.clone()).await, 3);
        })
        .await;
    let _ = AtomicU64::new(0).load(Ordering::SeqCst);
}
