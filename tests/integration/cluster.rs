//! Smoke test on a local 3-master Redis Cluster: read-through and every helper, with keys
//! spread over all masters and each entry's hash tag covering its argument part.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis_cached::{Cache, redis_cached};
use tokio::task::JoinSet;

use crate::{
    Calls,
    support::{RedisCluster, wait_until},
};

/// A cache on `cluster` with a timeout that leaves room for slot discovery.
async fn cluster_cache(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .cluster(cluster.urls())
        .namespace("cl")
        .operation_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("build")
}

#[redis_cached(ttl = 60, key = "item:{id}", name = "cluster::item")]
async fn item(id: u64, #[cache(skip)] calls: &Calls) -> Result<String, String> {
    calls.bump();
    Ok(format!("item{id}"))
}

#[redis_cached(ttl = 60, key = "l1item:{id}", name = "cluster::l1_item", l1 = true)]
async fn l1_item(id: u64, #[cache(skip)] calls: &Calls) -> String {
    calls.bump();
    format!("item{id}")
}

/// There is no first level on a cluster: its options are an error at `build()`, and `l1`
/// functions read Redis (one load, then Redis hits).
#[tokio::test]
async fn a_cluster_has_no_first_level() {
    let err = Cache::builder()
        .cluster(["redis://127.0.0.1:1"])
        .l1_capacity(1024)
        .build()
        .await
        .expect_err("l1 options on a cluster");
    assert!(
        matches!(&err, redis_cached::Error::Config(msg) if msg.contains("single Redis node")),
        "{err}"
    );
    let cluster = RedisCluster::start().await;
    let cache = cluster_cache(&cluster).await;
    let calls = Calls::default();
    for _ in 0..5 {
        assert_eq!(cache.scope(l1_item(1, &calls)).await, "item1");
        cache.wait_for_writes().await;
    }
    assert_eq!(calls.get(), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.l1_hits), (4, 0));
}

#[tokio::test]
async fn read_through_and_helpers_work_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let cache = cluster_cache(&cluster).await;
    let calls = Calls::default();
    cache
        .scope(async {
            for id in 0..30 {
                assert_eq!(item(id, &calls).await, Ok(format!("item{id}")));
            }
            for id in 0..30 {
                assert_eq!(item(id, &calls).await, Ok(format!("item{id}")));
            }
            assert_eq!(calls.get(), 30, "second round all hits");

            item_invalidate(3).await.expect("invalidate");
            item(3, &calls).await.ok();
            assert_eq!(calls.get(), 31);
            item_put(4, &"put".to_string()).await.expect("put");
            assert_eq!(item(4, &calls).await, Ok("put".into()));
            assert_eq!(
                item_refresh(4, &calls).await.expect("refresh"),
                Ok("item4".into())
            );
            assert_eq!(item(4, &calls).await, Ok("item4".into()));
            assert_eq!(calls.get(), 32);
        })
        .await;
    let stats = cache.stats();
    assert_eq!(stats.backend_errors, 0, "{stats:?}");

    // Entries landed on every master, and each key's slot is its hash tag's slot.
    let mut per_node = Vec::new();
    for node in &cluster.nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("cl:*")
            .query_async(&mut node.conn().await)
            .await
            .expect("KEYS");
        for key in &keys {
            let tag = &key[key.find('{').expect("tag")..];
            let slot_of = |s: &str| {
                let s = s.to_owned();
                async move {
                    redis::cmd("CLUSTER")
                        .arg("KEYSLOT")
                        .arg(s)
                        .query_async::<i64>(&mut node.conn().await)
                        .await
                        .expect("KEYSLOT")
                }
            };
            assert_eq!(slot_of(key).await, slot_of(tag).await, "{key}");
        }
        per_node.push(keys.len());
    }
    assert!(
        per_node.iter().all(|&n| n > 0),
        "keys spread over all masters: {per_node:?}"
    );
}

