//! The embedded store (`mem://`): the same semantics within one process, with a capacity.

use std::time::Duration;

use redis_cached::{Cache, redis_cached};

use crate::{Calls, support::wait_until};

#[redis_cached(ttl = 1, name = "mem::square")]
async fn square(n: u64, #[cache(skip)] calls: &Calls) -> Option<u64> {
    calls.bump();
    (n > 0).then_some(n * n)
}

#[redis_cached(ttl = 600, name = "mem::blob")]
async fn blob(n: u64, #[cache(skip)] calls: &Calls) -> Vec<u8> {
    calls.bump();
    // Incompressible: the capacity is about stored bytes.
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn embedded_store_hits_expires_and_runs_helpers() {
    let cache = Cache::builder()
        .url("mem://")
        .namespace("mem")
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(square(3, &calls).await, Some(9));
            assert_eq!(square(3, &calls).await, Some(9));
            assert_eq!(square(0, &calls).await, None);
            assert_eq!(square(0, &calls).await, None);
            assert_eq!(calls.get(), 2, "values and negatives are cached");

            square_invalidate(3).await.expect("invalidate");
            square(3, &calls).await;
            assert_eq!(calls.get(), 3);
            square_put(4, &99).await.expect("put");
            assert_eq!(square(4, &calls).await, Some(99));

            wait_until("the 1 s ttl to pass", Duration::from_secs(5), || async {
                let before = calls.get();
                square(3, &calls).await;
                calls.get() > before
            })
            .await;
        })
        .await;
    assert!(cache.redis_connection().is_none());
}

#[tokio::test]
async fn embedded_store_respects_its_capacity() {
    let cache = Cache::builder()
        .url("mem://")
        .namespace("cap")
        .memory_capacity(200_000)
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    cache
        .scope(async {
            for n in 0..200 {
                blob(n, &calls).await;
            }
            assert_eq!(calls.get(), 200);
            // 200 entries of 10 kB do not fit in 200 kB: most must have been evicted.
            for n in 0..200 {
                blob(n, &calls).await;
            }
            let reloaded = calls.get() - 200;
            assert!(
                reloaded >= 150,
                "only {reloaded} of 200 reloaded: capacity not enforced"
            );
        })
        .await;
}

/// JSON maps need string keys: a tuple-keyed map does not serialize.
#[redis_cached(ttl = 60, name = "memory::unserializable")]
async fn pairs(id: u8) -> std::collections::BTreeMap<(u8, u8), u8> {
    [((id, id), id)].into()
}

#[tokio::test]
async fn a_value_that_does_not_serialize_is_an_error_with_its_source() {
    let cache = redis_cached::Cache::builder()
        .url("mem://")
        .build()
        .await
        .expect("build");
    cache
        .scope(async {
            // A call still returns its loader's value, uncached.
            assert_eq!(pairs(1).await.len(), 1);
            let err = pairs_put(1, &[((1, 1), 1)].into())
                .await
                .expect_err("not storable");
            assert!(matches!(err, redis_cached::Error::Serialize(_)), "{err:?}");
            let source = std::error::Error::source(&err).expect("the serde error is the source");
            assert!(
                source.to_string().contains("key must be a string"),
                "{source}"
            );
        })
        .await;
    assert!(cache.stats().uncached >= 1);
}
