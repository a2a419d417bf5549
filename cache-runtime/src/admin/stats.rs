//! Fleet statistics and hot keys: the buckets every process flushed, summed over a window.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::Admin;
use crate::{
    Error,
    telemetry::{
        Counter,
        fleet::{BUCKET, KEEP, bucket_of, hot_key, reporters_key, stats_key},
        function::{LOAD_BUCKETS, bucket_floor_micros},
    },
};

/// A namespace's counts over a window, summed over every process that reported.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FleetStats {
    /// The namespace.
    pub namespace: String,
    /// The time the counts cover, in seconds: from the start of the window's first 10 s
    /// bucket to now.
    pub window_secs: u64,
    /// Processes whose last flush falls in the window.
    pub processes: usize,
    /// Per function, busiest first.
    pub functions: Vec<FunctionStats>,
}

/// One function's counts over a window, summed over the fleet.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's stable name.
    pub function: String,
    /// Calls answered by a level or a load: `hits + l1_hits + misses`.
    pub calls: u64,
    /// Hits from Redis.
    pub hits: u64,
    /// Hits from the processes' first levels.
    pub l1_hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Store failures seen by calls.
    pub errors: u64,
    /// `(hits + l1_hits) / calls`; 0 without calls.
    pub hit_rate: f64,
    /// `l1_hits / (hits + l1_hits)`; 0 without hits.
    pub l1_share: f64,
    /// Calls per second over the window.
    pub calls_per_sec: f64,
    /// Loads per second over the window.
    pub loads_per_sec: f64,
    /// Median load time in milliseconds (within 19%), if any load ran.
    pub load_p50_ms: Option<f64>,
    /// 99th-percentile load time in milliseconds (within 19%), if any load ran.
    pub load_p99_ms: Option<f64>,
    /// Every counter by name (`stale_serves`, `fills_refused_generation`, ...).
    pub counts: BTreeMap<String, u64>,
}

/// A hot key of a function, over a window, merged over the fleet.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HotKey {
    /// The function.
    pub function: String,
    /// The entry key.
    pub key: String,
    /// Estimated reads (from samples of 1 in 16 Redis reads and 1 in 64 first-level hits, each
    /// counted for the reads it stands for).
    pub reads: u64,
    /// How much `reads` may overcount: the sum of every process's and interval's bound.
    pub error: u64,
}

/// What the server itself reports as hot (Redis 8.6+ and Valkey 9.2+ `HOTKEYS GET`), shown
/// beside the sampled hot keys: the keys of this namespace with the most CPU time and network
/// bytes in the server's most recent tracking session.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerHotKeys {
    /// The server has no `HOTKEYS` command.
    Unsupported,
    /// No tracking session has run (an operator starts one with `HOTKEYS START`).
    NoSession,
    /// The server refused or answered in a shape this version does not read.
    Unavailable {
        /// What the server said.
        reason: String,
    },
    /// The most recent session's keys of this namespace.
    Keys {
        /// Whether the session is still running.
        active: bool,
        /// Keys by CPU time, in microseconds, hottest first.
        by_cpu_time_us: Vec<(String, u64)>,
        /// Keys by network bytes, hottest first.
        by_net_bytes: Vec<(String, u64)>,
    },
}

