//! Fail-open: with Redis killed, paused or unreachable, every call returns the loader's value
//! within the operation timeout plus a margin; the breaker opens; hits resume after recovery.

use std::time::{Duration, Instant};

use redis_cached::{Cache, Error, redis_cached};

use crate::{
    Calls,
    support::{RedisServer, wait_until},
};

/// Generous bound on one call while Redis fails: the 200 ms operation timeout plus scheduling
/// slack on a busy 2-core machine. A call that waited on reconnects (seconds) exceeds it.
const CALL_BOUND: Duration = Duration::from_millis(1500);

#[redis_cached(ttl = 300, name = "fail_open")]
async fn value(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id * 2
}

async fn cache_for(server: &RedisServer) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("failopen")
        .operation_timeout(Duration::from_millis(200))
        .breaker_open_for(Duration::from_millis(200))
        .build()
        .await
        .expect("build")
}

/// Calls `value` and checks it returns the loader's result within [`CALL_BOUND`].
async fn bounded_call(id: u64, calls: &Calls) {
    let started = Instant::now();
    assert_eq!(value(id, calls).await, id * 2);
    let took = started.elapsed();
    assert!(
        took < CALL_BOUND,
        "call blocked {took:?} while redis was failing"
    );
}

/// Waits until a call is served from Redis again (a hit after a store).
async fn wait_for_hits(cache: &Cache, calls: &Calls) {
    wait_until("hits to resume", Duration::from_secs(15), || async {
        let hits = cache.stats().hits;
        value(1, calls).await;
        value(1, calls).await;
        cache.stats().hits > hits
    })
    .await;
}

#[tokio::test]
async fn killed_redis_runs_the_loader_then_recovers_after_restart() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            value(1, &calls).await;
            value(1, &calls).await;
            assert_eq!(calls.get(), 1);

            server.kill();
            for _ in 0..20 {
                bounded_call(1, &calls).await;
            }
            assert_eq!(
                calls.get(),
                21,
                "every call during the outage ran the loader"
            );
            let stats = cache.stats();
            assert!(stats.breaker_opened >= 1, "breaker opened: {stats:?}");
            assert!(
                stats.breaker_rejections > 0,
                "open breaker kept calls off the network: {stats:?}"
            );
            assert!(cache.is_degraded());
            assert!(
                value_invalidate(1).await.is_err(),
                "invalidation reports the outage"
            );

            server.restart();
            wait_for_hits(&cache, &calls).await;
            assert!(!cache.is_degraded());
        })
        .await;
}

#[tokio::test]
async fn paused_redis_costs_at_most_the_timeout_and_recovers_after_resume() {
    let server = RedisServer::start();
    let cache = cache_for(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            value(1, &calls).await;
            cache.wait_for_writes().await;
            server.pause();
            for _ in 0..10 {
                bounded_call(1, &calls).await;
            }
            let stats = cache.stats();
            assert!(stats.timeouts >= 1, "timeouts counted: {stats:?}");
            assert!(stats.breaker_opened >= 1, "breaker opened: {stats:?}");
            // Once open, calls do not pay the timeout at all.
            assert!(stats.breaker_rejections >= 1, "{stats:?}");
            assert_eq!(calls.get(), 11);

            server.resume();
            wait_for_hits(&cache, &calls).await;
        })
        .await;
}

#[tokio::test]
async fn unreachable_redis_at_start_up_is_not_an_error() {
    // Nothing listens on this port: the server is started and killed to reserve it.
    let mut server = RedisServer::start();
    server.kill();
    let cache = cache_for(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            for _ in 0..5 {
                bounded_call(3, &calls).await;
            }
            assert_eq!(calls.get(), 5);
            assert!(matches!(
                value_put(3, &6).await,
                Err(Error::Backend(_) | Error::Unavailable | Error::Timeout(_))
            ));

            // Redis appears later: the lazy connection picks it up.
            server.restart();
            wait_for_hits(&cache, &calls).await;
        })
        .await;
}

#[tokio::test]
async fn invalidation_with_redis_down_returns_an_error() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server).await;
    cache
        .scope(async {
            let calls = Calls::default();
            value(4, &calls).await;
            server.kill();
            let err = value_invalidate(4)
                .await
                .expect_err("must not report success");
            assert!(
                matches!(
                    err,
                    Error::Backend(_) | Error::Timeout(_) | Error::Unavailable
                ),
                "{err}"
            );
        })
        .await;
}

/// The `INFO` commands a server answered that were not this counter's own (`INFO
/// commandstats` counts a command once it has run, so the k-th reading includes k - 1 of ours).
#[derive(Default)]
struct OthersInfo {
    ours: u64,
}

impl OthersInfo {
    async fn read(&mut self, server: &RedisServer) -> u64 {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut server.conn().await)
            .await
            .expect("INFO");
        let total: u64 = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let others = total - self.ours;
        self.ours += 1;
        others
    }
}

#[tokio::test]
async fn the_server_version_is_checked_once_and_a_supported_one_stays_cached() {
    let server = RedisServer::start();
    let cache = cache_for(&server).await;
    let calls = Calls::default();
    let mut info = OthersInfo::default();
    assert_eq!(info.read(&server).await, 0);
    for _ in 0..5 {
        assert_eq!(cache.scope(value(21, &calls)).await, 42);
        cache.wait_for_writes().await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while info.read(&server).await == 0 {
        assert!(Instant::now() < deadline, "the cache checked the version");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..5 {
        cache.scope(value(21, &calls)).await;
    }
    assert_eq!(calls.get(), 1, "Redis 7 is supported: still cached");
    assert_eq!(
        info.read(&server).await,
        1,
        "one check per connection, not per call"
    );
    assert_eq!(redis_cached::MINIMUM_REDIS, "7.0");
}
