//! Every metric this library records through the `metrics` facade. Each is labelled
//! `function` (the function's stable name, never a key or an argument value); the README's
//! "Metrics" table documents them.

/// Hits, labelled `level`: `redis` (the store) or `l1` (the first level).
pub(crate) const HITS: &str = "redis_cached_hits_total";
/// Lookups that found nothing usable.
pub(crate) const MISSES: &str = "redis_cached_misses_total";
/// Loader runs.
pub(crate) const LOADS: &str = "redis_cached_loads_total";
/// Loader run times, in seconds (a histogram).
pub(crate) const LOAD_SECONDS: &str = "redis_cached_load_seconds";
/// Store failures seen by calls (a lookup that failed).
pub(crate) const ERRORS: &str = "redis_cached_errors_total";
/// Failed refreshes (the loader failed) answered with the stale value.
pub(crate) const STALE_IF_ERROR: &str = "redis_cached_stale_if_error_total";
/// Hits served past their TTL, inside the `stale` window.
pub(crate) const STALE_SERVES: &str = "redis_cached_stale_serves_total";
/// Refreshes started by `stale` or `early_refresh`.
pub(crate) const REFRESHES: &str = "redis_cached_refreshes_total";
/// Entries written (fills and puts).
pub(crate) const STORES: &str = "redis_cached_stores_total";
/// Calls that ran uncached.
pub(crate) const UNCACHED: &str = "redis_cached_uncached_total";
/// Misses that waited for another process's load and got its value.
pub(crate) const LOCK_WAITS: &str = "redis_cached_lock_waits_total";
/// Waits for another process's load that gave up and loaded without the lock.
pub(crate) const LOCK_TIMEOUTS: &str = "redis_cached_lock_timeouts_total";
/// Fills refused, labelled `reason`: `lock`, `generation` or `tags`.
pub(crate) const FILLS_REFUSED: &str = "redis_cached_fills_refused_total";
/// Values a waiter did not accept from another caller's load (not known current).
pub(crate) const OUTCOMES_REJECTED: &str = "redis_cached_outcomes_rejected_total";