impl Admin<'_> {
    /// The server's own hot keys of this namespace, if it tracks them (`HOTKEYS GET`; this
    /// never starts a session, which costs the server and is an operator's decision).
    pub async fn server_hot_keys(&self) -> Result<ServerHotKeys, Error> {
        let mut conn = self.connection()?;
        let reply: Result<Option<redis::HotkeysResponse>, Error> = self
            .query(&mut conn, redis::cmd("HOTKEYS").arg("GET"))
            .await;
        let response = match reply {
            Ok(Some(response)) => response,
            Ok(None) => return Ok(ServerHotKeys::NoSession),
            Err(Error::Backend(err))
                if err
                    .to_string()
                    .to_ascii_lowercase()
                    .contains("unknown command") =>
            {
                return Ok(ServerHotKeys::Unsupported);
            }
            // Not allowed (ACL, a proxy), or a reply of another shape: shown as such, never an
            // error that would hide the sampled keys. Only a link failure is an error.
            Err(err) if !crate::connection::is_unreachable(&err) => {
                return Ok(ServerHotKeys::Unavailable {
                    reason: err.to_string(),
                });
            }
            Err(err) => return Err(err),
        };
        let prefix = format!("{}:", self.cache.namespace());
        let ours = |entries: Option<Vec<redis::HotKeyEntry>>| -> Vec<(String, u64)> {
            entries
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.key.starts_with(&prefix))
                .map(|e| (e.key, e.value))
                .collect()
        };
        Ok(ServerHotKeys::Keys {
            active: response.tracking_active,
            by_cpu_time_us: ours(response.by_cpu_time_us),
            by_net_bytes: ours(response.by_net_bytes),
        })
    }

    /// The stats buckets of the last `window`, oldest first.
    fn buckets(window: Duration) -> Vec<u64> {
        let now = SystemTime::now();
        let last = bucket_of(now);
        let first = bucket_of(now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH));
        // No further back than the data is kept.
        let kept = KEEP.as_secs() / BUCKET.as_secs();
        (first.max(last.saturating_sub(kept - 1))..=last).collect()
    }

    /// Every field of every stats bucket of the window, summed.
    async fn summed_fields(&self, window: Duration) -> Result<HashMap<String, u64>, Error> {
        let mut conn = self.connection()?;
        let namespace = self.cache.namespace();
        let mut pipe = redis::pipe();
        for bucket in Self::buckets(window) {
            pipe.hgetall(stats_key(namespace, bucket));
        }
        let buckets: Vec<HashMap<String, u64>> = self.pipeline(&mut conn, &pipe).await?;
        let mut sums = HashMap::new();
        for (field, value) in buckets.into_iter().flatten() {
            *sums.entry(field).or_insert(0) += value;
        }
        Ok(sums)
    }

    /// Whether any process has reported to this namespace within [`TELEMETRY_KEEP`]
    /// (the namespace is in use).
    ///
    /// [`TELEMETRY_KEEP`]: crate::TELEMETRY_KEEP
    pub async fn has_reporters(&self) -> Result<bool, Error> {
        Ok(self.reporters_since(KEEP).await? > 0)
    }

    /// Caches whose last flush is at most `ago` old.
    async fn reporters_since(&self, ago: Duration) -> Result<u64, Error> {
        let mut conn = self.connection()?;
        let since = unix_ms(SystemTime::now().checked_sub(ago));
        let key = reporters_key(self.cache.namespace());
        self.query(
            &mut conn,
            redis::cmd("ZCOUNT").arg(&key).arg(since).arg("+inf"),
        )
        .await
    }

    /// The fleet's per-function counts over the last `window` (from the start of its first
    /// 10 s bucket to now; rates are over that time). Counts are exact once every process has
    /// flushed (every `CacheBuilder::telemetry_interval`); a process that died lost at most its
    /// last interval.
    pub async fn stats(&self, window: Duration) -> Result<FleetStats, Error> {
        let buckets = Self::buckets(window);
        let first_start = buckets.first().copied().unwrap_or(0) * BUCKET.as_secs();
        let now_secs = unix_ms(Some(SystemTime::now())) / 1000;
        let window_secs = now_secs.saturating_sub(first_start).max(1);
        let sums = self.summed_fields(window).await?;
        let mut by_function: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
        for (field, value) in &sums {
            if let Some((function, counter)) = field.rsplit_once('|') {
                by_function
                    .entry(function)
                    .or_default()
                    .insert(counter, *value);
            }
        }
        let mut functions: Vec<FunctionStats> = by_function
            .into_iter()
            .map(|(function, fields)| function_stats(function, &fields, window_secs))
            .collect();
        functions.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.function.cmp(&b.function)));

        Ok(FleetStats {
            namespace: self.cache.namespace().to_owned(),
            window_secs,
            processes: self.reporters_since(window + BUCKET).await? as usize,
            functions,
        })
    }

    /// The `top` hottest keys of each function over the last `window`, merged over the fleet,
    /// hottest first.
    pub async fn hot(&self, window: Duration, top: usize) -> Result<Vec<HotKey>, Error> {
        let sums = self.summed_fields(window).await?;
        let mut functions: Vec<&str> = sums
            .keys()
            .filter_map(|field| field.rsplit_once('|').map(|(f, _)| f))
            .collect();
        functions.sort_unstable();
        functions.dedup();
        if functions.is_empty() {
            return Ok(Vec::new());
        }
        let namespace = self.cache.namespace();
        let buckets = Self::buckets(window);
        let mut pipe = redis::pipe();
        for function in &functions {
            let keys: Vec<String> = buckets
                .iter()
                .map(|b| hot_key(namespace, *b, function))
                .collect();
            pipe.cmd("ZUNION")
                .arg(keys.len())
                .arg(&keys)
                .arg("WITHSCORES");
        }
        let mut conn = self.connection()?;
        let unions: Vec<Vec<(String, f64)>> = self.pipeline(&mut conn, &pipe).await?;
        let mut hot = Vec::new();
        for (function, union) in functions.iter().zip(unions) {
            let error = sums
                .get(&format!("{function}|hot_error"))
                .copied()
                .unwrap_or(0);
            let mut keys = union;
            keys.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hot.extend(keys.into_iter().take(top).map(|(key, reads)| HotKey {
                function: (*function).to_owned(),
                key,
                reads: reads as u64,
                error,
            }));
        }
        hot.sort_by(|a, b| b.reads.cmp(&a.reads).then(a.key.cmp(&b.key)));
        Ok(hot)
    }
}

