//! One function's telemetry: [`FnTelemetry`], the `static` generated code keeps per function
//! (its metric handles), and [`FnCounts`], its counts in one cache.

use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use super::{
    Event, Level, MissReason, Refusal, Telemetry,
    hot::{self, HotKeys},
    names,
};
use crate::telemetry::StripedCounter;

/// A function's counters, in one cache. Monotonic since the cache was built; the fleet flush
/// sends what changed since its last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Counter {
    Hits,
    L1Hits,
    Misses,
    TagMisses,
    DecodeErrors,
    Loads,
    Stores,
    Uncached,
    LockWaits,
    LockTimeouts,
    FillsRefusedLock,
    FillsRefusedGeneration,
    FillsRefusedTags,
    OutcomesRejected,
    StaleServes,
    Refreshes,
    StaleIfError,
    Errors,
}

impl Counter {
    pub(crate) const ALL: [Counter; 18] = [
        Counter::Hits,
        Counter::L1Hits,
        Counter::Misses,
        Counter::TagMisses,
        Counter::DecodeErrors,
        Counter::Loads,
        Counter::Stores,
        Counter::Uncached,
        Counter::LockWaits,
        Counter::LockTimeouts,
        Counter::FillsRefusedLock,
        Counter::FillsRefusedGeneration,
        Counter::FillsRefusedTags,
        Counter::OutcomesRejected,
        Counter::StaleServes,
        Counter::Refreshes,
        Counter::StaleIfError,
        Counter::Errors,
    ];

    /// The counter's field name in the fleet counters (and `redis-cached stats --json`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Counter::Hits => "hits",
            Counter::L1Hits => "l1_hits",
            Counter::Misses => "misses",
            Counter::TagMisses => "tag_misses",
            Counter::DecodeErrors => "decode_errors",
            Counter::Loads => "loads",
            Counter::Stores => "stores",
            Counter::Uncached => "uncached",
            Counter::LockWaits => "lock_waits",
            Counter::LockTimeouts => "lock_timeouts",
            Counter::FillsRefusedLock => "fills_refused_lock",
            Counter::FillsRefusedGeneration => "fills_refused_generation",
            Counter::FillsRefusedTags => "fills_refused_tags",
            Counter::OutcomesRejected => "outcomes_rejected",
            Counter::StaleServes => "stale_serves",
            Counter::Refreshes => "refreshes",
            Counter::StaleIfError => "stale_if_error",
            Counter::Errors => "errors",
        }
    }

    #[inline]
    fn of(event: &Event<'_>) -> Option<Counter> {
        Some(match event {
            Event::Hit(Level::Store, _) => Counter::Hits,
            Event::Hit(Level::First, _) => Counter::L1Hits,
            Event::Miss(..) => Counter::Misses,
            Event::Loaded(_) => Counter::Loads,
            Event::Stored => Counter::Stores,
            Event::Uncached => Counter::Uncached,
            Event::LockWaited => Counter::LockWaits,
            Event::LockTimedOut => Counter::LockTimeouts,
            Event::FillRefused(Refusal::Lock) => Counter::FillsRefusedLock,
            Event::FillRefused(Refusal::Generation) => Counter::FillsRefusedGeneration,
            Event::FillRefused(Refusal::Tags) => Counter::FillsRefusedTags,
            Event::OutcomeRejected => Counter::OutcomesRejected,
            Event::StaleServed => Counter::StaleServes,
            Event::RefreshStarted => Counter::Refreshes,
            Event::StaleIfError => Counter::StaleIfError,
            Event::StoreFailed => Counter::Errors,
        })
    }
}

/// Load times in log-linear buckets: four per power of two of microseconds, so a percentile
/// read from them is within 19% of the true one.
pub(crate) const LOAD_BUCKETS: usize = 4 * 40;

/// The bucket of a load time.
pub(crate) fn load_bucket(took: Duration) -> usize {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
    let exponent = 63 - micros.leading_zeros() as usize;
    let fraction = if exponent >= 2 {
        ((micros >> (exponent - 2)) & 3) as usize
    } else {
        (micros << (2 - exponent)) as usize & 3
    };
    (exponent * 4 + fraction).min(LOAD_BUCKETS - 1)
}

