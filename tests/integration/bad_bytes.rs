//! Bad bytes are a miss: corrupt, truncated, foreign, another type or version, or too large.
//! Each is counted, the loader's value is returned, and the entry is overwritten.

use redis::AsyncCommands;
use redis_cached::{Cache, redis_cached};
use serde::{Deserialize, Serialize};

use crate::{Calls, redis_cache, support::RedisServer};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    email: String,
}

#[redis_cached(ttl = 60, name = "profile")]
async fn profile(id: u64, #[cache(skip)] calls: &Calls) -> Profile {
    calls.bump();
    Profile {
        id,
        email: format!("{id}@example.com"),
    }
}

/// Same name and key as `profile`, but another return type: as after a deploy that changed it.
#[redis_cached(ttl = 60, name = "profile")]
async fn profile_v2(id: u64, #[cache(skip)] calls: &Calls) -> (u64, Vec<String>) {
    calls.bump();
    (id, vec!["changed".into()])
}

#[redis_cached(ttl = 60, name = "profile", version = 2)]
async fn profile_versioned(id: u64, #[cache(skip)] calls: &Calls) -> Profile {
    calls.bump();
    Profile {
        id,
        email: "v2".into(),
    }
}

async fn write_raw(server: &RedisServer, key: &str, bytes: &[u8]) {
    let mut conn = server.conn().await;
    let _: () = conn.set_ex(key, bytes, 60).await.expect("SET");
}

async fn read_raw(server: &RedisServer, key: &str) -> Vec<u8> {
    let mut conn = server.conn().await;
    conn.get(key).await.expect("GET")
}

async fn assert_miss_then_overwritten(server: &RedisServer, cache: &Cache, bytes: &[u8]) {
    let calls = Calls::default();
    let before = cache.stats().decode_errors;
    cache
        .scope(async {
            let key = profile_key(1);
            write_raw(server, &key, bytes).await;
            assert_eq!(profile(1, &calls).await.email, "1@example.com");
            assert_eq!(calls.get(), 1, "bad bytes are a miss");
            cache.wait_for_writes().await;
            assert_ne!(
                read_raw(server, &key).await,
                bytes,
                "the entry was overwritten"
            );
            assert_eq!(profile(1, &calls).await.email, "1@example.com");
            assert_eq!(calls.get(), 1, "the overwritten entry hits");
        })
        .await;
    assert_eq!(cache.stats().decode_errors, before + 1, "counted");
}

#[tokio::test]
async fn corrupt_truncated_and_foreign_bytes_are_misses() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    assert_miss_then_overwritten(&server, &cache, b"not an envelope at all").await;
    assert_miss_then_overwritten(&server, &cache, b"").await;
    assert_miss_then_overwritten(&server, &cache, &[0xff; 300]).await;
    assert_miss_then_overwritten(
        &server,
        &cache,
        b"{\"id\":1,\"email\":\"json from someone else\"}",
    )
    .await;

    // A valid entry cut short at every length is never decoded as a value.
    let calls = Calls::default();
    let key = cache
        .scope(async {
            profile(1, &calls).await;
            profile_key(1)
        })
        .await;
    cache.wait_for_writes().await;
    let good = read_raw(&server, &key).await;
    for len in [1, 10, 33, good.len() / 2, good.len() - 1] {
        assert_miss_then_overwritten(&server, &cache, &good[..len]).await;
    }
    // A flipped payload byte breaks the JSON.
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] = b'!';
    assert_miss_then_overwritten(&server, &cache, &flipped).await;
}

#[redis_cached(ttl = 60, name = "counter")]
async fn counter(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id * 1000 + 12345
}

#[tokio::test]
async fn numeric_payloads_cut_short_or_altered_are_misses_not_other_numbers() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    let key = cache.scope(async { counter_key(0) }).await;
    cache.scope(counter(0, &calls)).await;
    cache.wait_for_writes().await;
    let good = read_raw(&server, &key).await;
    // The payload `12345` sits just before the 8-byte checksum.
    let payload_end = good.len() - 8;
    assert_eq!(&good[payload_end - 5..payload_end], b"12345");
    let mut cut = good[..payload_end - 1].to_vec(); // `1234`, checksum dropped
    cut.extend_from_slice(&good[payload_end..]);
    let mut digit = good.clone();
    digit[payload_end - 1] = b'6'; // `12346`
    let mut trailing = good.clone();
    trailing.truncate(good.len() - 1);
    for bytes in [cut, digit, trailing] {
        write_raw(&server, &key, &bytes).await;
        let loads = calls.get();
        assert_eq!(
            cache.scope(counter(0, &calls)).await,
            12345,
            "never another number"
        );
        assert_eq!(calls.get(), loads + 1, "a miss");
        cache.wait_for_writes().await;
    }
}

#[redis_cached(ttl = 60, name = "greeting")]
async fn greeting(id: u64, #[cache(skip)] calls: &Calls) -> String {
    calls.bump();
    format!("hello {id}")
}

