//! Telemetry: everything a call does that is worth counting is one [`Event`], recorded with
//! one call ([`Cache::record`]). That call feeds, from the same counts:
//!
//! - [`Cache::stats`](crate::Cache::stats), this process's totals;
//! - the `metrics` facade, per function ([`names`] lists every metric);
//! - `tracing`, at `TRACE` for every event but hits, which are counted only (spans for calls
//!   that do work are opened by the read path);
//! - the fleet counters and hot keys that [`fleet`] flushes to Redis every few seconds.
//!
//! Per function and cache, counts live in a [`FnCounts`]; the generated `static`
//! [`FnTelemetry`] finds the counts of the first cache that served the function without a
//! lock (most processes have one cache), others through the cache's registry.

pub(crate) mod fleet;
pub(crate) mod function;
pub(crate) mod hot;
pub(crate) mod names;
mod stats;
mod thread;

use std::time::Duration;

pub use self::function::FnTelemetry;
pub(crate) use self::function::{Counter, FnCounts};
pub use self::stats::Stats;
pub(crate) use self::stats::{FirstLevelCounts, LinkCounts, StripedCounter};

/// Where a hit was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// This process's first level (`l1 = true`).
    First,
    /// Redis (or the embedded store).
    Store,
}

/// Why a lookup missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissReason {
    /// No entry.
    Absent,
    /// An entry whose tags were invalidated since it was loaded.
    TagInvalidated,
    /// An entry that did not decode (corrupt, truncated, another type or version).
    Undecodable,
}

/// Why a fill was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The load's lock expired and was taken by another.
    Lock,
    /// The entry's generation changed (invalidate, put, refresh) or its key was lost.
    Generation,
    /// A tag was invalidated while the load ran.
    Tags,
}

/// One thing a call did.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'k> {
    /// Answered from a level, with the entry key (sampled for hot keys).
    Hit(Level, &'k str),
    /// The lookup found nothing usable.
    Miss(MissReason, &'k str),
    /// The loader ran, for this long.
    Loaded(Duration),
    /// An entry was written (a fill or a put).
    Stored,
    /// The call ran uncached (no usable key, or a value that could not be stored).
    Uncached,
    /// A miss waited for another process's load and got its value.
    LockWaited,
    /// A wait for another process's load gave up and loaded without the lock.
    LockTimedOut,
    /// A fill was refused.
    FillRefused(Refusal),
    /// A waiter did not accept another caller's value (not known current) and read again.
    OutcomeRejected,
    /// A hit served past its TTL, inside the `stale` window.
    StaleServed,
    /// A refresh (by `stale` or `early_refresh`) started.
    RefreshStarted,
    /// A failed refresh answered with the stale value.
    StaleIfError,
    /// The store failed this call's lookup.
    StoreFailed,
}

impl Event<'_> {
    /// The event's name in traces and the metric it counts under.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::Hit(Level::First, _) => "l1_hit",
            Event::Hit(Level::Store, _) => "hit",
            Event::Miss(..) => "miss",
            Event::Loaded(_) => "load",
            Event::Stored => "store",
            Event::Uncached => "uncached",
            Event::LockWaited => "lock_wait",
            Event::LockTimedOut => "lock_timeout",
            Event::FillRefused(_) => "fill_refused",
            Event::OutcomeRejected => "outcome_rejected",
            Event::StaleServed => "stale_serve",
            Event::RefreshStarted => "refresh",
            Event::StaleIfError => "stale_if_error",
            Event::StoreFailed => "store_error",
        }
    }
}

/// A cache's telemetry: the registry of its functions' counts, and the fleet flush's state.
pub(crate) struct Telemetry {
    /// Unique among the process's caches (never reused, unlike an address).
    id: u64,
    functions: std::sync::Mutex<Vec<std::sync::Arc<FnCounts>>>,
    /// Whether spans and logs may carry keys (`CacheBuilder::record_keys`).
    pub(crate) record_keys: bool,
    /// Whether counts are flushed to Redis (`CacheBuilder::fleet_telemetry`).
    pub(crate) fleet: bool,
    /// This process among the reporters.
    pub(crate) process: String,
    pub(crate) flushed: tokio::sync::Mutex<fleet::Flushed>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Telemetry {
    pub(crate) fn new(record_keys: bool, fleet: bool) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Telemetry {
            id,
            functions: std::sync::Mutex::default(),
            record_keys,
            fleet,
            process: fleet::process_name(id),
            flushed: tokio::sync::Mutex::default(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ends the periodic flush (`Cache::shutdown`).
    pub(crate) fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counts of `function` in this cache, registered on first use.
    fn counts(&self, function: &'static str) -> std::sync::Arc<FnCounts> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counts) = functions.iter().find(|c| c.name == function) {
            return counts.clone();
        }
        let counts = std::sync::Arc::new(FnCounts::new(function));
        functions.push(counts.clone());
        counts
    }

    /// Every function this cache has counted.
    pub(crate) fn functions(&self) -> Vec<std::sync::Arc<FnCounts>> {
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A function, as telemetry knows it: owned, so background work can record for it.
#[derive(Clone, Copy)]
pub(crate) struct FnId {
    pub(crate) name: &'static str,
    pub(crate) telemetry: &'static FnTelemetry,
}

impl Telemetry {
    /// Records one event of a call of `function`: counts, metrics, trace. Inlined, so the
    /// dispatch on a constant event folds away at each call site (a hit is a few adds).
    #[inline(always)]
    pub(crate) fn record(&self, function: FnId, event: Event<'_>) {
        function
            .telemetry
            .with_counts(self, function.name, |counts| counts.record(&event));
        function.telemetry.handles(function.name).record(&event);
        // Hits are counted only: even a disabled event's level check is a measurable share of
        // a first-level hit.
        if !matches!(event, Event::Hit(..)) {
            tracing::trace!(
                function = function.name,
                event = event.name(),
                "redis_cached"
            );
        }
    }

    /// The last load time of `function` here, for the default `lock_wait`.
    pub(crate) fn last_load_time(&self, function: FnId) -> Option<Duration> {
        function
            .telemetry
            .with_counts(self, function.name, FnCounts::last_load_time)
    }
}
