//! Redis Sentinel: a master, a replica and three sentinels started by the harness; the master
//! is killed and the cache follows the promoted replica without a restart.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use redis_cached::{Cache, redis_cached};

use crate::{
    Calls,
    support::{
        ONE_TOPOLOGY_AT_A_TIME as ONE_AT_A_TIME, SentinelTopology, sentinel::MASTER_NAME,
        wait_until,
    },
};

async fn sentinel_cache(topology: &SentinelTopology) -> Cache {
    Cache::builder()
        .sentinel(topology.sentinel_urls(), MASTER_NAME)
        .namespace("ha")
        .operation_timeout(Duration::from_millis(250))
        .build()
        .await
        .expect("build cache")
}

/// When this test's own subscribers first heard a sentinel announce the new master (every
/// sentinel: the failover's leader announces at once, the others once they learn of it).
async fn announcement(topology: &SentinelTopology) -> Arc<Mutex<Option<Instant>>> {
    let heard = Arc::new(Mutex::new(None));
    for url in topology.sentinel_urls() {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe("+switch-master").await.expect("SUBSCRIBE");
        let set = heard.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            if messages.next().await.is_some() {
                set.lock().unwrap().get_or_insert_with(Instant::now);
            }
        });
    }
    heard
}

#[redis_cached(ttl = 600, name = "ha::value")]
async fn value(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id * 10
}

