//! `rediss://` against a TLS-only `redis-server` with certificates made at test time: caching,
//! the first level and invalidation work; a certificate from another CA is a clear error that
//! fails open; no rustls crypto provider is an error from `build()`, never a panic.

use std::time::Duration;

use redis_cached::{Cache, Error, redis_cached};

use crate::{
    Calls,
    support::{RedisServer, tls::TlsFiles, wait_until},
};

fn install_provider() {
    // Process-wide; a second install (another test) is refused, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn tls_cache(server: &RedisServer, ca: Vec<u8>) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("tls")
        .tls_root_certificate(ca)
        .operation_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("build")
}

#[redis_cached(ttl = 60, name = "tls::row", l1 = true, tags = ["row:{id}"])]
async fn row(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_caches_follows_and_invalidates_over_tls() {
    install_provider();
    let server = RedisServer::start_tls();
    let cache = tls_cache(&server, server.tls_ca().expect("ca")).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(row(1, &calls).await, 3);
            cache.wait_for_writes().await;
            // Redis hits, then first-level hits once tracking (over TLS too) is confirmed.
            wait_until(
                "a first-level hit over TLS",
                Duration::from_secs(5),
                || async {
                    row(1, &calls).await;
                    cache.stats().l1_hits > 0
                },
            )
            .await;
            assert_eq!(calls.get(), 1, "one load, hits after it");
            row_invalidate(1).await.expect("invalidate over TLS");
            row(1, &calls).await;
            assert_eq!(calls.get(), 2, "the invalidation reached Redis");
        })
        .await;
    let stats = cache.stats();
    assert_eq!(stats.backend_errors, 0, "{stats:?}");
    assert!(stats.hits > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_a_clear_error_and_calls_fail_open() {
    install_provider();
    let server = RedisServer::start_tls();
    let stranger = TlsFiles::generate().ca_pem();
    let cache = tls_cache(&server, stranger).await;
    let calls = Calls::default();
    cache
        .scope(async {
            for _ in 0..3 {
                assert_eq!(row(2, &calls).await, 6, "the loader answers");
            }
            assert_eq!(calls.get(), 3, "nothing cached: every call loads");
            let err = row_invalidate(2).await.expect_err("no trusted connection");
            let message = err.to_string();
            assert!(
                message.to_lowercase().contains("certificate") || matches!(err, Error::Unavailable),
                "{message}"
            );
        })
        .await;
    assert!(cache.stats().backend_errors > 0);
}

const CHILD_ENV: &str = "REDIS_CACHED_TLS_NO_PROVIDER_CHILD";

/// Child mode: a process that never installed a crypto provider builds a `rediss://` cache.
#[tokio::test]
async fn child_without_provider() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let built = Cache::builder().url(url).build().await;
    match built {
        Err(Error::Config(message)) => assert!(message.contains("CryptoProvider"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn without_a_crypto_provider_build_is_an_error_not_a_panic() {
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["tls::child_without_provider", "--exact", "--test-threads=1"])
        .env(CHILD_ENV, "rediss://127.0.0.1:1")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run child");
    assert!(status.success(), "the child saw a panic or another result");
}
