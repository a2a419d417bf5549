//! An ACL user limited to the namespace's keys and the commands the library needs (the list
//! the README documents): every feature works under it, and the server denied nothing.

use std::time::Duration;

use redis_cached::{Cache, redis_cached};

use crate::{
    Calls,
    support::{
        RedisServer,
        acl::{LIBRARY_COMMANDS, acl_denials, acl_user},
    },
};

#[redis_cached(ttl = 60, name = "acl::row", tags = ["row:{id}"], stale = 30)]
async fn row(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id * 2
}

#[redis_cached(ttl = 60, name = "acl::near", l1 = true, lock = true)]
async fn near(id: u64, #[cache(skip)] calls: &Calls) -> String {
    calls.bump();
    "x".repeat(2000 + id as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_for_a_user_limited_to_the_namespace_and_the_documented_commands() {
    let server = RedisServer::start();
    acl_user(&server, "app", "app-s3cret", "ns", LIBRARY_COMMANDS).await;
    let url = format!("redis://app:app-s3cret@127.0.0.1:{}", server.port());
    let cache = Cache::builder()
        .url(&url)
        .namespace("ns")
        .operation_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    // Another process holds the lock of row(9): this call waits for it (polls with MGET and
    // EXISTS), then loads when the lock expires.
    let lock = cache.scope(async { row_key(9) }).await + ":lock";
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("another-process")
        .arg("PX")
        .arg(1000)
        .query_async(&mut server.conn().await)
        .await
        .expect("SET lock");
    let started = std::time::Instant::now();
    assert_eq!(cache.scope(row(9, &calls)).await, 18);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the call waited behind the lock"
    );
    assert_eq!(calls.get(), 1);
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(row(1, &calls).await, 2);
            assert_eq!(near(1, &calls).await.len(), 2001);
            cache.wait_for_writes().await;
            row(1, &calls).await;
            assert_eq!(calls.get(), 2, "hits after the misses");
            // The first level comes up (tracking, canary writes) and serves.
            crate::support::wait_until("a first-level hit", Duration::from_secs(5), || async {
                near(1, &calls).await;
                cache.stats().l1_hits > 0
            })
            .await;
            row_put(1, &7).await.expect("put");
            row_invalidate(1).await.expect("invalidate");
            cache.invalidate_tags(["row:1"]).await.expect("tags");
            row_invalidate_all().await.expect("invalidate all");
            row_refresh(1, &calls).await.expect("refresh");
        })
        .await;
    cache.flush_telemetry().await.expect("flush");
    cache.shutdown().await;
    let stats = cache.stats();
    assert_eq!(stats.backend_errors, 0, "{stats:?}");
    assert_eq!(acl_denials(&server).await, Vec::<String>::new());
    // And the user can do nothing outside its namespace.
    let mut limited = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let outside: Result<Option<String>, _> = redis::cmd("GET")
        .arg("other:key")
        .query_async(&mut limited)
        .await;
    assert!(outside.is_err(), "a key outside the namespace was readable");
}

/// Everything written by a `fmt` subscriber, shared with the test.
#[derive(Clone, Default)]
struct Written(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Written {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_password_appears_in_no_log_span_debug_output_or_error() {
    const PASSWORD: &str = "pw-never-shown-7c1e";
    let written = Written::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let written = written.clone();
            move || written.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start();
    acl_user(&server, "app", PASSWORD, "ns", LIBRARY_COMMANDS).await;
    let url = format!("redis://app:{PASSWORD}@127.0.0.1:{}", server.port());
    let builder = Cache::builder()
        .url(&url)
        .namespace("ns")
        .operation_timeout(Duration::from_millis(300));
    let mut shown = vec![format!("{builder:?}")];
    let cache = builder.build().await.expect("build");
    shown.push(format!("{cache:?}"));
    let calls = Calls::default();
    cache
        .scope(async {
            row(5, &calls).await;
            near(5, &calls).await;
            cache.wait_for_writes().await;
            row(5, &calls).await;
        })
        .await;
    // Failures log and return errors: none may carry the password.
    server.kill();
    cache
        .scope(async {
            for _ in 0..5 {
                row(6, &calls).await;
            }
            let err = row_invalidate(6).await.expect_err("redis is down");
            shown.push(format!("{err} {err:?}"));
        })
        .await;
    shown.push(format!("{:?}", cache.stats()));
    let bad = Cache::builder()
        .url(format!("redis://app:{PASSWORD}@127.0.0.1:1/not-a-db"))
        .build()
        .await
        .expect_err("a bad database number");
    shown.push(format!("{bad} {bad:?}"));
    let logs = String::from_utf8_lossy(&written.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("redis command failed"),
        "the outage was logged: {logs}"
    );
    shown.push(logs);
    for text in shown {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}
