//! The `redis-cached` binary against private `redis-server`s, with workloads of known counts
//! run by this test binary (re-executed as child processes where a fleet is needed).

#[allow(dead_code, unused_imports)]
#[path = "../../tests/integration/support/mod.rs"]
mod support;

use std::{
    process::{Command, Output},
    sync::Arc,
    time::Duration,
};

use redis_cached::{Cache, redis_cached};
use serde_json::Value;
use support::RedisServer;

const NAMESPACE: &str = "fleet";

async fn cache(url: &str) -> Cache {
    Cache::builder()
        .url(url)
        .namespace(NAMESPACE)
        // No periodic flush inside a test's window: the test flushes (or shuts down) itself.
        .telemetry_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("build cache")
}

/// Runs the CLI against `server`'s namespace.
fn cli(server: &RedisServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-cached"))
        .args(["--url", &server.url(), "--namespace", NAMESPACE])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run redis-cached")
}

fn json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "redis-cached failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[redis_cached(ttl = 600, name = "cli::row")]
async fn row(id: u64) -> u64 {
    id * 2
}

// ---- two processes, known counts ----------------------------------------------------------

const CHILD_ENV: &str = "REDIS_CACHED_CLI_CHILD";

/// Child mode: 10 misses (keys of its own), then 40 hits of them; shuts down (which flushes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_workload() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let (url, me) = spec.split_once(' ').expect("url and index");
    let first: u64 = me.parse::<u64>().expect("index") * 1000;
    let cache = cache(url).await;
    for id in first..first + 10 {
        assert_eq!(cache.scope(row(id)).await, id * 2);
    }
    // Every fill landed: what follows hits.
    cache.wait_for_writes().await;
    for _ in 0..4 {
        for id in first..first + 10 {
            cache.scope(row(id)).await;
        }
    }
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_sums_two_processes_exactly() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(&exe)
                .args(["child_workload", "--exact", "--test-threads=1"])
                .env(CHILD_ENV, format!("{} {i}", server.url()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().expect("child").success(),
            "child workload failed"
        );
    }
    let stats = json(cli(&server, &["stats", "--json", "--window", "5m"]));
    assert_eq!(stats["processes"], 2, "{stats:#}");
    let functions = stats["functions"].as_array().expect("functions");
    let row = functions
        .iter()
        .find(|f| f["function"] == "cli::row")
        .expect("cli::row reported");
    assert_eq!(row["hits"], 80, "{row:#}");
    assert_eq!(row["misses"], 20, "{row:#}");
    assert_eq!(row["loads"], 20, "{row:#}");
    assert_eq!(row["calls"], 100, "{row:#}");
    assert_eq!(row["hit_rate"], 0.8, "{row:#}");
    assert!(row["load_p50_ms"].is_number(), "{row:#}");

    let table = cli(&server, &["stats"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("cli::row") && text.contains("80.0%"),
        "{text}"
    );
}

// ---- hot keys ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_lists_the_hottest_keys_first() {
    let server = RedisServer::start();
    let cache = cache(&server.url()).await;
    // Reads per key: 2,000, 800 and 300 for three hot keys, 5 for each of 50 cold ones,
    // interleaved.
    let mut reads: Vec<u64> = Vec::new();
    for (id, times) in [(1u64, 2_000), (2, 800), (3, 300)] {
        reads.extend(std::iter::repeat_n(id, times));
    }
    for id in 100..150 {
        reads.extend(std::iter::repeat_n(id, 5));
    }
    fastrand::shuffle(&mut reads);
    for id in reads {
        cache.scope(row(id)).await;
    }
    cache.flush_telemetry().await.expect("flush");
    let hot = json(cli(&server, &["hot", "--json", "--top", "3"]));
    // Redis 7 has no HOTKEYS: said so beside the sampled keys.
    assert_eq!(hot["server"]["status"], "unsupported", "{hot:#}");
    let keys: Vec<String> = hot["sampled"]
        .as_array()
        .expect("hot keys")
        .iter()
        .map(|k| k["key"].as_str().expect("key").to_owned())
        .collect();
    let key_of = |id: u64| cache.scope(async move { row_key(id) });
    let expected = vec![key_of(1).await, key_of(2).await, key_of(3).await];
    assert_eq!(keys, expected);
}

