//! The first level (`l1 = true`): hits without Redis, read-your-writes, following changes
//! made by other caches and by anything else in Redis, liveness, outages.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis::AsyncCommands;
use redis_cached::{Cache, redis_cached};

use crate::{
    Calls, command_counts, reset_command_counts,
    support::{RedisServer, wait_until},
};

/// A cache with a first level whose liveness timeout is `liveness`.
pub async fn l1_cache(server: &RedisServer, liveness: Duration) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("l1")
        .operation_timeout(Duration::from_secs(2))
        .l1_liveness(liveness)
        .build()
        .await
        .expect("build cache")
}

/// The source of truth of these tests, shared by the caches of one test.
#[derive(Default)]
pub struct Db {
    rows: Mutex<HashMap<u64, u64>>,
    loads: Calls,
}

impl Db {
    fn set(&self, id: u64, value: u64) {
        self.rows.lock().unwrap().insert(id, value);
    }

    fn get(&self, id: u64) -> u64 {
        self.rows.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    fn loads(&self) -> usize {
        self.loads.get()
    }
}

#[redis_cached(ttl = 60, name = "l1::row", l1 = true, l1_ttl = "30s", tags = ["row:{id}"])]
async fn row(id: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.loads.bump();
    db.get(id)
}

/// Makes `call` on `cache` until one is answered by the first level.
async fn warm<F, Fut>(cache: &Cache, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future,
{
    wait_until("a first-level hit", Duration::from_secs(10), || {
        let (cache, call) = (cache.clone(), call());
        async move {
            let before = cache.stats().l1_hits;
            cache.scope(call).await;
            cache.wait_for_writes().await;
            cache.stats().l1_hits > before
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_level_hit_sends_no_command() {
    let server = RedisServer::start();
    // A long liveness timeout: no canary lands during the measurement.
    let cache = l1_cache(&server, Duration::from_secs(60)).await;
    let db = Arc::new(Db::default());
    db.set(1, 7);
    warm(&cache, || row(1, db.clone())).await;
    let hits = cache.stats().l1_hits;
    reset_command_counts(&server).await;
    for _ in 0..100 {
        assert_eq!(cache.scope(row(1, db.clone())).await, 7);
    }
    let counts = command_counts(&server).await;
    assert!(
        counts.is_empty(),
        "first-level hits sent commands: {counts:?}"
    );
    assert_eq!(cache.stats().l1_hits, hits + 100);
    assert_eq!(db.loads(), 1, "one load");
    let stats = cache.stats();
    assert_eq!(stats.l1_entries, 1);
    assert!(stats.l1_bytes > 0);
}

/// Read-your-writes does not wait for Redis's invalidation: this cache ignores them (as if
/// they were late), and each change is still seen by the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_process_reads_its_own_writes() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .namespace("l1")
        .operation_timeout(Duration::from_secs(2))
        .l1_ignore_invalidations_for_tests()
        .build()
        .await
        .expect("build cache");
    let db = Arc::new(Db::default());
    let read = || cache.scope(row(1, db.clone()));

    db.set(1, 1);
    warm(&cache, || row(1, db.clone())).await;
    db.set(1, 2);
    cache.scope(row_invalidate(1)).await.expect("invalidate");
    assert_eq!(read().await, 2, "after NAME_invalidate");

    warm(&cache, || row(1, db.clone())).await;
    cache.scope(row_put(1, &3)).await.expect("put");
    assert_eq!(read().await, 3, "after NAME_put");

    warm(&cache, || row(1, db.clone())).await;
    db.set(1, 4);
    cache.invalidate_tags(["row:1"]).await.expect("tags");
    assert_eq!(read().await, 4, "after invalidate_tags");

    warm(&cache, || row(1, db.clone())).await;
    db.set(1, 5);
    cache
        .scope(row_invalidate_all())
        .await
        .expect("invalidate_all");
    assert_eq!(read().await, 5, "after NAME_invalidate_all");

    warm(&cache, || row(1, db.clone())).await;
    db.set(1, 6);
    let refreshed = cache
        .scope(row_refresh(1, db.clone()))
        .await
        .expect("refresh");
    assert_eq!(refreshed, 6);
    assert_eq!(read().await, 6, "after NAME_refresh");
}

/// Two caches on one server stand for two processes (each has its own connections and its
/// own invalidation stream); the multi-process tests below re-execute the test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cache_follows_changes_made_by_this_one_and_by_anyone() {
    let server = RedisServer::start();
    let writer = l1_cache(&server, Duration::from_secs(1)).await;
    let reader = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    let follows = |expected: u64, what: &'static str| {
        let (reader, db) = (reader.clone(), db.clone());
        async move {
            wait_until(what, Duration::from_secs(5), || {
                let (reader, db) = (reader.clone(), db.clone());
                async move { reader.scope(row(1, db)).await == expected }
            })
            .await;
        }
    };

    db.set(1, 1);
    warm(&reader, || row(1, db.clone())).await;
    db.set(1, 2);
    writer.scope(row_invalidate(1)).await.expect("invalidate");
    follows(2, "the reader to follow NAME_invalidate").await;

    warm(&reader, || row(1, db.clone())).await;
    writer.scope(row_put(1, &3)).await.expect("put");
    follows(3, "the reader to follow NAME_put").await;

    warm(&reader, || row(1, db.clone())).await;
    db.set(1, 4);
    writer.invalidate_tags(["row:1"]).await.expect("tags");
    follows(4, "the reader to follow invalidate_tags").await;

    // Changes made by anything else: an operator's DEL, then FLUSHDB.
    warm(&reader, || row(1, db.clone())).await;
    db.set(1, 5);
    let key = reader.scope(async { row_key(1) }).await;
    let mut conn = server.conn().await;
    let _: () = conn.del(&key).await.expect("DEL");
    follows(5, "the reader to follow an operator's DEL").await;

    warm(&reader, || row(1, db.clone())).await;
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");
    db.set(1, 6);
    follows(6, "the reader to follow FLUSHDB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_stays_in_the_first_level_while_other_keys_are_written() {
    let server = RedisServer::start();
    // A long liveness timeout: a canary late on a loaded machine (which stops first-level
    // serving until the stream is re-armed) is not what this test measures.
    let reader = l1_cache(&server, Duration::from_secs(10)).await;
    let writer = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&reader, || row(1, db.clone())).await;
    let writes = tokio::spawn({
        let writer = writer.clone();
        async move {
            for id in 2..2_000u64 {
                writer
                    .scope(row_put(id, &id))
                    .await
                    .expect("put another key");
            }
        }
    });
    let before = reader.stats();
    let mut reads = 0u64;
    while !writes.is_finished() {
        assert_eq!(reader.scope(row(1, db.clone())).await, 1);
        reads += 1;
        if reads.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    writes.await.expect("writer");
    let after = reader.stats();
    let l1_hits = after.l1_hits - before.l1_hits;
    let redis_reads = (after.hits + after.misses) - (before.hits + before.misses);
    let share = l1_hits as f64 / reads as f64;
    println!(
        "{reads} hot reads while 1,998 other keys of the function were written: {l1_hits} \
         first-level hits ({:.2}%), {redis_reads} Redis reads",
        share * 100.0
    );
    assert!(
        share >= 0.95,
        "{l1_hits} of {reads} hot reads were first-level hits"
    );
    // Writes of other keys (and of the tags they carry, the function's own among them) leave
    // the hot entry alone: a handful of reads at most, from an entry key sharing a stripe.
    assert!(
        redis_reads <= 20,
        "{redis_reads} Redis reads of the hot key while other keys were written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_nothing_from_before_is_served() {
    let mut server = RedisServer::start();
    let cache = l1_cache(&server, Duration::from_millis(500)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&cache, || row(1, db.clone())).await;
    server.kill();
    // Without `l1_outage`: once the stream is known lost (at the latest after the liveness
    // timeout), the loader runs.
    let started = Instant::now();
    let loads = db.loads();
    wait_until("the loader to run", Duration::from_secs(5), || {
        let (cache, db) = (cache.clone(), db.clone());
        async move {
            cache.scope(row(1, db.clone())).await;
            db.loads() > loads
        }
    })
    .await;
    println!("loader ran {:?} after the kill", started.elapsed());
    server.restart();
    db.set(1, 2);
    wait_until(
        "a value read after the restart",
        Duration::from_secs(10),
        || {
            let (cache, db) = (cache.clone(), db.clone());
            async move { cache.scope(row(1, db)).await == 2 }
        },
    )
    .await;
    // From here on, never the value from before.
    for _ in 0..200 {
        assert_eq!(cache.scope(row(1, db.clone())).await, 2);
    }
}

/// Thousands of rounds: a write by one cache while another reads the key without pause. Once
/// the write returned and the reader's liveness timeout passed (the hard bound: a later canary
/// confirmed means the write's invalidation arrived), the reader never serves the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_level_reads_racing_writes_are_never_stale_past_the_bound() {
    const KEYS: u64 = 50;
    const ROUNDS: u64 = 40;
    let liveness = Duration::from_millis(100);
    let server = RedisServer::start();
    let reader = l1_cache(&server, liveness).await;
    let writer = l1_cache(&server, liveness).await;
    let db = Arc::new(Db::default());
    let stale = Arc::new(Calls::default());
    let mut keys = tokio::task::JoinSet::new();
    for id in 1_000..1_000 + KEYS {
        let (reader, writer, db, stale) =
            (reader.clone(), writer.clone(), db.clone(), stale.clone());
        keys.spawn(async move {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let hammer = tokio::spawn({
                let (reader, db, stop) = (reader.clone(), db.clone(), stop.clone());
                async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        reader.scope(row(id, db.clone())).await;
                        tokio::task::yield_now().await;
                    }
                }
            });
            for round in 1..=ROUNDS {
                // First drop the entry, so the reader is reading Redis when the change lands.
                db.set(id, 10 * round);
                writer.scope(row_invalidate(id)).await.expect("invalidate");
                // Then, a moment later, the change: at a random point of the reader's reload
                // (claim, load, fill, the read that refills the first level).
                let pause = Instant::now() + Duration::from_micros(fastrand::u64(0..1_500));
                while Instant::now() < pause {
                    tokio::task::yield_now().await;
                }
                let expected = 10 * round + 1 + round % 3;
                match round % 3 {
                    0 => writer.scope(row_put(id, &expected)).await.expect("put"),
                    1 => {
                        db.set(id, expected);
                        writer.scope(row_invalidate(id)).await.expect("invalidate");
                    }
                    _ => {
                        db.set(id, expected);
                        writer
                            .invalidate_tags([format!("row:{id}")])
                            .await
                            .expect("tags");
                    }
                }
                tokio::time::sleep(liveness + Duration::from_millis(20)).await;
                let got = reader.scope(row(id, db.clone())).await;
                if got != expected {
                    stale.bump();
                    eprintln!("key {id} round {round}: served {got}");
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            hammer.await.expect("hammer");
        });
    }
    keys.join_all().await;
    let stats = reader.stats();
    println!(
        "{} rounds: {} stale; reader: {} first-level hits, {} reads outdated before entering it",
        KEYS * ROUNDS,
        stale.get(),
        stats.l1_hits,
        stats.l1_refused
    );
    assert_eq!(stale.get(), 0, "stale reads past the bound");
    assert!(stats.l1_hits > 0, "the first level was used");
    // The race this guards against happened: invalidations arrived between reads and their
    // entering the first level (most are harmless, the read having seen the new value; the
    // one that is not, a reply overtaken by its invalidation, is what the tickets refuse,
    // shown deterministically by the unit test of `first_level::epochs`).
    assert!(stats.l1_refused > 0, "no read raced an invalidation");
}

#[redis_cached(
    ttl = 60,
    name = "l1::row_outage",
    l1 = true,
    l1_ttl = "30s",
    l1_outage = "2s"
)]
async fn row_outage(id: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.loads.bump();
    db.get(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_l1_outage_nothing_from_before_an_outage_is_served_during_it() {
    let mut server = RedisServer::start();
    let cache = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&cache, || row(1, db.clone())).await;
    server.kill();
    // Once this process knows its stream is gone (at once on a kill; at the latest after the
    // liveness timeout on a silent failure), every call runs the loader.
    wait_until(
        "the stream to be known lost",
        Duration::from_secs(5),
        || {
            let cache = cache.clone();
            async move { !cache.stats().l1_live }
        },
    )
    .await;
    db.set(1, 2);
    for _ in 0..20 {
        assert_eq!(cache.scope(row(1, db.clone())).await, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_l1_outage_hot_keys_are_served_while_redis_is_down_for_at_most_that_long() {
    let mut server = RedisServer::start();
    let cache = l1_cache(&server, Duration::from_millis(500)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&cache, || row_outage(1, db.clone())).await;
    let loads = db.loads();
    server.kill();
    let killed = Instant::now();
    db.set(1, 2);
    // The first calls of the outage are answered by the first level: no load.
    for _ in 0..20 {
        assert_eq!(cache.scope(row_outage(1, db.clone())).await, 1);
    }
    assert_eq!(db.loads(), loads, "no load while the first level answers");
    // At most `l1_outage` (2 s) after the last confirmation, which came before the kill.
    let past = killed + Duration::from_secs(2);
    tokio::time::sleep_until(past.into()).await;
    assert_eq!(
        cache.scope(row_outage(1, db.clone())).await,
        2,
        "served past l1_outage"
    );
    // After a restart, nothing from before is served.
    server.restart();
    db.set(1, 3);
    wait_until(
        "the new value after the restart",
        Duration::from_secs(10),
        || {
            let (cache, db) = (cache.clone(), db.clone());
            async move { cache.scope(row_outage(1, db)).await == 3 }
        },
    )
    .await;
    for _ in 0..100 {
        assert_eq!(cache.scope(row_outage(1, db.clone())).await, 3);
    }
}

/// The ids of the server's clients with tracking on (`CLIENT LIST` flag `t`).
async fn tracking_clients(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| {
            line.split(' ').any(|field| {
                field
                    .strip_prefix("flags=")
                    .is_some_and(|f| f.contains('t'))
            })
        })
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_serves_nothing_stale_and_recovers_within_a_second() {
    let server = RedisServer::start();
    let reader = l1_cache(&server, Duration::from_secs(1)).await;
    let writer = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&reader, || row(1, db.clone())).await;
    warm(&writer, || row(1, db.clone())).await;
    let mut admin = server.conn().await;
    let config_conn = admin.clone();
    let config = |name: &'static str, value: String| {
        let mut admin = config_conn.clone();
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut admin)
                .await
                .expect("CONFIG SET");
        }
    };
    let tracking = tracking_clients(&mut admin).await;
    assert_eq!(tracking.len(), 2, "one stream per cache");
    // No new connection is accepted once they are gone: the streams stay down.
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut admin)
        .await
        .expect("INFO");
    let connected: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients");
    config("maxclients", (connected - tracking.len()).to_string()).await;
    for id in &tracking {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
    }
    wait_until(
        "the reader to know its stream lost",
        Duration::from_secs(5),
        || {
            let reader = reader.clone();
            async move { !reader.stats().l1_live }
        },
    )
    .await;
    // The change lands while the reader's stream is down: its invalidation is never sent.
    db.set(1, 2);
    writer.scope(row_invalidate(1)).await.expect("invalidate");
    for _ in 0..50 {
        assert_eq!(
            reader.scope(row(1, db.clone())).await,
            2,
            "stale read while down"
        );
    }
    config("maxclients", "10000".into()).await;
    let restored = Instant::now();
    let hits = reader.stats().l1_hits;
    loop {
        assert_eq!(
            reader.scope(row(1, db.clone())).await,
            2,
            "stale read after the re-arm"
        );
        if reader.stats().l1_hits > hits {
            break;
        }
        assert!(
            restored.elapsed() < Duration::from_secs(10),
            "the first level never came back"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "first level serving again {:?} after connections were accepted again",
        restored.elapsed()
    );
    for _ in 0..100 {
        assert_eq!(reader.scope(row(1, db.clone())).await, 2);
    }
}

// ---- across processes --------------------------------------------------------------------

const CHILD_ENV: &str = "REDIS_CACHED_L1_CHILD";
const CHILDREN: usize = 2;

/// The cross-process "database" is a plain key in the same Redis, so every process reads it.
#[redis_cached(ttl = 60, name = "l1::shared", l1 = true, l1_ttl = "60s", tags = ["shared:{id}"])]
async fn shared(id: u64, #[cache(skip)] conn: redis::aio::MultiplexedConnection) -> u64 {
    let mut conn = conn;
    conn.get::<_, Option<u64>>(format!("db:{id}"))
        .await
        .expect("GET db")
        .unwrap_or(0)
}

/// Child mode: read `shared(1)` without pause, publishing the value it serves (`seen:N`) and
/// its first-level hits (`hits:N`), until the parent sets `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let (url, me) = spec.split_once(' ').expect("url and index");
    let cache = Cache::builder()
        .url(url)
        .namespace("l1")
        .build()
        .await
        .expect("build cache");
    let conn = crate::raw_conn(url).await;
    let mut report = conn.clone();
    let mut last = None;
    for round in 0u64.. {
        let value = cache.scope(shared(1, conn.clone())).await;
        if last != Some(value) || round.is_multiple_of(50) {
            last = Some(value);
            let _: () = redis::pipe()
                .set(format!("seen:{me}"), value)
                .set(format!("hits:{me}"), cache.stats().l1_hits)
                .query_async(&mut report)
                .await
                .expect("report");
            if report.exists::<_, bool>("done").await.expect("EXISTS") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_follow_invalidate_put_refresh_tags_and_del() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = crate::raw_conn(&url).await;
    let mut raw = conn.clone();
    let set_db = |value: u64| {
        let mut conn = conn.clone();
        async move {
            let _: () = conn.set("db:1", value).await.expect("SET db");
        }
    };
    // Before any child runs: a child that loaded the unset row would cache 0, rightly.
    set_db(1).await;
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "first_level::child_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{url} {i}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child test process")
        })
        .collect();
    let cache = l1_cache(&server, Duration::from_secs(1)).await;
    let get = |key: String| {
        let mut conn = conn.clone();
        async move { conn.get::<_, Option<u64>>(key).await.expect("GET") }
    };
    // Every child serves `expected` from its first level (its hit count moved after it did).
    let all_follow = |expected: u64, what: String| async move {
        let mut hits = [None; CHILDREN];
        let started = Instant::now();
        loop {
            let mut all = true;
            for (i, seen_hits) in hits.iter_mut().enumerate() {
                let seen = get(format!("seen:{i}")).await;
                let now = get(format!("hits:{i}")).await;
                if seen != Some(expected) {
                    *seen_hits = None;
                    all = false;
                } else if seen_hits.is_none() {
                    *seen_hits = Some(now);
                    all = false;
                } else if now <= seen_hits.flatten() {
                    all = false;
                }
            }
            if all {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    all_follow(1, "every child to serve 1 from its first level".into()).await;

    set_db(2).await;
    cache.scope(shared_invalidate(1)).await.expect("invalidate");
    all_follow(2, "every child to follow NAME_invalidate".into()).await;

    cache.scope(shared_put(1, &3)).await.expect("put");
    all_follow(3, "every child to follow NAME_put".into()).await;

    set_db(4).await;
    let refreshed = cache
        .scope(shared_refresh(1, conn.clone()))
        .await
        .expect("refresh");
    assert_eq!(refreshed, 4);
    all_follow(4, "every child to follow NAME_refresh".into()).await;

    set_db(5).await;
    cache.invalidate_tags(["shared:1"]).await.expect("tags");
    all_follow(5, "every child to follow invalidate_tags".into()).await;

    set_db(6).await;
    let key = cache.scope(async { shared_key(1) }).await;
    let _: () = raw.del(&key).await.expect("DEL");
    all_follow(6, "every child to follow an operator's DEL".into()).await;

    let _: () = raw.set("done", 1).await.expect("SET done");
    for child in &mut children {
        let status = child.wait().expect("child exit");
        assert!(status.success(), "child failed: {status}");
    }
}

#[redis_cached(ttl = 60, name = "l1::slow_row", l1 = true)]
async fn slow_row(id: u64, #[cache(skip)] db: Arc<Db>) -> u64 {
    db.loads.bump();
    tokio::time::sleep(Duration::from_millis(50)).await;
    db.get(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_level_misses_of_one_key_share_one_load() {
    let server = RedisServer::start();
    let cache = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    db.set(1, 5);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (cache, db) = (cache.clone(), db.clone());
        callers.spawn(async move { cache.scope(slow_row(1, db)).await });
    }
    let values = callers.join_all().await;
    assert!(values.iter().all(|&v| v == 5));
    assert_eq!(db.loads(), 1, "200 concurrent callers, one load");
}

/// `Cache::shutdown` drains pending fills and stops following Redis: the first level stays
/// off (nothing served from it, the tracking connection closed), and calls still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_fills_and_stops_the_first_level() {
    let server = RedisServer::start();
    let cache = l1_cache(&server, Duration::from_secs(1)).await;
    let db = Arc::new(Db::default());
    db.set(1, 1);
    warm(&cache, || row(1, db.clone())).await;
    let mut conn = server.conn().await;
    assert_eq!(tracking_clients(&mut conn).await.len(), 1);
    // A miss whose fill runs in the background, then shut down at once.
    db.set(2, 2);
    assert_eq!(cache.scope(row(2, db.clone())).await, 2);
    cache.shutdown().await;
    let key = cache.scope(async { row_key(2) }).await;
    assert!(
        conn.exists::<_, bool>(&key).await.expect("EXISTS"),
        "the pending fill landed before shutdown returned"
    );
    assert!(!cache.stats().l1_live);
    wait_until(
        "the tracking connection to close",
        Duration::from_secs(5),
        || {
            let mut conn = conn.clone();
            async move { tracking_clients(&mut conn).await.is_empty() }
        },
    )
    .await;
    let (hits, loads) = (cache.stats().l1_hits, db.loads());
    for _ in 0..20 {
        assert_eq!(cache.scope(row(1, db.clone())).await, 1);
    }
    assert_eq!(
        cache.stats().l1_hits,
        hits,
        "nothing served from the first level"
    );
    assert_eq!(db.loads(), loads, "Redis hits");
    assert_eq!(
        tracking_clients(&mut conn).await.len(),
        0,
        "not started again"
    );
}