#[redis_cached(ttl = 1, stale = 30, name = "cluster::hot")]
async fn hot(
    id: u64,
    #[cache(skip)] version: Arc<AtomicU64>,
    #[cache(skip)] calls: Arc<Calls>,
) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    id * 1000 + version.load(Ordering::SeqCst)
}

#[tokio::test]
async fn locks_fills_and_stale_refreshes_work_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let cache = cluster_cache(&cluster).await;
    let version = Arc::new(AtomicU64::new(1));
    let calls = Arc::new(Calls::default());
    let burst = || async {
        let mut set = JoinSet::new();
        for _ in 0..100 {
            let (cache, version, calls) = (cache.clone(), version.clone(), calls.clone());
            set.spawn(async move { cache.scope(hot(7, version, calls)).await });
        }
        set.join_all().await
    };
    assert!(burst().await.iter().all(|&v| v == 7001));
    assert_eq!(
        calls.get(),
        1,
        "one load for a cold burst (lock and fill scripts ran on the cluster)"
    );

    version.store(2, Ordering::SeqCst);
    wait_until(
        "a stale serve and its refresh",
        Duration::from_secs(10),
        || async {
            burst().await;
            cache.stats().refreshes >= 1
        },
    )
    .await;
    wait_until("the refreshed value", Duration::from_secs(10), || async {
        cache.scope(hot(7, version.clone(), calls.clone())).await == 7002
    })
    .await;
    assert_eq!(calls.get(), 2, "exactly one refresh");
    assert_eq!(cache.stats().backend_errors, 0, "{:?}", cache.stats());
}

#[redis_cached(ttl = 60, tags = ["team:{team}", "user:{id}"], name = "cluster::member")]
async fn member(team: u64, id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    team * 100 + id
}

#[tokio::test]
async fn tagged_hits_and_tag_invalidation_work_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let cache = cluster_cache(&cluster).await;
    let calls = Arc::new(Calls::default());
    cache
        .scope(async {
            for team in 0..3 {
                for id in 0..10 {
                    member(team, id, calls.clone()).await;
                    cache.wait_for_writes().await;
                    member(team, id, calls.clone()).await;
                }
            }
            assert_eq!(
                calls.get(),
                30,
                "tagged hits (entry and tag versions in several slots)"
            );
            assert_eq!(cache.stats().hits, 30);

            redis_cached::invalidate_tags(["team:1", "user:3"])
                .await
                .expect("invalidate across slots");
            for team in 0..3 {
                for id in 0..10 {
                    member(team, id, calls.clone()).await;
                }
            }
            assert_eq!(
                calls.get(),
                30 + 10 + 2,
                "team 1 and user 3 of the other teams reloaded"
            );

            member_invalidate_all().await.expect("function tag");
            member(0, 0, calls.clone()).await;
            assert_eq!(calls.get(), 43);
        })
        .await;
    assert_eq!(cache.stats().backend_errors, 0, "{:?}", cache.stats());
}

/// The slot of `key`, as the cluster computes it.
async fn key_slot(cluster: &RedisCluster, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut cluster.nodes[1].conn().await)
        .await
        .expect("KEYSLOT")
}