#[tokio::test]
async fn a_string_payload_with_a_changed_character_is_a_miss_not_another_string() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    let key = cache.scope(async { greeting_key(7) }).await;
    cache.scope(greeting(7, &calls)).await;
    cache.wait_for_writes().await;
    let mut bytes = read_raw(&server, &key).await;
    // `"hello 7"` becomes `"jello 7"`: still valid JSON of the right type.
    let at = bytes
        .windows(5)
        .position(|w| w == b"hello")
        .expect("payload");
    bytes[at] = b'j';
    write_raw(&server, &key, &bytes).await;
    assert_eq!(cache.scope(greeting(7, &calls)).await, "hello 7");
    assert_eq!(calls.get(), 2, "a miss, not the altered string");
}

#[tokio::test]
async fn another_return_type_or_version_under_the_same_key_is_a_miss() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    cache
        .scope(async {
            let calls = Calls::default();
            profile(1, &calls).await;
            cache.wait_for_writes().await;
            assert_eq!(profile_key(1), profile_v2_key(1), "same key on purpose");
            assert_eq!(
                profile_v2(1, &calls).await,
                (1, vec!["changed".to_string()])
            );
            assert_eq!(
                calls.get(),
                2,
                "the changed type did not decode the old entry"
            );
            assert_eq!(cache.stats().decode_errors, 1);
            assert_eq!(profile_v2(1, &calls).await.1, vec!["changed".to_string()]);
            assert_eq!(calls.get(), 2);

            assert_ne!(
                profile_key(1),
                profile_versioned_key(1),
                "version is part of the key"
            );
            assert_eq!(profile_versioned(1, &calls).await.email, "v2");
            assert_eq!(calls.get(), 3);
        })
        .await;
}

#[redis_cached(ttl = 60, name = "big")]
async fn big(len: usize, #[cache(skip)] calls: &Calls) -> String {
    calls.bump();
    "x".repeat(len)
}

#[tokio::test]
async fn values_over_the_maximum_size_are_not_cached_or_accepted() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .namespace("big")
        .max_value_size(1024)
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(big(4096, &calls).await.len(), 4096);
            assert_eq!(big(4096, &calls).await.len(), 4096);
            assert_eq!(calls.get(), 2, "too large to store");
            assert_eq!(
                crate::pttl(&server, &big_key(4096)).await,
                -2,
                "nothing written"
            );
            assert!(cache.stats().uncached >= 2);

            // Someone else wrote a huge value under the key: it is not accepted.
            let huge = vec![b'x'; 4096];
            write_raw(&server, &big_key(10), &huge).await;
            assert_eq!(big(10, &calls).await.len(), 10);
            assert_eq!(calls.get(), 3);
            assert_eq!(cache.stats().decode_errors, 1);
        })
        .await;
}

#[tokio::test]
async fn a_value_of_another_type_at_the_key_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    let batched = redis_cache(&server).await;
    let unbatched = crate::unbatched_cache(&server).await;
    let calls = Calls::default();
    for (id, cache) in [(10, &batched), (11, &unbatched)] {
        let key = cache.scope(async { profile_key(id) }).await;
        // Something else wrote a hash where the entry lives: `GET` answers `WRONGTYPE`.
        let mut conn = server.conn().await;
        let _: () = conn.hset(&key, "field", "value").await.expect("HSET");
        let loads = calls.get();
        let got = cache.scope(profile(id, &calls)).await;
        assert_eq!(got.email, format!("{id}@example.com"));
        assert_eq!(calls.get(), loads + 1, "a miss");
        cache.wait_for_writes().await;
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        assert_eq!(kind, "string", "the entry replaced the hash");
        assert_eq!(cache.scope(profile(id, &calls)).await, got);
        assert_eq!(calls.get(), loads + 1, "and is a hit from then on");
        let stats = cache.stats();
        assert_eq!(
            stats.breaker_opened, 0,
            "a wrong type is not a failing Redis: {stats:?}"
        );
    }
}

#[redis_cached(ttl = 60, name = "tagged_profile", tags = ["team:{team}"])]
async fn tagged_profile(id: u64, team: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id + team
}

/// A tag key holding something that is not a version (written by another tool) is replaced,
/// not kept: kept, every entry carrying the tag would miss for good.
#[tokio::test]
async fn a_tag_key_holding_no_version_is_replaced() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    write_raw(&server, "test:tag:{team:7}", b"not a version").await;
    for _ in 0..3 {
        assert_eq!(cache.scope(tagged_profile(1, 7, &calls)).await, 8);
        cache.wait_for_writes().await;
    }
    assert_eq!(calls.get(), 1, "cached despite the foreign tag value");
    let version = read_raw(&server, "test:tag:{team:7}").await;
    assert!(
        std::str::from_utf8(&version).is_ok_and(|v| v.parse::<u64>().is_ok()),
        "the tag key holds a version now"
    );
}