#[redis_cached(ttl = 600, name = "ha::slow")]
async fn slow(id: u64, #[cache(skip)] started: Arc<tokio::sync::Notify>) -> u64 {
    started.notify_one();
    tokio::time::sleep(Duration::from_millis(400)).await;
    id * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_followed_to_the_promoted_replica_without_a_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut topology = SentinelTopology::start().await;
    let cache = sentinel_cache(&topology).await;
    wait_until(
        "the first master to be resolved",
        Duration::from_secs(10),
        || {
            let cache = cache.clone();
            async move { cache.stats().master_switches == 1 }
        },
    )
    .await;
    let calls = Calls::default();
    assert_eq!(cache.scope(value(1, &calls)).await, 10);
    cache.wait_for_writes().await;
    assert_eq!(cache.scope(value(1, &calls)).await, 10);
    assert_eq!(
        (calls.get(), cache.stats().hits),
        (1, 1),
        "a fill, then a hit"
    );
    let heard = announcement(&topology).await;

    // The master dies in the middle of a load.
    let started = Arc::new(tokio::sync::Notify::new());
    let in_flight = tokio::spawn({
        let cache = cache.clone();
        let started = started.clone();
        async move { cache.scope(slow(7, started)).await }
    });
    started.notified().await;
    topology.nodes[0].kill();
    let killed = Instant::now();
    assert_eq!(
        in_flight.await.expect("load"),
        70,
        "the load in flight returns its value"
    );

    // Every call keeps answering (uncached while no master answers); then hits resume on
    // the new master, and a key first read after the kill is filled there.
    let hits_before = cache.stats().hits;
    let (mut first_hit, mut first_fill) = (None, None);
    while first_hit.is_none() || first_fill.is_none() {
        for id in 1..=3 {
            assert_eq!(cache.scope(value(id, &calls)).await, id * 10);
        }
        if first_hit.is_none() && cache.stats().hits > hits_before {
            first_hit = Some(killed.elapsed());
        }
        let key = cache.scope(async { value_key(3) }).await;
        if first_fill.is_none() {
            // A connection of its own each time (the promotion closes the replica's clients);
            // one that fails on a loaded machine is a "not yet".
            let filled = async {
                let client = redis::Client::open(topology.nodes[1].url()).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async::<bool>(&mut conn)
                    .await
                    .ok()
            }
            .await
            .unwrap_or(false);
            if filled {
                first_fill = Some(killed.elapsed());
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no hit or fill on the new master 30 s after the kill (hit {first_hit:?}, fill \
             {first_fill:?}, announced {:?}): {:?}",
            heard.lock().unwrap().map(|t| t - killed),
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The cache may find the promoted replica before any sentinel announces it (a sentinel
    // names it as soon as it is promoted, and announces once the others are reconfigured).
    wait_until(
        "a sentinel to announce the new master",
        Duration::from_secs(30),
        || {
            let heard = heard.clone();
            async move { heard.lock().unwrap().is_some() }
        },
    )
    .await;
    let announced = heard
        .lock()
        .unwrap()
        .unwrap()
        .saturating_duration_since(killed);
    let (first_hit, first_fill) = (first_hit.unwrap(), first_fill.unwrap());
    println!(
        "sentinel failover: master killed -> +switch-master {announced:?}, first hit on the \
         new master {first_hit:?}, first fill there {first_fill:?}"
    );
    let bound = announced + Duration::from_secs(1);
    assert!(
        first_hit <= bound,
        "first hit {first_hit:?} > failover + 1 s"
    );
    assert!(
        first_fill <= bound,
        "first fill {first_fill:?} > failover + 1 s"
    );
    assert_eq!(
        topology.master_port().await,
        Some(topology.nodes[1].port()),
        "the replica was promoted"
    );
    assert_eq!(
        cache.stats().master_switches,
        2,
        "one switch for one failover"
    );
}

/// The source of truth of the first-level test.
#[derive(Default)]
struct Db(Mutex<HashMap<u64, u64>>);

/// Waits until `reader` serves `expected` for row 1 from its first level.
async fn serves_from_its_first_level(reader: &Cache, db: &Arc<Db>, expected: u64) {
    wait_until(
        "the reader to hit its first level",
        Duration::from_secs(10),
        || {
            let (reader, db) = (reader.clone(), db.clone());
            async move {
                let before = reader.stats().l1_hits;
                reader.scope(row(1, db)).await == expected && reader.stats().l1_hits > before
            }
        },
    )
    .await;
}

#[redis_cached(ttl = 600, name = "ha::row", l1 = true, l1_ttl = "600s")]
async fn row(id: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.0.lock().unwrap().get(&id).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_level_stops_at_a_failover_and_follows_the_new_masters_invalidations() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut topology = SentinelTopology::start().await;
    let reader = sentinel_cache(&topology).await;
    let writer = sentinel_cache(&topology).await;
    let db = Arc::new(Db::default());
    db.0.lock().unwrap().insert(1, 1);
    // Warm: the reader serves row 1 from its first level.
    serves_from_its_first_level(&reader, &db, 1).await;

    topology.nodes[0].kill();
    wait_until(
        "the reader's first level to stop serving",
        Duration::from_secs(10),
        || {
            let reader = reader.clone();
            async move { !reader.stats().l1_live }
        },
    )
    .await;
    wait_until(
        "the reader to follow the new master and confirm its stream there",
        Duration::from_secs(30),
        || {
            let reader = reader.clone();
            async move { reader.stats().master_switches == 2 && reader.stats().l1_live }
        },
    )
    .await;

    // A change made through the new master reaches the reader's first level: its stream
    // was made again there (the manual-failover test below covers a stream that could have
    // stayed on a live old master).
    db.0.lock().unwrap().insert(1, 2);
    wait_until(
        "the writer to follow the new master",
        Duration::from_secs(30),
        || {
            let writer = writer.clone();
            async move { writer.stats().master_switches == 2 }
        },
    )
    .await;
    writer
        .scope(row_invalidate(1))
        .await
        .expect("invalidate through the new master");
    wait_until(
        "the reader to serve the new value",
        Duration::from_secs(5),
        || {
            let (reader, db) = (reader.clone(), db.clone());
            async move { reader.scope(row(1, db)).await == 2 }
        },
    )
    .await;
}

// ---- smoke subset of the stampede and invalidation behaviour, on the Sentinel topology ----

#[redis_cached(ttl = 600, name = "ha::stampede", lock_wait = "10s")]
async fn cold(id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    id
}

#[redis_cached(ttl = 600, tags = ["team:{team}"], name = "ha::member")]
async fn member(team: u64, id: u64, #[cache(skip)] calls: Arc<Calls>) -> u64 {
    calls.bump();
    team * 1000 + id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_stampede_and_invalidation_on_sentinel() {
    let _one = ONE_AT_A_TIME.lock().await;
    let topology = SentinelTopology::start().await;
    let (a, b) = (
        sentinel_cache(&topology).await,
        sentinel_cache(&topology).await,
    );

    // Stampede: 200 callers over two caches (two "processes" sharing the lock) load once.
    let calls = Arc::new(Calls::default());
    let joins: Vec<_> = (0..200)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            let calls = calls.clone();
            tokio::spawn(async move { cache.scope(cold(5, calls)).await })
        })
        .collect();
    for join in joins {
        assert_eq!(join.await.expect("caller"), 5);
    }
    assert_eq!(calls.get(), 1, "one load for 200 callers in two caches");

    // Invalidation: a tag invalidated through one cache reloads exactly its entries in both.
    let calls = Arc::new(Calls::default());
    for id in 1..=3 {
        assert_eq!(a.scope(member(1, id, calls.clone())).await, 1000 + id);
    }
    assert_eq!(b.scope(member(2, 1, calls.clone())).await, 2001);
    assert_eq!(calls.get(), 4);
    b.invalidate_tags(["team:1"]).await.expect("invalidate");
    for id in 1..=3 {
        assert_eq!(a.scope(member(1, id, calls.clone())).await, 1000 + id);
    }
    assert_eq!(a.scope(member(2, 1, calls.clone())).await, 2001);
    assert_eq!(
        calls.get(),
        7,
        "the three tagged entries reloaded, the other hit"
    );
}

/// A manual failover (`SENTINEL FAILOVER`) leaves the old master alive, and still a master for
/// some seconds until Sentinel demotes it. The caches follow the announcement at once; the
/// reader's first level must leave the old master with them: a stream left there would keep
/// confirming its canaries while the writer's invalidations go to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_moves_the_first_level_with_the_master() {
    let _one = ONE_AT_A_TIME.lock().await;
    let topology = SentinelTopology::start().await;
    let reader = sentinel_cache(&topology).await;
    let writer = sentinel_cache(&topology).await;
    let db = Arc::new(Db::default());
    db.0.lock().unwrap().insert(1, 1);
    serves_from_its_first_level(&reader, &db, 1).await;

    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER_NAME)
        .query_async(&mut topology.sentinels[0].conn().await)
        .await
        .expect("SENTINEL FAILOVER");
    let started = Instant::now();
    wait_until("both caches to follow the new master", Duration::from_secs(30), || {
        let (reader, writer) = (reader.clone(), writer.clone());
        async move { reader.stats().master_switches == 2 && writer.stats().master_switches == 2 }
    })
    .await;
    let followed = started.elapsed();
    let old_master_role: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut topology.nodes[0].conn().await)
        .await
        .expect("INFO");
    db.0.lock().unwrap().insert(1, 2);
    writer
        .scope(row_invalidate(1))
        .await
        .expect("invalidate through the new master");
    wait_until(
        "the reader to serve the new value",
        Duration::from_secs(3),
        || {
            let (reader, db) = (reader.clone(), db.clone());
            async move { reader.scope(row(1, db)).await == 2 }
        },
    )
    .await;
    serves_from_its_first_level(&reader, &db, 2).await;
    println!(
        "manual failover followed in {followed:?}; the old master was then {}",
        if old_master_role.contains("role:master") {
            "still a master"
        } else {
            "already a replica"
        }
    );
}
