//! Bounded memory: every key the library writes carries an expiry.

use redis_cached::redis_cached;

use crate::{Calls, all_keys, pttl, redis_cache, support::RedisServer};

#[redis_cached(ttl = "1h", name = "expiry::plain")]
async fn plain(id: u32) -> u32 {
    id
}

#[redis_cached(ttl = "2h", jitter = 0.5, name = "expiry::option")]
async fn maybe(id: u32) -> Option<u32> {
    id.is_multiple_of(3).then_some(id)
}

#[redis_cached(ttl = 60, stale = 30, tags = ["group:{id}", "all"], name = "expiry::tagged")]
async fn tagged(id: u32) -> u32 {
    id % 10
}

#[redis_cached(name = "expiry::default_ttl")]
async fn fallible(id: u32, #[cache(skip)] calls: &Calls) -> Result<Option<u32>, String> {
    calls.bump();
    if id.is_multiple_of(5) {
        Err("nope".into())
    } else {
        Ok(id.is_multiple_of(2).then_some(id))
    }
}

#[tokio::test]
async fn every_key_written_has_an_expiry_after_a_mixed_workload() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            for id in 0..200u32 {
                plain(id).await;
                maybe(id).await;
                let _ = fallible(id, &calls).await;
                if id % 7 == 0 {
                    plain_put(id, &(id + 1)).await.expect("put");
                    maybe_refresh(id).await.expect("refresh");
                }
                if id % 11 == 0 {
                    plain_invalidate(id).await.expect("invalidate");
                }
                tagged(id % 40).await;
                if id % 13 == 0 {
                    redis_cached::invalidate_tags([format!("group:{}", id % 40)])
                        .await
                        .expect("tags");
                    tagged_put(id % 40, &7).await.expect("put");
                    tagged_refresh(id % 40).await.expect("refresh");
                }
                if id == 150 {
                    tagged_invalidate_all().await.expect("invalidate all");
                }
            }
        })
        .await;
    cache.wait_for_writes().await;
    let keys = all_keys(&server).await;
    assert!(keys.len() > 400, "workload wrote keys: {}", keys.len());
    for kind in [":tag:", ":gen", "expiry::tagged"] {
        assert!(
            keys.iter().any(|k| k.contains(kind)),
            "the workload wrote {kind} keys"
        );
    }
    for key in keys {
        let ttl = pttl(&server, &key).await;
        assert!(ttl > 0, "{key} has no expiry (PTTL {ttl})");
        assert!(
            ttl <= 2 * 3600 * 1000,
            "{key} expires later than its ttl: {ttl}"
        );
    }
}

/// A TTL meaning "forever", from a constant: no panic, and the entry is stored and hit.
const FOREVER: u64 = u64::MAX;

#[redis_cached(ttl = FOREVER, stale = FOREVER, tags = ["forever"], name = "expiry::forever")]
async fn forever(id: u32, #[cache(skip)] calls: &Calls) -> u32 {
    calls.bump();
    id
}

#[tokio::test]
async fn a_ttl_meaning_forever_is_stored_with_the_longest_expiry_redis_takes() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(forever(1, &calls).await, 1);
            cache.wait_for_writes().await;
            assert_eq!(forever(1, &calls).await, 1);
            assert_eq!(calls.get(), 1, "stored, then a hit");
            forever_put(2, &2).await.expect("put");
            forever_invalidate(1).await.expect("invalidate");
            assert_eq!(forever(2, &calls).await, 2);
            assert_eq!(calls.get(), 1);
        })
        .await;
    let key = cache.scope(async { forever_key(2) }).await;
    assert!(pttl(&server, &key).await > 0, "it has an expiry");
    assert_eq!(cache.stats().backend_errors, 0, "{:?}", cache.stats());
}

const NO_TIME: std::time::Duration = std::time::Duration::ZERO;

#[redis_cached(ttl = 60, lock_ttl = NO_TIME, max_load = NO_TIME, name = "expiry::zero_lock")]
async fn zero_lock(id: u32, #[cache(skip)] calls: &Calls) -> u32 {
    calls.bump();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    id
}

#[tokio::test]
async fn zero_lock_durations_from_constants_neither_panic_nor_break_the_cache() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(zero_lock(3, &calls).await, 3);
            cache.wait_for_writes().await;
            assert_eq!(zero_lock(3, &calls).await, 3);
        })
        .await;
    assert_eq!(
        calls.get(),
        1,
        "stored and hit: the lock used the default TTL"
    );
}

#[tokio::test]
async fn builder_durations_at_their_extremes_neither_panic_nor_stop_caching() {
    let server = RedisServer::start();
    let cache = redis_cached::Cache::builder()
        .url(server.url())
        .namespace("extremes")
        .default_ttl(std::time::Duration::MAX)
        .operation_timeout(std::time::Duration::MAX)
        .breaker_open_for(std::time::Duration::MAX)
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(zero_lock(4, &calls).await, 4);
            cache.wait_for_writes().await;
            assert_eq!(zero_lock(4, &calls).await, 4);
        })
        .await;
    assert_eq!(calls.get(), 1, "stored with the longest expiry and hit");
}
