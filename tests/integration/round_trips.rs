//! What each path sends to Redis, counted with `INFO commandstats`: a hit is plain reads
//! (no script), a miss is lookup + lock + fill, renewal keeps a long load's lock alive, and
//! errors are shared with waiters only when they can be cloned.

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis_cached::{Cache, redis_cached};
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

#[tokio::test]
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
            // Round trip 1: GET. Round trip 2 (one pipeline): SET lock NX PX, GET entry, GET
            // generation. Round trip 3: EVALSHA of the fill script, which runs GET generation,
            // GET lock, DEL lock and SET entry inside Redis; commandstats counts those too.
            let miss = crate::command_counts(&server).await;
            let expected = [("get", 5), ("set", 2), ("evalsha", 1), ("del", 1)];
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

#[redis_cached(ttl = 60, name = "rt::long", lock_ttl = "300ms", lock_wait = "30s")]
async fn long_load(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    id
}

#[tokio::test]
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

#[derive(Debug, PartialEq)]
struct NotClone(u32);

#[redis_cached(ttl = 60, name = "rt::shared_err")]
async fn shared_error(id: u64, #[cache(skip)] calls: Arc<Calls>) -> Result<u64, Shared> {
    let n = calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = id;
    Err(Shared(n as u32))
}

#[redis_cached(ttl = 60, name = "rt::unshared_err")]
async fn unshared_error(id: u64, #[cache(skip)] calls: Arc<Calls>) -> Result<u64, NotClone> {
    let n = calls.bump();
    tokio::time::sleep(Duration::from_millis(20)).await;
    if n < 3 {
        Err(NotClone(n as u32))
    } else {
        Ok(id)
    }
}

#[tokio::test]
async fn errors_are_shared_with_waiters_only_when_they_can_be_cloned() {
    let cache = Cache::builder().url("mem://").build().await.expect("build");
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(shared_error(1, calls)).await });
    }
    let results = set.join_all().await;
    assert!(results.iter().all(|r| *r == Err(Shared(1))), "{results:?}");
    assert_eq!(calls.get(), 1, "one failing load, its error shared");

    // Without Clone, waiters regroup: loads repeat one at a time until one succeeds.
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(unshared_error(2, calls)).await });
    }
    let results = set.join_all().await;
    assert_eq!(
        calls.get(),
        3,
        "two failed leaders, then a third that succeeded and was shared"
    );
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2);
    assert_eq!(results.iter().filter(|r| **r == Ok(2)).count(), 48);
}