/// Milliseconds since the Unix epoch (0 for none or before it).
fn unix_ms(time: Option<SystemTime>) -> u64 {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn function_stats(function: &str, fields: &HashMap<&str, u64>, window_secs: u64) -> FunctionStats {
    let get = |counter: Counter| fields.get(counter.name()).copied().unwrap_or(0);
    let (hits, l1_hits, misses) = (
        get(Counter::Hits),
        get(Counter::L1Hits),
        get(Counter::Misses),
    );
    let calls = hits + l1_hits + misses;
    let ratio = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let loads = get(Counter::Loads);
    let mut load_times = [0u64; LOAD_BUCKETS];
    for (i, slot) in load_times.iter_mut().enumerate() {
        *slot = fields
            .get(format!("load_b{i}").as_str())
            .copied()
            .unwrap_or(0);
    }
    let per_sec = |n: u64| n as f64 / window_secs.max(1) as f64;
    FunctionStats {
        function: function.to_owned(),
        calls,
        hits,
        l1_hits,
        misses,
        loads,
        errors: get(Counter::Errors),
        hit_rate: ratio(hits + l1_hits, calls),
        l1_share: ratio(l1_hits, hits + l1_hits),
        calls_per_sec: per_sec(calls),
        loads_per_sec: per_sec(loads),
        load_p50_ms: percentile(&load_times, 0.50),
        load_p99_ms: percentile(&load_times, 0.99),
        counts: Counter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), get(*c)))
            .collect(),
    }
}

/// The `q` quantile of bucketed load times, in ms: the geometric middle of its bucket.
fn percentile(buckets: &[u64; LOAD_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let low = bucket_floor_micros(i) as f64;
            let high = bucket_floor_micros(i + 1) as f64;
            return Some((low * high).sqrt() / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::function::load_bucket;

    #[test]
    fn percentiles_of_bucketed_load_times_are_within_a_fifth() {
        let mut buckets = [0u64; LOAD_BUCKETS];
        for ms in 1..=100u64 {
            buckets[load_bucket(Duration::from_millis(ms))] += 1;
        }
        let p50 = percentile(&buckets, 0.5).unwrap();
        let p99 = percentile(&buckets, 0.99).unwrap();
        assert!((40.0..=60.0).contains(&p50), "p50 {p50}");
        assert!((80.0..=120.0).contains(&p99), "p99 {p99}");
        assert_eq!(percentile(&[0; LOAD_BUCKETS], 0.5), None);
    }
}
