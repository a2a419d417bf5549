//! [`Stats`]: a cache's totals, summed from its functions' counts when read.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`Cache`](crate::Cache)'s counters since it was built.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let cache = cache_runtime::Cache::builder().url("mem://").build().await.unwrap();
/// let stats = cache.stats();
/// assert_eq!(stats.hits + stats.misses, 0);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups answered from the store.
    pub hits: u64,
    /// Lookups that found nothing usable (absent or undecodable).
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Entries written.
    pub stores: u64,
    /// Entries that did not decode (corrupt, truncated, another type or version, too large).
    pub decode_errors: u64,
    /// Redis commands that failed or timed out.
    pub backend_errors: u64,
    /// Of those, the ones that timed out.
    pub timeouts: u64,
    /// Times the circuit breaker opened.
    pub breaker_opened: u64,
    /// Calls that skipped Redis because the breaker was open.
    pub breaker_rejections: u64,
    /// Times the master changed under [`sentinel`](crate::CacheBuilder::sentinel), the first
    /// resolution included (so 2 after one failover); 0 otherwise.
    pub master_switches: u64,
    /// Calls that ran uncached (no usable key, or the value could not be encoded or was too large).
    pub uncached: u64,
    /// Misses that waited for another process's load (behind its lock) and got its value.
    pub lock_waits: u64,
    /// Waits that gave up after `lock_wait` and loaded without the lock.
    pub lock_timeouts: u64,
    /// Lookups that found an entry whose tags were invalidated since it was loaded.
    pub tag_misses: u64,
    /// Fills refused because an invalidation, put or refresh overtook the load, or its lock
    /// expired and was taken (the sum of the three `fills_refused_*` counters).
    pub fills_rejected: u64,
    /// Fills refused because the load's lock had expired and been taken by another.
    pub fills_refused_lock: u64,
    /// Fills refused because the entry's generation changed (invalidate, put, refresh) or its
    /// key was lost since the load began.
    pub fills_refused_generation: u64,
    /// Fills whose tags were invalidated while the load ran (the entry stored misses).
    pub fills_refused_tags: u64,
    /// Values a waiter did not accept from another caller's load, because they were not known
    /// to be current after the waiter's call began; the waiter read again.
    pub outcomes_rejected: u64,
    /// Hits served past their TTL, inside the `stale` window.
    pub stale_serves: u64,
    /// Refreshes started by `stale` or `early_refresh`.
    pub refreshes: u64,
    /// Failed loads answered with the stale value instead.
    pub stale_if_error: u64,
    /// Calls answered by the first level (`l1 = true`), without Redis. Not part of `hits`.
    pub l1_hits: u64,
    /// Whether the first level's invalidation stream is confirmed live right now (its entries
    /// are served only while it is; `false` before the first `l1` call starts it).
    pub l1_live: bool,
    /// Values read from Redis that did not enter the first level because an invalidation of
    /// their key or a tag arrived between the read's send and its reply.
    pub l1_refused: u64,
    /// Entries in the first level.
    pub l1_entries: u64,
    /// Weight of the first level's entries, in bytes (see `CacheBuilder::l1_capacity`).
    pub l1_bytes: u64,
}

/// What the first level reports, merged into [`Stats`] (all zero without one).
#[derive(Default)]
pub(crate) struct FirstLevelCounts {
    pub(crate) live: bool,
    pub(crate) refused: u64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// What the connection counts (failures, breakers), merged into [`Stats`].
pub(crate) struct LinkCounts {
    pub(crate) backend_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) breaker_opened: u64,
    pub(crate) breaker_rejections: u64,
    pub(crate) master_switches: u64,
}

/// A counter bumped from every thread on a hot path: one slot per thread (by a number each
/// thread takes once), each on its own cache line, summed when read.
pub(crate) struct StripedCounter {
    slots: [Padded; 16],
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

impl Default for StripedCounter {
    fn default() -> Self {
        StripedCounter {
            slots: std::array::from_fn(|_| Padded::default()),
        }
    }
}

impl StripedCounter {
    #[inline]
    pub(crate) fn bump(&self) {
        self.slots[super::thread::slot() % 16]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl Stats {
    /// The totals of `telemetry`'s functions, with what the connection and the first level
    /// count.
    pub(crate) fn sum(
        telemetry: &super::Telemetry,
        link: LinkCounts,
        l1: FirstLevelCounts,
    ) -> Stats {
        use super::Counter as C;
        let mut totals = [0u64; C::ALL.len()];
        for function in telemetry.functions() {
            for counter in C::ALL {
                totals[counter as usize] += function.get(counter);
            }
        }
        let get = |c: C| totals[c as usize];
        let refused = [
            C::FillsRefusedLock,
            C::FillsRefusedGeneration,
            C::FillsRefusedTags,
        ];
        Stats {
            hits: get(C::Hits),
            misses: get(C::Misses),
            loads: get(C::Loads),
            stores: get(C::Stores),
            decode_errors: get(C::DecodeErrors),
            backend_errors: link.backend_errors,
            timeouts: link.timeouts,
            breaker_opened: link.breaker_opened,
            breaker_rejections: link.breaker_rejections,
            master_switches: link.master_switches,
            uncached: get(C::Uncached),
            lock_waits: get(C::LockWaits),
            lock_timeouts: get(C::LockTimeouts),
            fills_rejected: refused.into_iter().map(get).sum(),
            fills_refused_lock: get(C::FillsRefusedLock),
            fills_refused_generation: get(C::FillsRefusedGeneration),
            fills_refused_tags: get(C::FillsRefusedTags),
            outcomes_rejected: get(C::OutcomesRejected),
            tag_misses: get(C::TagMisses),
            stale_serves: get(C::StaleServes),
            refreshes: get(C::Refreshes),
            stale_if_error: get(C::StaleIfError),
            l1_hits: get(C::L1Hits),
            l1_live: l1.live,
            l1_refused: l1.refused,
            l1_entries: l1.entries,
            l1_bytes: l1.bytes,
        }
    }
}
