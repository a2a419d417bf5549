//! Payload sizes and compression: for a 100-record list, a 10 KB and a 100 KB document, each
//! compression setting's stored bytes, hit p50 (against Redis) and decode time, against JSON
//! uncompressed. The default is the setting with the lowest 10 KB hit p50 among those that at
//! least halve it.

use std::time::Instant;

use redis::AsyncCommands;
use redis_cached::{Cache, Codec, Compression, redis_cached};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Record {
    id: u64,
    name: String,
    email: String,
    org_id: u64,
    plan: String,
    created_at: String,
    active: bool,
    score: f64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Document {
    id: u64,
    title: String,
    author: String,
    tags: Vec<String>,
    paragraphs: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub enum Payload {
    Records(Vec<Record>),
    Document(Document),
}

const WORDS: &[&str] = &[
    "cache", "redis", "latency", "service", "request", "user", "order", "payment", "the", "a",
    "of", "and", "to", "in", "is", "for", "with", "on", "by", "database", "query", "index",
    "replica", "cluster", "shard", "memory", "eviction", "policy", "value", "key", "entry",
    "stale", "fresh", "load", "stampede", "lock", "tag", "invalidate", "version", "rust",
    "async", "future", "runtime", "tokio", "connection", "pool", "timeout", "retry", "backoff",
    "metric", "trace", "span", "log", "error", "result", "option", "vector", "string",
];

fn sentence(rng: &mut fastrand::Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    s.push('.');
    s
}

/// The three payloads, generated reproducibly.
pub fn payloads() -> Vec<(&'static str, Payload)> {
    let mut rng = fastrand::Rng::with_seed(42);
    let records = (0..100)
        .map(|i| Record {
            id: 10_000 + i,
            name: format!("{} {}", sentence(&mut rng, 1), sentence(&mut rng, 1)),
            email: format!("user{}@example{}.com", rng.u32(..100_000), rng.u8(..20)),
            org_id: rng.u64(..500),
            plan: ["free", "pro", "enterprise"][rng.usize(..3)].to_owned(),
            created_at: format!(
                "2026-{:02}-{:02}T{:02}:{:02}:00Z",
                rng.u8(1..13),
                rng.u8(1..29),
                rng.u8(..24),
                rng.u8(..60)
            ),
            active: rng.bool(),
            score: (rng.f64() * 1000.0).round() / 10.0,
        })
        .collect();
    let document = |rng: &mut fastrand::Rng, bytes: usize| {
        let mut paragraphs = Vec::new();
        let mut size = 0;
        while size < bytes {
            let p = (0..5)
                .map(|_| sentence(rng, 12))
                .collect::<Vec<_>>()
                .join(" ");
            size += p.len() + 3;
            paragraphs.push(p);
        }
        Document {
            id: rng.u64(..1_000_000),
            title: sentence(rng, 6),
            author: sentence(rng, 2),
            tags: (0..5).map(|_| sentence(rng, 1)).collect(),
            paragraphs,
        }
    };
    let doc10 = document(&mut rng, 10_000);
    let doc100 = document(&mut rng, 100_000);
    vec![
        ("100-record list", Payload::Records(records)),
        ("10 KB document", Payload::Document(doc10)),
        ("100 KB document", Payload::Document(doc100)),
    ]
}

#[redis_cached(ttl = 3600, name = "bench::payload")]
pub async fn stored_payload(id: u64, #[cache(skip)] payload: &Payload) -> Payload {
    let _ = id;
    payload.clone()
}

pub struct PayloadRow {
    pub payload: &'static str,
    pub setting: &'static str,
    pub stored: usize,
    pub json: usize,
    pub hit_p50_us: f64,
    pub decode_us: f64,
}

/// Measures every payload under every setting; `hits` hits each, interleaved by setting.
pub async fn measure(url: &str, hits: usize) -> Vec<PayloadRow> {
    let lz4 = Compression::Lz4 { over: 1024 };
    let zstd = Compression::Zstd { over: 1024 };
    let settings = [
        ("JSON", Codec::Json, Compression::Off),
        ("JSON + lz4", Codec::Json, lz4),
        ("JSON + zstd level 1", Codec::Json, zstd),
        ("postcard", Codec::Postcard, Compression::Off),
        ("postcard + lz4", Codec::Postcard, lz4),
        ("postcard + zstd level 1", Codec::Postcard, zstd),
    ];
    let mut raw = redis::Client::open(url)
        .expect("client")
        .get_connection_manager()
        .await
        .expect("connection");
    let mut rows = Vec::new();
    for (id, (name, payload)) in payloads().into_iter().enumerate() {
        let mut caches = Vec::new();
        for (s, (setting_name, codec, compression)) in settings.iter().enumerate() {
            let cache = Cache::builder()
                .url(url)
                .namespace(format!("bench-payload-{s}"))
                .codec(*codec)
                .compression(*compression)
                .build()
                .await
                .expect("cache");
            cache.scope(stored_payload(id as u64, &payload)).await;
            cache.wait_for_writes().await;
            let key = cache.scope(async { stored_payload_key(id as u64) }).await;
            let bytes: Vec<u8> = raw.get(&key).await.expect("GET");
            caches.push((*setting_name, cache, bytes, hdrhistogram::Histogram::<u64>::new(3).unwrap()));
        }
        for pass in 0..5 {
            for i in 0..caches.len() {
                let i = if pass % 2 == 0 { i } else { caches.len() - 1 - i };
                let (_, cache, _, histogram) = &mut caches[i];
                for _ in 0..hits / 5 {
                    let started = Instant::now();
                    std::hint::black_box(cache.scope(stored_payload(id as u64, &payload)).await);
                    histogram.record(started.elapsed().as_nanos() as u64).ok();
                }
            }
        }
        let json = caches[0].2.len();
        for (setting, _, bytes, histogram) in caches {
            let fingerprint = u64::from_le_bytes(bytes[3..11].try_into().unwrap());
            let mut decodes = Vec::new();
            for _ in 0..201 {
                let started = Instant::now();
                let decoded =
                    cache_runtime::envelope::decode::<Payload>(fingerprint, &bytes, usize::MAX);
                std::hint::black_box(decoded.is_ok());
                decodes.push(started.elapsed());
            }
            decodes.sort();
            rows.push(PayloadRow {
                payload: name,
                setting,
                stored: bytes.len(),
                json,
                hit_p50_us: histogram.value_at_quantile(0.5) as f64 / 1000.0,
                decode_us: decodes[100].as_secs_f64() * 1e6,
            });
        }
    }
    rows
}
