//! Invalidation that cannot go stale: tags across functions, one round trip whatever the number
//! of entries, no stale set after key or tag invalidation (a randomized race repeated 1,000
//! times each with and without `stale`), refresh and put ordering, tag keys evicted by hand,
//! update-path attributes, and errors when Redis is down.

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

use crate::{Calls, redis_cache, support::RedisServer};

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

#[redis_cached(ttl = 600, tags = ["row:{id}"], name = "inv::race")]
async fn racy(
    id: u64,
    #[cache(skip)] db: Arc<Db>,
    #[cache(skip)] read: Arc<Notify>,
    #[cache(skip)] jitter_us: u64,
) -> u64 {
    let value = db.get(id);
    read.notify_one();
    tokio::time::sleep(Duration::from_micros(jitter_us)).await;
    value
}

#[redis_cached(ttl = 600, stale = 600, tags = ["row:{id}"], name = "inv::race_stale")]
async fn racy_stale(
    id: u64,
    #[cache(skip)] db: Arc<Db>,
    #[cache(skip)] read: Arc<Notify>,
    #[cache(skip)] jitter_us: u64,
) -> u64 {
    let value = db.get(id);
    read.notify_one();
    tokio::time::sleep(Duration::from_micros(jitter_us)).await;
    value
}

/// One round of the race: a load reads the old row and is slow to finish; meanwhile the row
/// changes and is invalidated (by key or by tag); afterwards a read must see the new row.
async fn race_round(cache: &Cache, db: &Arc<Db>, id: u64, by_tag: bool, with_stale: bool) -> bool {
    let read = Arc::new(Notify::new());
    let jitter = fastrand_u64(3000);
    db.set(id, 1);
    let call = |db: Arc<Db>, read: Arc<Notify>, jitter| {
        let cache = cache.clone();
        async move {
            if with_stale {
                cache.scope(racy_stale(id, db, read, jitter)).await
            } else {
                cache.scope(racy(id, db, read, jitter)).await
            }
        }
    };
    let slow = tokio::spawn(call(db.clone(), read.clone(), jitter));
    read.notified().await;
    tokio::time::sleep(Duration::from_micros(fastrand_u64(1500))).await;
    db.set(id, 2);
    let invalidated = if by_tag {
        cache.invalidate_tags([format!("row:{id}")]).await
    } else if with_stale {
        cache.scope(racy_stale_invalidate(id)).await
    } else {
        cache.scope(racy_invalidate(id)).await
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

async fn run_race(with_stale: bool) {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let db = Arc::new(Db::default());
    let mut stale_results = 0;
    const ROUNDS: u64 = 1000;
    for round in 0..ROUNDS {
        if !race_round(&cache, &db, round, round % 2 == 0, with_stale).await {
            stale_results += 1;
        }
    }
    println!(
        "race (stale = {}): {ROUNDS} rounds, {stale_results} stale results, {} fills refused",
        if with_stale { 600 } else { 0 },
        cache.stats().fills_rejected
    );
    assert_eq!(
        stale_results, 0,
        "a read after an invalidation returned old data"
    );
    assert!(
        cache.stats().fills_rejected > 0,
        "the race was exercised: some fills were refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_set_after_key_or_tag_invalidation_1000_rounds() {
    run_race(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_set_or_stale_serve_with_stale_window_1000_rounds() {
    run_race(true).await;
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
