//! Fleet counters: every few seconds each process sends what its functions counted since its
//! last flush, in one pipeline (built here, sent by `Cache::flush_telemetry`), into expiring
//! keys of the namespace. Nothing is sent on the call path. Readers (`redis-cached stats`,
//! [`crate::admin`]) sum the buckets of a window over every process.
//!
//! Layout (outside the `{ns}:` prefix the first level tracks, so a flush invalidates nothing):
//!
//! - `{ns};stats:{bucket}`: a hash per [`BUCKET`] of wall-clock time; fields
//!   `{function}|{counter}` (see `Counter::name`), `{function}|load_b{i}` (load-time buckets),
//!   `{function}|load_us` (their sum) and `{function}|hot_error` (the hot keys' error bound);
//! - `{ns};hot:{bucket}:{function}`: a sorted set of entry keys scored by estimated reads;
//! - `{ns};reporters`: a sorted set of reporting caches (`host:pid:cache`) scored by the time of
//!   their last flush (ms); each flush trims those silent for [`KEEP`].
//!
//! Every key expires after [`KEEP`]. A flush that fails loses what it carried (at most one
//! interval); while the breaker keeps calls away from Redis no flush is tried, and the counts
//! wait for the next one.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use super::{Counter, FnCounts, function::LOAD_BUCKETS};

/// The width of a stats bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// How long fleet keys live after their last write.
pub const KEEP: Duration = Duration::from_secs(3600);

/// The bucket number of a wall-clock time.
pub fn bucket_of(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / BUCKET.as_secs()
}

/// The key of a stats bucket.
pub fn stats_key(namespace: &str, bucket: u64) -> String {
    format!("{namespace};stats:{bucket}")
}

/// The key of a function's hot keys in a bucket.
pub fn hot_key(namespace: &str, bucket: u64, function: &str) -> String {
    format!("{namespace};hot:{bucket}:{function}")
}

/// The key of the sorted set of reporting caches (`{namespace};reporters`).
pub fn reporters_key(namespace: &str) -> String {
    format!("{namespace};reporters")
}

/// What each function's last flush sent, to send only what changed.
#[derive(Default)]
pub(crate) struct Flushed {
    functions: HashMap<&'static str, Sent>,
}

struct Sent {
    counts: [u64; Counter::ALL.len()],
    load_times: [u64; LOAD_BUCKETS],
    load_micros: u64,
}

impl Flushed {
    /// The commands that send what changed since the last call, into the bucket of `now`.
    pub(crate) fn pipeline(
        &mut self,
        namespace: &str,
        functions: &[std::sync::Arc<FnCounts>],
        process: &str,
        now: SystemTime,
    ) -> redis::Pipeline {
        let bucket = bucket_of(now);
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let keep = KEEP.as_secs() as i64;
        let stats = stats_key(namespace, bucket);
        let mut pipe = redis::pipe();
        for function in functions {
            let name = function.name;
            let sent = self.functions.entry(name).or_insert_with(|| Sent {
                counts: [0; Counter::ALL.len()],
                load_times: [0; LOAD_BUCKETS],
                load_micros: 0,
            });
            for counter in Counter::ALL {
                let now = function.get(counter);
                let delta = now.saturating_sub(sent.counts[counter as usize]);
                sent.counts[counter as usize] = now;
                if delta > 0 {
                    pipe.hincr(&stats, format!("{name}|{}", counter.name()), delta)
                        .ignore();
                }
            }
            let (load_times, load_micros) = function.load_times();
            for (i, (now, before)) in load_times.iter().zip(&mut sent.load_times).enumerate() {
                if *now > *before {
                    pipe.hincr(&stats, format!("{name}|load_b{i}"), *now - *before)
                        .ignore();
                }
                *before = *now;
            }
            if load_micros > sent.load_micros {
                pipe.hincr(
                    &stats,
                    format!("{name}|load_us"),
                    load_micros - sent.load_micros,
                )
                .ignore();
            }
            sent.load_micros = load_micros;
            let hot = function
                .hot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if !hot.is_empty() {
                let key = hot_key(namespace, bucket, name);
                let error = hot.iter().map(|(_, e)| e.error).max().unwrap_or(0);
                for (entry, estimate) in &hot {
                    pipe.zincr(&key, &**entry, estimate.count).ignore();
                }
                pipe.expire(&key, keep).ignore();
                if error > 0 {
                    pipe.hincr(&stats, format!("{name}|hot_error"), error)
                        .ignore();
                }
            }
        }
        pipe.expire(&stats, keep).ignore();
        let processes = reporters_key(namespace);
        pipe.zadd(&processes, process, now_ms).ignore();
        let silent = now_ms.saturating_sub(KEEP.as_millis() as u64);
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&processes)
            .arg("-inf")
            .arg(format!("({silent}"))
            .ignore();
        pipe.expire(&processes, keep).ignore();
        pipe
    }
}

/// This process's name among the reporters: host, process id and cache.
pub(crate) fn process_name(cache_id: u64) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}:{}:{cache_id}", std::process::id())
}