// ---- memory ------------------------------------------------------------------------------

#[redis_cached(ttl = 600, name = "cli::small")]
async fn small(id: u64) -> String {
    let _ = id;
    "s".repeat(1_000)
}

#[redis_cached(ttl = 600, name = "cli::large")]
async fn large(id: u64) -> String {
    let _ = id;
    "l".repeat(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_reports_entries_of_known_sizes() {
    let server = RedisServer::start();
    // Stored as written, so the payload sizes below are what Redis holds.
    let cache = Cache::builder()
        .url(server.url())
        .namespace(NAMESPACE)
        .compression(redis_cached::Compression::Off)
        .build()
        .await
        .expect("build cache");
    for id in 0..50 {
        cache.scope(small(id)).await;
    }
    for id in 0..20 {
        cache.scope(large(id)).await;
    }
    cache.wait_for_writes().await;
    // Twenty of the fifty small entries sampled, every large one.
    let report = json(cli(&server, &["memory", "--json", "--sample", "20"]));
    let function = |name: &str| {
        report["functions"]
            .as_array()
            .expect("functions")
            .iter()
            .find(|f| f["function"] == name)
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
            .clone()
    };
    let (small, large) = (function("cli::small"), function("cli::large"));
    assert_eq!(small["entries"], 50);
    assert_eq!(small["sampled"], 20);
    assert_eq!(large["entries"], 20);
    assert_eq!(large["sampled"], 20);
    // The truth: every entry's MEMORY USAGE, measured here.
    let conn = server.conn().await;
    let truth = |function: &'static str| {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{NAMESPACE}:{function}:v*}}"))
                .query_async(&mut conn)
                .await
                .expect("KEYS");
            let mut total = 0u64;
            for key in keys {
                let bytes: u64 = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut conn)
                    .await
                    .expect("MEMORY USAGE");
                total += bytes;
            }
            total
        }
    };
    let (small_truth, large_truth) = (truth("cli::small").await, truth("cli::large").await);
    assert!(small_truth >= 50 * 1_000 && large_truth >= 20 * 10_000);
    // Every large entry measured: exact. A fifth of the small ones, all of one size: the
    // estimate is within the stated error (here, of entries that differ by a few bytes, 2%).
    assert_eq!(large["bytes"].as_u64(), Some(large_truth), "{large:#}");
    let estimate = small["bytes"].as_u64().expect("bytes");
    assert!(
        estimate.abs_diff(small_truth) * 50 <= small_truth,
        "{estimate} estimated for {small_truth}"
    );
    let ttl = large["ttl_secs"].as_array().expect("ttls");
    assert!(
        ttl.iter()
            .all(|t| (500..=600).contains(&t.as_u64().unwrap())),
        "{ttl:?}"
    );
    assert!(report["maxmemory_policy"].is_string());
}

// ---- invalidation ------------------------------------------------------------------------

#[redis_cached(ttl = 600, name = "cli::slow")]
async fn slow(id: u64, #[cache(skip)] gate: Arc<Gate>) -> u64 {
    gate.started.notify_one();
    gate.release.notified().await;
    id + gate.version.load(std::sync::atomic::Ordering::SeqCst)
}