/// The slot ranges node `index` serves.
async fn served_by(cluster: &RedisCluster, index: usize) -> Vec<(u16, u16)> {
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut cluster.nodes[1].conn().await)
        .await
        .expect("CLUSTER SLOTS");
    let port = i64::from(cluster.nodes[index].port());
    slots
        .into_iter()
        .filter_map(|range| match range {
            redis::Value::Array(fields) => match (&fields[0], &fields[1], &fields[2]) {
                (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(master))
                    if master.get(1) == Some(&redis::Value::Int(port)) =>
                {
                    Some((*a as u16, *b as u16))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_master_leaves_the_other_shards_hitting() {
    let mut cluster = RedisCluster::start().await;
    let cache = Cache::builder()
        .cluster(cluster.urls())
        .namespace("cl")
        .operation_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("build");
    let dead_ranges = served_by(&cluster, 0).await;
    let calls = Calls::default();
    let mut on_dead = Vec::new();
    let mut on_live = Vec::new();
    for id in 0..30 {
        let key = cache.scope(async { item_key(id) }).await;
        let slot = key_slot(&cluster, &key).await;
        if dead_ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)) {
            on_dead.push(id);
        } else {
            on_live.push(id);
        }
        cache.scope(item(id, &calls)).await.expect("item");
    }
    cache.wait_for_writes().await;
    assert!(
        !on_dead.is_empty() && !on_live.is_empty(),
        "keys on every shard"
    );

    cluster.nodes[0].kill();
    let mut events = cache.connection_events();
    let loads_before = calls.get();
    // The dead shard's breaker opens; calls for its keys fail open (the loader runs).
    wait_until(
        "the dead shard's breaker to open",
        Duration::from_secs(10),
        || async {
            for &id in &on_dead {
                assert_eq!(cache.scope(item(id, &calls)).await, Ok(format!("item{id}")));
            }
            cache.is_degraded()
        },
    )
    .await;
    let dead_loads = calls.get() - loads_before;
    let rejections = cache.stats().breaker_rejections;
    // For the next 1.5 s (three probe periods), the other shards keep hitting with no loads
    // and no rejections, while the dead one's probes keep failing: its breaker stays open.
    let watching = std::time::Instant::now();
    while watching.elapsed() < Duration::from_millis(1500) {
        for &id in &on_live {
            assert_eq!(cache.scope(item(id, &calls)).await, Ok(format!("item{id}")));
        }
    }
    assert!(
        cache.is_degraded(),
        "a probe of the dead master never answers for it"
    );
    assert_eq!(
        calls.get() - loads_before,
        dead_loads,
        "no load for a key on a live shard"
    );
    assert_eq!(
        cache.stats().breaker_rejections,
        rejections,
        "no live shard's call was turned away"
    );
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.contains(&redis_cached::ConnectionEvent::Disconnected),
        "the dead node was reported: {seen:?}"
    );
    assert!(
        !seen.contains(&redis_cached::ConnectionEvent::Reconnected),
        "nothing reported it back: {seen:?}"
    );
    println!(
        "one dead master of three: {} keys on it ({dead_loads} loads while its breaker opened), \
         {} keys on live shards hitting; events {seen:?}",
        on_dead.len(),
        on_live.len()
    );
}

#[redis_cached(ttl = 60, name = "cluster::slow")]
async fn slow(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(200)).await;
    id
}

/// Two caches (as two processes would be) on one cluster: a cold burst from both loads once,
/// which only the cross-process lock can do (single-flight is per cache); and the lock and
/// generation keys sit in the entry's slot, so its scripts run on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_on_a_cluster_share_one_load_through_the_lock() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (cluster_cache(&cluster).await, cluster_cache(&cluster).await);
    let calls = Arc::new(Calls::default());
    let mut set = JoinSet::new();
    for i in 0..100 {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let calls = calls.clone();
        set.spawn(async move { cache.scope(slow(5, calls)).await });
    }
    assert!(set.join_all().await.iter().all(|&v| v == 5));
    assert_eq!(calls.get(), 1, "one load across both caches");
    assert!(
        a.stats().lock_waits + b.stats().lock_waits >= 1,
        "the other cache waited behind the lock"
    );

    let entry = a.scope(async { slow_key(5) }).await;
    let slot = key_slot(&cluster, &entry).await;
    for derived in [format!("{entry}:lock"), format!("{entry}:gen")] {
        assert_eq!(key_slot(&cluster, &derived).await, slot, "{derived}");
    }
}

