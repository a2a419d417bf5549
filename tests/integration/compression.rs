//! Compressed payloads: every setting reads every other's entries (a fleet can change it
//! without a miss), and a hostile or corrupt compressed entry is a miss.

use std::time::Duration;

use redis_cached::{Cache, Compression, redis_cached};

use crate::{Calls, support::RedisServer};

async fn cache_with(server: &RedisServer, compression: Compression) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("compression")
        .operation_timeout(Duration::from_millis(500))
        .compression(compression)
        .build()
        .await
        .expect("build cache")
}

/// A 100-record list: about 5 KB of JSON, compressible.
#[redis_cached(ttl = 600, name = "compression::records")]
async fn records(page: u64, #[cache(skip)] calls: &Calls) -> Vec<(u64, String)> {
    calls.bump();
    (0..100)
        .map(|i| (page * 100 + i, format!("user {i} of page {page}, active")))
        .collect()
}

async fn stored_len(server: &RedisServer, key: &str) -> usize {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut server.conn().await)
        .await
        .expect("GET");
    bytes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_reads_every_other_settings_entries() {
    let server = RedisServer::start();
    let settings = [
        Compression::Off,
        Compression::Lz4 { over: 1024 },
        Compression::Zstd { over: 1024 },
    ];
    let calls = Calls::default();
    let mut sizes = Vec::new();
    for (page, writer) in settings.iter().enumerate() {
        let page = page as u64;
        let writing = cache_with(&server, *writer).await;
        let expected = writing.scope(records(page, &calls)).await;
        writing.wait_for_writes().await;
        let key = writing.scope(async move { records_key(page) }).await;
        sizes.push(stored_len(&server, &key).await);
        for reader in settings {
            let reading = cache_with(&server, reader).await;
            let loads = calls.get();
            assert_eq!(reading.scope(records(page, &calls)).await, expected);
            assert_eq!(
                calls.get(),
                loads,
                "{reader:?} could not read what {writer:?} wrote"
            );
        }
    }
    // Off, LZ4, zstd: both compressors at least halve the list.
    assert!(
        sizes[1] * 2 < sizes[0] && sizes[2] * 2 < sizes[0],
        "{sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_entry_declaring_too_much_or_corrupt_is_a_miss() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .namespace("compression")
        .max_value_size(64 * 1024)
        .build()
        .await
        .expect("build cache");
    let calls = Calls::default();
    let expected = cache.scope(records(7, &calls)).await;
    cache.wait_for_writes().await;
    let key = cache.scope(async { records_key(7) }).await;
    let mut conn = server.conn().await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    // Find the declared length: the payload starts after the 34-byte header (no tags).
    assert_ne!(stored[11] & 0b110, 0, "the entry is compressed");
    let rewrite = |declared: Option<u32>, flip: Option<usize>| {
        let mut bytes = stored.clone();
        if let Some(declared) = declared {
            bytes[34..38].copy_from_slice(&declared.to_le_bytes());
        }
        if let Some(at) = flip {
            bytes[at] ^= 0x5a;
        }
        let body = bytes.len() - 8;
        let checksum = xxhash_rust_checksum(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    };
    for (what, bytes) in [
        ("a declared 4 GiB", rewrite(Some(u32::MAX), None)),
        ("a declared length that lies", rewrite(Some(100), None)),
        ("a corrupt compressed block", rewrite(None, Some(40))),
    ] {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&bytes)
            .query_async(&mut conn)
            .await
            .expect("SET");
        let loads = calls.get();
        assert_eq!(cache.scope(records(7, &calls)).await, expected, "{what}");
        assert_eq!(calls.get(), loads + 1, "{what} must be a miss");
        cache.wait_for_writes().await;
    }
}

/// The envelope's checksum (XXH3-64), so a forged entry passes it and reaches the payload.
fn xxhash_rust_checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[redis_cached(ttl = 600, name = "compression::plain", compress = "off")]
async fn plain(page: u64, #[cache(skip)] calls: &Calls) -> Vec<(u64, String)> {
    records(page, calls).await
}

#[redis_cached(
    ttl = 600,
    name = "compression::zstd",
    compress = "zstd",
    compress_over = 100
)]
async fn packed(page: u64, #[cache(skip)] calls: &Calls) -> Vec<(u64, String)> {
    records(page, calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_overrides_the_caches_setting() {
    let server = RedisServer::start();
    let cache = cache_with(&server, Compression::Lz4 { over: 1024 }).await;
    let calls = Calls::default();
    cache.scope(plain(1, &calls)).await;
    cache.scope(packed(1, &calls)).await;
    cache.scope(records(1, &calls)).await;
    cache.wait_for_writes().await;
    let flags = |key: String| {
        let server = &server;
        async move {
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut server.conn().await)
                .await
                .expect("GET");
            (bytes[11] & 0b110) >> 1
        }
    };
    let keys = cache
        .scope(async { (plain_key(1), packed_key(1), records_key(1)) })
        .await;
    assert_eq!(flags(keys.0).await, 0, "compress = \"off\" stores JSON");
    assert_eq!(flags(keys.1).await, 2, "compress = \"zstd\" stores zstd");
    assert_eq!(flags(keys.2).await, 1, "the cache's LZ4 otherwise");
}

#[redis_cached(ttl = 600, name = "compression::binary", codec = "postcard")]
async fn binary(page: u64, #[cache(skip)] calls: &Calls) -> Vec<(u64, String)> {
    records(page, calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cache_reads_every_codec() {
    let server = RedisServer::start();
    let calls = Calls::default();
    // A function's own codec, and a cache's default codec.
    let json_cache = cache_with(&server, Compression::Off).await;
    let expected = json_cache.scope(binary(1, &calls)).await;
    json_cache.wait_for_writes().await;
    let postcard_cache = Cache::builder()
        .url(server.url())
        .namespace("compression")
        .codec(redis_cached::Codec::Postcard)
        .build()
        .await
        .expect("build");
    let from_default = postcard_cache.scope(records(2, &calls)).await;
    postcard_cache.wait_for_writes().await;
    assert_eq!(calls.get(), 2);
    // Each written in postcard (flag bits 3-4), each read back by a cache of the other default.
    for (page, key) in [
        (1, json_cache.scope(async { binary_key(1) }).await),
        (2, json_cache.scope(async { records_key(2) }).await),
    ] {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut server.conn().await)
            .await
            .expect("GET");
        assert_eq!((bytes[11] >> 3) & 0b11, 1, "page {page} in postcard");
    }
    assert_eq!(postcard_cache.scope(binary(1, &calls)).await, expected);
    assert_eq!(json_cache.scope(records(2, &calls)).await, from_default);
    assert_eq!(calls.get(), 2, "both read as hits");
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
    b: u8,
    c: Vec<u8>,
}

#[redis_cached(ttl = 600, name = "compression::sparse", codec = "postcard")]
async fn sparse(id: u64, #[cache(skip)] calls: &Calls) -> Sparse {
    calls.bump();
    Sparse {
        a: None,
        b: id as u8,
        c: vec![5, 0],
    }
}

/// Postcard ignores a field `skip_serializing_if` leaves out: the bytes would decode, without
/// an error, into another value (`a: Some(2)`, `b: 5`, `c: []`). Such values are never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_postcard_cannot_carry_is_never_stored_as_another_value() {
    let server = RedisServer::start();
    let cache = cache_with(&server, Compression::Off).await;
    let calls = Calls::default();
    let expected = Sparse {
        a: None,
        b: 1,
        c: vec![5, 0],
    };
    for round in 1..=3 {
        assert_eq!(cache.scope(sparse(1, &calls)).await, expected);
        cache.wait_for_writes().await;
        assert_eq!(calls.get(), round, "not cached: every call loads");
    }
    let put = cache.scope(sparse_put(1, &expected)).await;
    assert!(put.is_err(), "put refuses it too");
    assert!(cache.stats().uncached >= 3);
}

#[redis_cached(ttl = 600, name = "compression::set", codec = "postcard")]
async fn set(id: u64, #[cache(skip)] calls: &Calls) -> std::collections::HashSet<u64> {
    calls.bump();
    (id..id + 50).collect()
}

/// A set comes back from postcard in another order: still the same value, so it is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_round_trips_through_postcard_and_is_cached() {
    let server = RedisServer::start();
    let cache = cache_with(&server, Compression::Off).await;
    let calls = Calls::default();
    let first = cache.scope(set(1, &calls)).await;
    cache.wait_for_writes().await;
    assert_eq!(cache.scope(set(1, &calls)).await, first);
    assert_eq!(calls.get(), 1, "the second call hits");
}