#[derive(Default)]
struct Gate {
    started: tokio::sync::Notify,
    release: tokio::sync::Notify,
    version: std::sync::atomic::AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_during_a_load_keeps_its_old_value_out() {
    let server = RedisServer::start();
    let cache = cache(&server.url()).await;
    cache.flush_telemetry().await.expect("report");
    let gate = Arc::new(Gate::default());
    let key = cache.scope(async { slow_key(7) }).await;
    // A load that read the old row (version 0) is in flight...
    let load = tokio::spawn({
        let (cache, gate) = (cache.clone(), gate.clone());
        async move { cache.scope(slow(7, gate)).await }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.started.notified())
        .await
        .expect("the load started");
    // ...when the row changes and an operator invalidates the entry.
    gate.version.store(100, std::sync::atomic::Ordering::SeqCst);
    let invalidated = cli(&server, &["invalidate", "--key", &key, "--yes"]);
    assert!(
        invalidated.status.success(),
        "{}",
        String::from_utf8_lossy(&invalidated.stderr)
    );
    // The load ends with what it read before the change; its fill must be refused.
    gate.release.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .expect("the load ended");
    cache.wait_for_writes().await;
    // The next call loads again and sees the new row.
    let next = tokio::spawn({
        let (cache, gate) = (cache.clone(), gate.clone());
        async move { cache.scope(slow(7, gate)).await }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.started.notified())
        .await
        .expect("a new load started: the old value was not stored");
    gate.release.notify_one();
    assert_eq!(next.await.expect("call"), 107);
    assert!(
        cache.stats().fills_rejected >= 1,
        "the old fill was refused"
    );

    let audit = json(cli(&server, &["audit", "--json"]));
    let record = &audit[0];
    // The load had not stored anything yet: said so, and its fill refused all the same.
    assert_eq!(
        record["what"],
        format!("invalidate key {key} (no entry was there)"),
        "{audit:#}"
    );
    assert_eq!(record["outcome"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_refuses_what_it_should() {
    let server = RedisServer::start();
    // No process has reported to the namespace yet.
    let refused = cli(&server, &["invalidate", "--tag", "org:1", "--yes"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no process has reported"));

    let cache = cache(&server.url()).await;
    cache.flush_telemetry().await.expect("report");
    for (args, says) in [
        (vec!["invalidate", "--tag", "org:1"], "pass --yes"),
        (
            vec!["invalidate", "--key", "other:cli::row:v0:{1}", "--yes"],
            "not an entry key",
        ),
        (
            vec!["invalidate", "--key", "fleet:cli::row:v0:{1}:lock", "--yes"],
            "not an entry key",
        ),
    ] {
        let output = cli(&server, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Keys are exact, never patterns: `*` matches nothing but itself.
    cache.scope(row(1)).await;
    cache.wait_for_writes().await;
    let star = cli(
        &server,
        &["invalidate", "--key", "fleet:cli::row:v0:{*}", "--yes"],
    );
    assert!(
        star.status.success(),
        "{}",
        String::from_utf8_lossy(&star.stderr)
    );
    assert!(String::from_utf8_lossy(&star.stdout).contains("no entry was cached"));
    let row_key = cache.scope(async { row_key(1) }).await;
    let mut conn = server.conn().await;
    let still: bool = redis::cmd("EXISTS")
        .arg(&row_key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(still, "a pattern-looking key touched another entry");
    let tags = cli(&server, &["invalidate", "--tag", "org:1", "--yes"]);
    assert!(
        tags.status.success(),
        "{}",
        String::from_utf8_lossy(&tags.stderr)
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    // Nothing listens on this port: a server is started and killed to reserve it.
    let mut server = RedisServer::start();
    let port = server.port();
    server.kill();
    let output = Command::new(env!("CARGO_BIN_EXE_redis-cached"))
        .args([
            "--url",
            &format!("redis://ops:hunter2@127.0.0.1:{port}"),
            "stats",
        ])
        .output()
        .expect("run redis-cached");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach Redis at redis://ops:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_for_the_documented_acl_profiles() {
    use support::acl::{LIBRARY_COMMANDS, OPERATOR_COMMANDS, acl_denials, acl_user};
    let server = RedisServer::start();
    acl_user(&server, "app", "app-pw", NAMESPACE, LIBRARY_COMMANDS).await;
    acl_user(&server, "ops", "ops-pw", NAMESPACE, OPERATOR_COMMANDS).await;
    let port = server.port();
    let app = cache(&format!("redis://app:app-pw@127.0.0.1:{port}")).await;
    for id in 0..20 {
        app.scope(row(id)).await;
        app.scope(row(id)).await;
    }
    app.wait_for_writes().await;
    app.flush_telemetry().await.expect("flush as the app user");
    let key = app.scope(async { row_key(3) }).await;
    let ops_url = format!("redis://ops:ops-pw@127.0.0.1:{port}");
    for args in [
        vec!["stats", "--json"],
        vec!["hot", "--json"],
        vec!["memory", "--json"],
        vec!["invalidate", "--key", key.as_str(), "--yes"],
        vec!["invalidate", "--tag", "org:1", "--yes"],
        vec!["audit", "--json"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_redis-cached"))
            .args(["--url", &ops_url, "--namespace", NAMESPACE])
            .args(&args)
            .output()
            .expect("run redis-cached");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(acl_denials(&server).await, Vec::<String>::new());
}
