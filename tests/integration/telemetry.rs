//! Telemetry: nothing on the call path, spans and metrics under their documented names,
//! keys only with `record_keys`, fleet counters readable through `Cache::admin`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redis_cached::{Cache, redis_cached};
use tracing_subscriber::{Layer, layer::SubscriberExt};

use crate::{all_command_counts, reset_command_counts, support::RedisServer};

async fn cache(server: &RedisServer, record_keys: bool) -> Cache {
    Cache::builder()
        .url(server.url())
        .namespace("telemetry")
        .batch_lookups(false)
        .record_keys(record_keys)
        // Flushed by the tests themselves, never inside a window they count.
        .telemetry_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("build cache")
}

#[redis_cached(ttl = 600, name = "telemetry::quiet")]
async fn quiet(id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_path_sends_no_command_for_telemetry() {
    let server = RedisServer::start();
    let cache = cache(&server, false).await;
    cache.scope(quiet(1)).await;
    cache.wait_for_writes().await;
    reset_command_counts(&server).await;
    for _ in 0..1_000 {
        assert_eq!(cache.scope(quiet(1)).await, 1);
    }
    let sent = all_command_counts(&server).await;
    assert_eq!(sent, HashMap::from([("get".to_owned(), 1_000)]));

    // The counts leave the process in the flush, one pipeline.
    cache.flush_telemetry().await.expect("flush");
    let sent = all_command_counts(&server).await;
    assert!(sent.get("hincrby").is_some_and(|n| *n > 0), "{sent:?}");
    let stats = cache
        .admin()
        .stats(Duration::from_secs(60))
        .await
        .expect("stats");
    let quiet = &stats.functions[0];
    assert_eq!(
        (quiet.function.as_str(), quiet.hits, quiet.misses),
        ("telemetry::quiet", 1_000, 1)
    );
    assert_eq!(stats.processes, 1);
}

// ---- spans, events and metrics ------------------------------------------------------------

/// Everything a subscriber at `max` is shown: span names with their fields, and event fields.
#[derive(Clone)]
struct Seen {
    lines: Arc<Mutex<Vec<String>>>,
    max: tracing::Level,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Seen {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *attrs.metadata().level() > self.max {
            return;
        }
        let mut line = format!(
            "span {} {}",
            attrs.metadata().level(),
            attrs.metadata().name()
        );
        attrs.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = "record".to_owned();
        values.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > self.max {
            return;
        }
        let mut line = format!("event {}", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
    }
}

impl Seen {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// The process-wide test recorder (installed once; each test reads its own functions).
fn recorder() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("install the test recorder");
        snapshotter
    })
}

/// Every counter of `function`: `(name, labels other than function) -> value`.
fn counters(function: &str) -> HashMap<(String, Vec<String>), u64> {
    recorder()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<_> = key.labels().collect();
            if !labels
                .iter()
                .any(|l| l.key() == "function" && l.value() == function)
            {
                return None;
            }
            let others = labels
                .iter()
                .filter(|l| l.key() != "function")
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => return None,
            };
            Some(((key.name().to_owned(), others), value))
        })
        .collect()
}

#[redis_cached(ttl = 600, name = "telemetry::by_email")]
async fn by_email(email: String) -> usize {
    email.len()
}

#[redis_cached(ttl = 600, name = "telemetry::by_email_keyed")]
async fn by_email_keyed(email: String) -> usize {
    email.len()
}

/// Runs `calls` with a subscriber at `level` on this thread (a current-thread runtime runs
/// every task here), and returns what it saw. (The level is checked by the layer itself:
/// spans recorded later belong to spans it kept.)
async fn seen_at<F: std::future::Future>(
    level: tracing::Level,
    calls: F,
) -> (F::Output, Vec<String>) {
    let seen = Seen {
        lines: Arc::default(),
        max: level,
    };
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = calls.await;
    (output, seen.take())
}

#[tokio::test(flavor = "current_thread")]
async fn spans_and_metrics_carry_names_and_outcomes_and_no_key() {
    recorder();
    let server = RedisServer::start();
    let cache = cache(&server, false).await;
    let email = "alice@example.com".to_owned();

    // A miss: one span at INFO with the function, why and how it ended.
    let (_, miss) = seen_at(tracing::Level::INFO, async {
        cache.scope(by_email(email.clone())).await;
        cache.wait_for_writes().await;
    })
    .await;
    let text = miss.join("\n");
    assert!(
        text.contains("span INFO redis_cached function=\"telemetry::by_email\" call=\"miss\""),
        "{text}"
    );
    assert!(text.contains("outcome=\"loaded\""), "{text}");
    // A hit: nothing at INFO.
    let (_, hit) = seen_at(tracing::Level::INFO, cache.scope(by_email(email.clone()))).await;
    assert_eq!(hit, Vec::<String>::new());
    // Hits are counted only, even at TRACE; other events are TRACE events with their names.
    let (_, traced) = seen_at(tracing::Level::TRACE, cache.scope(by_email(email.clone()))).await;
    assert_eq!(traced, Vec::<String>::new());
    let (_, traced) = seen_at(tracing::Level::TRACE, async {
        cache.scope(by_email("bob@example.com".into())).await;
        cache.wait_for_writes().await;
    })
    .await;
    let text = traced.join("\n");
    assert!(
        text.contains("event=\"miss\"") && text.contains("event=\"load\""),
        "{text}"
    );
    // A refresh: its own span.
    let (_, refreshed) = seen_at(tracing::Level::INFO, async {
        cache
            .scope(by_email_refresh(email.clone()))
            .await
            .expect("refresh");
    })
    .await;
    let text = refreshed.join("\n");
    assert!(
        text.contains("call=\"refresh\"") && text.contains("outcome=\"refreshed\""),
        "{text}"
    );

    for line in miss.iter().chain(&hit).chain(&traced).chain(&refreshed) {
        assert!(
            !line.contains("alice") && !line.contains("bob"),
            "a key reached tracing: {line}"
        );
    }
    let metrics = counters("telemetry::by_email");
    let get = |name: &str, labels: &[&str]| {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        metrics.get(&(name.to_owned(), labels)).copied()
    };
    assert_eq!(
        get("redis_cached_hits_total", &["level=redis"]),
        Some(2),
        "{metrics:?}"
    );
    assert_eq!(
        get("redis_cached_misses_total", &[]),
        Some(2),
        "{metrics:?}"
    );
    assert_eq!(get("redis_cached_loads_total", &[]), Some(3), "{metrics:?}");
    assert_eq!(
        get("redis_cached_load_seconds", &[]),
        Some(3),
        "{metrics:?}"
    );
    assert_eq!(
        get("redis_cached_stores_total", &[]),
        Some(3),
        "{metrics:?}"
    );
    for (name, labels) in metrics.keys() {
        assert!(
            !labels.iter().any(|l| l.contains("alice")),
            "{name}: {labels:?}"
        );
    }

    // With record_keys, the span carries the key.
    let keyed = cache_with_keys(&server).await;
    let (_, seen) = seen_at(
        tracing::Level::INFO,
        keyed.scope(by_email_keyed(email.clone())),
    )
    .await;
    let text = seen.join("\n");
    assert!(
        text.contains("key=") && text.contains("alice@example.com"),
        "{text}"
    );
}

async fn cache_with_keys(server: &RedisServer) -> Cache {
    cache(server, true).await
}
