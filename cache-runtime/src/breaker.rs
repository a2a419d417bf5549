//! Circuit breaker in front of Redis.
//!
//! After `threshold` consecutive failures (errors or timeouts) the breaker opens: calls skip
//! Redis entirely (no network I/O, no timeout paid) and fall back to the loader. After the open
//! period one call is let through as a probe; its success closes the breaker, its failure opens
//! it again for twice as long (capped). Open periods are jittered by ±25 % per process, so a
//! fleet does not probe a recovering Redis in lockstep.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Closed: call Redis.
    Call,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open: do not call Redis.
    Reject,
}

pub(crate) struct Breaker {
    epoch: Instant,
    threshold: u32,
    base_open: Duration,
    max_open: Duration,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker is open; 0 when closed.
    open_until_ms: AtomicU64,
    /// How many times in a row it opened without a successful call (for backoff).
    open_streak: AtomicU32,
    probing: AtomicBool,
    opened_total: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, base_open: Duration, max_open: Duration) -> Self {
        Breaker {
            epoch: Instant::now(),
            threshold: threshold.max(1),
            base_open,
            max_open,
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            open_streak: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            opened_total: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that "open until" is never 0, which means closed.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Decides whether the next call may reach Redis.
    pub(crate) fn permit(&self) -> Permit {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return Permit::Call;
        }
        if self.now_ms() < open_until {
            return Permit::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Permit::Probe
        } else {
            Permit::Reject
        }
    }

    /// Records a successful call.
    pub(crate) fn on_success(&self, permit: Permit) {
        // Read before writing: successes are every call, and a store on each would bounce this
        // cache line between cores that only need to read it.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
        if permit == Permit::Probe || self.open_until_ms.load(Ordering::Acquire) != 0 {
            self.open_streak.store(0, Ordering::Release);
            self.open_until_ms.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::info!("redis reachable again; circuit breaker closed");
        }
    }

    /// Records a failed call; returns true if this failure opened the breaker.
    pub(crate) fn on_failure(&self, permit: Permit) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if permit != Permit::Probe && failures < self.threshold {
            return false;
        }
        if permit != Permit::Probe && self.open_until_ms.load(Ordering::Acquire) != 0 {
            // Already open (a call that started before it opened).
            return false;
        }
        let streak = self.open_streak.fetch_add(1, Ordering::AcqRel).min(16);
        let open_for = self
            .base_open
            .saturating_mul(1u32 << streak)
            .min(self.max_open)
            .mul_f64(0.75 + fastrand::f64() * 0.5);
        let until = self.now_ms() + u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX / 2);
        self.open_until_ms.store(until, Ordering::Release);
        self.probing.store(false, Ordering::Release);
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether calls are currently being kept away from Redis.
    pub(crate) fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    /// How many times the breaker has opened.
    pub(crate) fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_rejects() {
        let b = Breaker::new(3, Duration::from_secs(60), Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(b.permit(), Permit::Call);
            assert!(!b.on_failure(Permit::Call));
        }
        assert!(b.on_failure(Permit::Call));
        assert_eq!(b.permit(), Permit::Reject);
        assert_eq!(b.opened_total(), 1);
    }

    #[test]
    fn one_probe_after_open_period_and_success_closes() {
        let b = Breaker::new(1, Duration::ZERO, Duration::ZERO);
        assert!(b.on_failure(Permit::Call));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject, "only one probe at a time");
        b.on_success(Permit::Probe);
        assert_eq!(b.permit(), Permit::Call);
        assert!(!b.is_open());
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::ZERO, Duration::ZERO);
        b.on_failure(Permit::Call);
        assert_eq!(b.permit(), Permit::Probe);
        assert!(b.on_failure(Permit::Probe));
        assert_eq!(b.opened_total(), 2);
    }
}
