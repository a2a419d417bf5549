//! `invalidation_replicas`: invalidations wait for replicas (`WAIT`) on a connection of their
//! own, and report a change no replica acknowledged.

use std::{sync::Arc, time::Duration};

use redis_cached::{Cache, Error, redis_cached};

use crate::{Calls, support::RedisServer, support::wait_until};

#[redis_cached(ttl = 600, tags = ["acct:{id}"], name = "repl::balance")]
async fn balance(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    id
}

/// A master and a synced replica.
async fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    wait_until("the replica to sync", Duration::from_secs(20), || async {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut replica.conn().await)
            .await
            .unwrap_or_default();
        info.contains("master_link_status:up")
    })
    .await;
    (master, replica)
}

async fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut server.conn().await)
        .await
        .expect("EXISTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_wait_for_replicas_and_report_a_change_none_acknowledged() {
    let (master, replica) = master_and_replica().await;
    let cache = Cache::builder()
        .url(master.url())
        .namespace("repl")
        .invalidation_replicas(1, Duration::from_secs(2))
        .build()
        .await
        .expect("build");
    let calls = Arc::new(Calls::default());
    let key = cache.scope(async { balance_key(1) }).await;
    assert_eq!(cache.scope(balance(1, calls.clone())).await, 1);
    cache.wait_for_writes().await;
    wait_until(
        "the entry to reach the replica",
        Duration::from_secs(5),
        || exists(&replica, &key),
    )
    .await;

    // Acknowledged: by the time the call returns, the replica has applied it.
    cache
        .scope(balance_invalidate(1))
        .await
        .expect("invalidate");
    assert!(
        !exists(&replica, &key).await,
        "returned before the replica had it"
    );

    // The replica hangs: the change is made on the master, and reported as not replicated.
    assert_eq!(cache.scope(balance(1, calls.clone())).await, 1);
    cache.wait_for_writes().await;
    replica.pause();
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.scope(balance_invalidate(1)).await }
    });
    // While the invalidation waits (blocked in WAIT on its own connection), hits and loads
    // still go through: nothing queues behind it.
    wait_until(
        "the invalidation to wait in WAIT",
        Duration::from_secs(5),
        || async {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut master.conn().await)
                .await
                .expect("CLIENT LIST");
            clients
                .lines()
                .any(|l| l.contains("cmd=wait") && l.contains("flags=b"))
        },
    )
    .await;
    for id in 10..60 {
        assert_eq!(cache.scope(balance(id, calls.clone())).await, id);
    }
    assert!(
        !waiting.is_finished(),
        "50 loads and fills finished while the invalidation waited"
    );
    match waiting.await.expect("task") {
        Err(Error::NotReplicated {
            acked: 0,
            wanted: 1,
        }) => {}
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    assert!(
        !exists(&master, &key).await,
        "the master applied it all the same"
    );
    // A tag whose version key exists (captured by a load), so its invalidation is a write.
    assert_eq!(cache.scope(balance(1, calls.clone())).await, 1);
    cache.wait_for_writes().await;
    let tags = cache.invalidate_tags(["acct:1"]).await;
    assert!(
        matches!(
            tags,
            Err(Error::NotReplicated {
                acked: 0,
                wanted: 1
            })
        ),
        "invalidate_tags reports it too: {tags:?}"
    );
    replica.resume();
    assert_eq!(cache.scope(balance(1, calls.clone())).await, 1);
    cache.wait_for_writes().await;
    cache
        .invalidate_tags(["acct:1"])
        .await
        .expect("acknowledged once the replica is back");
}

/// A burst of invalidations shares the waits (group commit): with a healthy replica all are
/// acknowledged; with the replica hung all report `NotReplicated` (never a timeout), and the
/// breaker stays closed (a slow replica says nothing about the master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_invalidations_shares_the_waits_and_a_hung_replica_opens_no_breaker() {
    let (master, replica) = master_and_replica().await;
    let cache = Cache::builder()
        .url(master.url())
        .namespace("repl")
        .invalidation_replicas(1, Duration::from_millis(300))
        .build()
        .await
        .expect("build");
    let burst = |cache: Cache| async move {
        let mut set = tokio::task::JoinSet::new();
        for id in 0..30 {
            let cache = cache.clone();
            set.spawn(async move { cache.scope(balance_invalidate(id)).await });
        }
        set.join_all().await
    };
    crate::reset_command_counts(&master).await;
    for result in burst(cache.clone()).await {
        result.expect("acknowledged");
    }
    let waits = crate::all_command_counts(&master)
        .await
        .get("wait")
        .copied()
        .unwrap_or(0);
    println!("30 concurrent invalidations: {waits} WAIT rounds");
    assert!(
        (1..=10).contains(&waits),
        "30 invalidations shared {waits} waits"
    );
    replica.pause();
    for result in burst(cache.clone()).await {
        assert!(
            matches!(
                result,
                Err(Error::NotReplicated {
                    acked: 0,
                    wanted: 1
                })
            ),
            "{result:?}"
        );
    }
    replica.resume();
    assert_eq!(cache.stats().breaker_opened, 0, "{:?}", cache.stats());
    assert!(!cache.is_degraded());
}

/// The documented ACL profile with `+wait` is enough for waiting invalidations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_profile_with_wait_is_enough() {
    use crate::support::acl::{LIBRARY_COMMANDS, REPLICATION_COMMANDS, acl_user};
    let (master, _replica) = master_and_replica().await;
    let commands = format!("{LIBRARY_COMMANDS} {REPLICATION_COMMANDS}");
    acl_user(&master, "app", "s3cret", "repl", &commands).await;
    let cache = Cache::builder()
        .url(format!("redis://app:s3cret@127.0.0.1:{}", master.port()))
        .namespace("repl")
        .invalidation_replicas(1, Duration::from_secs(2))
        .build()
        .await
        .expect("build");
    let calls = Arc::new(Calls::default());
    assert_eq!(cache.scope(balance(1, calls.clone())).await, 1);
    cache.wait_for_writes().await;
    cache
        .scope(balance_invalidate(1))
        .await
        .expect("invalidate");
    cache.invalidate_tags(["acct:1"]).await.expect("tags");
    cache.scope(balance_put(1, &5)).await.expect("put");
}

#[tokio::test]
async fn invalidation_replicas_is_refused_where_there_are_no_replicas() {
    let err = Cache::builder()
        .url("mem://")
        .invalidation_replicas(1, Duration::from_millis(100))
        .build()
        .await
        .expect_err("the embedded store has no replicas");
    assert!(err.to_string().contains("invalidation_replicas"), "{err}");
    let err = Cache::builder()
        .url("redis://127.0.0.1:1")
        .invalidation_replicas(0, Duration::from_millis(100))
        .build()
        .await
        .expect_err("zero replicas");
    assert!(err.to_string().contains("at least one replica"), "{err}");
}