/// With a replica per master, a killed master's replica is promoted and the cache follows it
/// without a restart: the other shards keep hitting throughout, the dead shard's keys fail
/// open meanwhile, then hit on the promoted replica (their entries were replicated) and new
/// keys fill there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica_without_a_restart() {
    let _one = crate::support::ONE_TOPOLOGY_AT_A_TIME.lock().await;
    let mut cluster = RedisCluster::start_with_replicas(1).await;
    let cache = cluster_cache(&cluster).await;
    let replica = cluster.replica_of(0).await;
    let dead_ranges = served_by(&cluster, 0).await;
    let on_dead_shard = |slot: u16| dead_ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot));
    let calls = Calls::default();
    let (mut on_dead, mut on_live) = (Vec::new(), Vec::new());
    for id in 0..30 {
        let key = cache.scope(async { item_key(id) }).await;
        if on_dead_shard(key_slot(&cluster, &key).await) {
            on_dead.push(id);
        } else {
            on_live.push(id);
        }
        cache.scope(item(id, &calls)).await.expect("item");
    }
    cache.wait_for_writes().await;
    assert!(!on_dead.is_empty() && !on_live.is_empty());
    // A key on the dead shard that nobody has read yet: filled on the promoted replica.
    let mut fresh = 1000;
    while !on_dead_shard(key_slot(&cluster, &cache.scope(async { item_key(fresh) }).await).await) {
        fresh += 1;
    }
    let mut events = cache.connection_events();
    for node in &cluster.nodes[1..] {
        crate::reset_command_counts(node).await;
    }

    cluster.nodes[0].kill();
    let killed = std::time::Instant::now();
    let mut live_loads = 0;
    let mut promoted = None;
    let mut test_slot_reads = 0;
    let followed = loop {
        // The other shards keep hitting: no load, whatever the dead one does.
        let before = calls.get();
        for &id in &on_live {
            assert_eq!(cache.scope(item(id, &calls)).await, Ok(format!("item{id}")));
        }
        live_loads += calls.get() - before;
        // The dead shard's keys answer (uncached) until the replica serves them from its
        // replicated entries.
        let before = calls.get();
        for &id in &on_dead {
            assert_eq!(cache.scope(item(id, &calls)).await, Ok(format!("item{id}")));
        }
        if promoted.is_none() {
            test_slot_reads += 1;
            if !served_by(&cluster, replica).await.is_empty() {
                promoted = Some(killed.elapsed());
            }
        }
        if promoted.is_some() && calls.get() == before {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the dead shard's keys never hit again (promoted {promoted:?}): {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(live_loads, 0, "a key on a live shard was loaded again");
    cache.scope(item(fresh, &calls)).await.expect("fresh item");
    cache.wait_for_writes().await;
    let key = cache.scope(async { item_key(fresh) }).await;
    let filled: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut cluster.nodes[replica].conn().await)
        .await
        .expect("EXISTS");
    assert!(
        filled,
        "a new key of the dead shard is filled on its promoted replica"
    );
    // The cache's own slot map catches up (at once, or within the refresh period when a
    // caller's request through the cluster client closed the breaker first).
    let mut topology_changes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while topology_changes == 0 {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => {
                topology_changes +=
                    usize::from(event == redis_cached::ConnectionEvent::TopologyChanged);
            }
            Ok(Err(err)) => panic!("connection events: {err}"),
            Err(_) => panic!("the new slot map was never read: {:?}", cache.stats()),
        }
    }
    let catching_up = killed.elapsed();
    // Topology reads by this process (ours and the cluster client's), as the servers count
    // them; the test's own CLUSTER SLOTS calls subtracted.
    let mut reads = 0;
    for node in &cluster.nodes[1..] {
        let counts = crate::all_command_counts(node).await;
        reads += ["cluster|slots", "cluster|shards", "cluster|nodes"]
            .iter()
            .filter_map(|name| counts.get(*name))
            .sum::<u64>();
    }
    println!(
        "cluster failover: master killed -> replica promoted (seen in CLUSTER SLOTS) {:?}, \
         dead shard's keys hitting again {followed:?}, the cache's slot map updated \
         {catching_up:?}; {reads} topology reads sent (the test's own included: {test_reads}), breaker \
         opened {} time(s)",
        promoted.unwrap_or_default(),
        cache.stats().breaker_opened,
        test_reads = test_slot_reads,
    );
}