/// The smallest load time of a bucket, in microseconds.
pub(crate) fn bucket_floor_micros(bucket: usize) -> u64 {
    let (exponent, fraction) = (bucket / 4, (bucket % 4) as u64);
    if exponent >= 2 {
        (4 + fraction) << (exponent - 2)
    } else {
        ((4 + fraction) << exponent) / 4
    }
}

/// One function's counts in one cache.
pub(crate) struct FnCounts {
    pub(crate) name: &'static str,
    counts: [AtomicU64; Counter::ALL.len()],
    /// First-level hits come from every thread at once: striped.
    l1_hits: StripedCounter,
    load_times: [AtomicU64; LOAD_BUCKETS],
    load_micros: AtomicU64,
    last_load_micros: AtomicU64,
    pub(crate) hot: Mutex<HotKeys>,
}

impl FnCounts {
    pub(crate) fn new(name: &'static str) -> Self {
        FnCounts {
            name,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            l1_hits: StripedCounter::default(),
            load_times: std::array::from_fn(|_| AtomicU64::new(0)),
            load_micros: AtomicU64::new(0),
            last_load_micros: AtomicU64::new(0),
            hot: Mutex::new(HotKeys::default()),
        }
    }

    pub(crate) fn get(&self, counter: Counter) -> u64 {
        match counter {
            Counter::L1Hits => self.l1_hits.get(),
            _ => self.counts[counter as usize].load(Ordering::Relaxed),
        }
    }

    /// Every load-time bucket's count, and the sum of load times in microseconds.
    pub(crate) fn load_times(&self) -> ([u64; LOAD_BUCKETS], u64) {
        (
            std::array::from_fn(|i| self.load_times[i].load(Ordering::Relaxed)),
            self.load_micros.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn last_load_time(&self) -> Option<Duration> {
        match self.last_load_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    #[inline]
    pub(crate) fn record(&self, event: &Event<'_>) {
        match event {
            Event::Hit(Level::First, key) => {
                self.l1_hits.bump();
                HotKeys::sample(&self.hot, key, hot::FIRST_LEVEL_HIT);
                return;
            }
            Event::Hit(Level::Store, key) | Event::Miss(MissReason::Absent, key) => {
                HotKeys::sample(&self.hot, key, hot::REDIS_READ);
            }
            Event::Miss(reason, key) => {
                HotKeys::sample(&self.hot, key, hot::REDIS_READ);
                let also = match reason {
                    MissReason::TagInvalidated => Counter::TagMisses,
                    _ => Counter::DecodeErrors,
                };
                self.counts[also as usize].fetch_add(1, Ordering::Relaxed);
            }
            Event::Loaded(took) => {
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
                self.load_times[load_bucket(*took)].fetch_add(1, Ordering::Relaxed);
                self.load_micros.fetch_add(micros, Ordering::Relaxed);
                self.last_load_micros.store(micros, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(counter) = Counter::of(event) {
            self.counts[counter as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A function's telemetry: its metric handles (registered with the `metrics` recorder on the
/// first call and reused, since registering on every call cost a measurable share of a hit;
/// install your recorder before the first cached call) and its counts in the first caches that
/// served it. Generated code keeps one in a `static` per function.
pub struct FnTelemetry {
    handles: OnceLock<MetricHandles>,
    /// The counts of the first caches that served this function, found without a lock (a
    /// process may build a second cache: a health check's, or one rebuilt on a reload).
    caches: [OnceLock<(u64, Arc<FnCounts>)>; LOCK_FREE_CACHES],
}

/// Caches per function whose counts are found without a lock; others go through the cache's
/// registry (a mutex).
const LOCK_FREE_CACHES: usize = 4;

impl std::fmt::Debug for FnTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTelemetry")
            .field("registered", &self.handles.get().is_some())
            .finish()
    }
}

impl FnTelemetry {
    /// Empty; generated code keeps one in a `static` per function.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FnTelemetry {
            handles: OnceLock::new(),
            caches: [const { OnceLock::new() }; LOCK_FREE_CACHES],
        }
    }

    /// Runs `f` on `function`'s counts in `telemetry`'s cache.
    #[inline(always)]
    pub(crate) fn with_counts<R>(
        &self,
        telemetry: &Telemetry,
        function: &'static str,
        f: impl FnOnce(&FnCounts) -> R,
    ) -> R {
        for slot in &self.caches {
            let (id, counts) = slot.get_or_init(|| (telemetry.id, telemetry.counts(function)));
            if *id == telemetry.id {
                return f(counts);
            }
        }
        f(&telemetry.counts(function))
    }

    pub(crate) fn handles(&self, function: &'static str) -> &MetricHandles {
        self.handles
            .get_or_init(|| MetricHandles::register(function))
    }
}

/// One function's handles on the `metrics` recorder.
pub(crate) struct MetricHandles {
    hits: metrics::Counter,
    l1_hits: metrics::Counter,
    misses: metrics::Counter,
    loads: metrics::Counter,
    load_seconds: metrics::Histogram,
    errors: metrics::Counter,
    stale: metrics::Counter,
    stale_if_error: metrics::Counter,
    refreshes: metrics::Counter,
    stores: metrics::Counter,
    uncached: metrics::Counter,
    lock_waits: metrics::Counter,
    lock_timeouts: metrics::Counter,
    fills_refused: [metrics::Counter; 3],
    outcomes_rejected: metrics::Counter,
}

impl MetricHandles {
    fn register(function: &'static str) -> Self {
        let counter = |name: &'static str| metrics::counter!(name, "function" => function);
        let refused = |reason: &'static str| metrics::counter!(names::FILLS_REFUSED, "function" => function, "reason" => reason);
        MetricHandles {
            hits: metrics::counter!(names::HITS, "function" => function, "level" => "redis"),
            l1_hits: metrics::counter!(names::HITS, "function" => function, "level" => "l1"),
            misses: counter(names::MISSES),
            loads: counter(names::LOADS),
            load_seconds: metrics::histogram!(names::LOAD_SECONDS, "function" => function),
            errors: counter(names::ERRORS),
            stale: counter(names::STALE_SERVES),
            stale_if_error: counter(names::STALE_IF_ERROR),
            refreshes: counter(names::REFRESHES),
            stores: counter(names::STORES),
            uncached: counter(names::UNCACHED),
            lock_waits: counter(names::LOCK_WAITS),
            lock_timeouts: counter(names::LOCK_TIMEOUTS),
            fills_refused: [refused("lock"), refused("generation"), refused("tags")],
            outcomes_rejected: counter(names::OUTCOMES_REJECTED),
        }
    }

    #[inline]
    pub(crate) fn record(&self, event: &Event<'_>) {
        let counter = match event {
            Event::Hit(Level::Store, _) => &self.hits,
            Event::Hit(Level::First, _) => &self.l1_hits,
            Event::Miss(..) => &self.misses,
            Event::Loaded(took) => {
                self.load_seconds.record(took.as_secs_f64());
                &self.loads
            }
            Event::Stored => &self.stores,
            Event::Uncached => &self.uncached,
            Event::LockWaited => &self.lock_waits,
            Event::LockTimedOut => &self.lock_timeouts,
            Event::FillRefused(refusal) => &self.fills_refused[*refusal as usize],
            Event::OutcomeRejected => &self.outcomes_rejected,
            Event::StaleServed => &self.stale,
            Event::RefreshStarted => &self.refreshes,
            Event::StaleIfError => &self.stale_if_error,
            Event::StoreFailed => &self.errors,
        };
        counter.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_buckets_are_ordered_and_within_a_fifth() {
        let mut last = 0;
        for micros in [1u64, 2, 3, 4, 5, 7, 8, 100, 999, 1_000, 65_536, 10_000_000] {
            let bucket = load_bucket(Duration::from_micros(micros));
            assert!(bucket >= last, "{micros} µs");
            last = bucket;
            let floor = bucket_floor_micros(bucket);
            assert!(floor <= micros, "{micros} µs in a bucket from {floor}");
            assert!(
                micros * 4 < floor * 5 + 4,
                "{micros} µs in a bucket from {floor}"
            );
        }
    }
}
