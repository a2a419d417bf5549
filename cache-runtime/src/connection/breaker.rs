//! The circuit breaker of one node.
//!
//! After `threshold` consecutive failures (errors or timeouts) the breaker opens: calls skip the
//! node entirely (no network I/O, no timeout paid) and fall back to the loader. While it is
//! open, a background task probes the node with `PING` once per period, jittered by ±25 % per
//! probe so a fleet does not probe in lockstep; the first answer closes it, so hits resume
//! within about a period of the node answering, and no caller pays for a probe.
//!
//! If that task has not reported for two periods plus an operation timeout (it was never
//! spawned, its runtime shut down, or it is stuck), the next caller probes instead: one at a
//! time, through a [`ProbeGuard`] that frees the probe slot when it is dropped, so a cancelled
//! caller cannot keep the breaker open.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// What the breaker lets a call do.
pub(crate) enum Permit<'a> {
    /// Closed: call the node.
    Call,
    /// Open, and the background probe is silent: this call probes.
    Probe(ProbeGuard<'a>),
    /// Open: do not call the node.
    Reject,
}

/// The one caller probe of an open breaker. Dropped without a report (the call was
/// cancelled), it frees the slot for the next caller.
pub(crate) struct ProbeGuard<'a> {
    breaker: &'a Breaker,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.breaker.probing.store(false, Ordering::Release);
    }
}

pub(crate) struct Breaker {
    epoch: Instant,
    threshold: u32,
    period: Duration,
    /// Past this silence of the background probe, callers probe themselves.
    patience: Duration,
    consecutive_failures: AtomicU32,
    open: AtomicBool,
    /// A caller's probe is out.
    probing: AtomicBool,
    /// The background probe task is alive.
    prober: AtomicBool,
    /// When the background probe last reported (or the breaker opened), ms since `epoch`.
    last_probe_ms: AtomicU64,
}

impl Breaker {
    /// A breaker that opens after `threshold` failures and probes every `period`; `timeout`
    /// is how long one probe may take.
    pub(crate) fn new(threshold: u32, period: Duration, timeout: Duration) -> Self {
        Breaker {
            epoch: Instant::now(),
            threshold: threshold.max(1),
            period,
            patience: period.saturating_mul(2).saturating_add(timeout),
            consecutive_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            prober: AtomicBool::new(false),
            last_probe_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Decides whether the next call may reach the node.
    pub(crate) fn permit(&self) -> Permit<'_> {
        if !self.open.load(Ordering::Acquire) {
            return Permit::Call;
        }
        let silent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_probe_ms.load(Ordering::Acquire)),
        );
        if silent >= self.patience
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Permit::Probe(ProbeGuard { breaker: self });
        }
        Permit::Reject
    }

    /// Records a successful call; returns true if it closed the breaker.
    pub(crate) fn on_success(&self) -> bool {
        // Read before writing: successes are every call, and a store on each would bounce this
        // cache line between cores that only need to read it.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
        self.open.load(Ordering::Acquire) && self.open.swap(false, Ordering::AcqRel)
    }

    /// Records a failed call; returns true if this failure opened the breaker.
    pub(crate) fn on_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.threshold || self.open.load(Ordering::Acquire) {
            return false;
        }
        // Callers leave the probing to the background task for a while.
        self.last_probe_ms.store(self.now_ms(), Ordering::Release);
        !self.open.swap(true, Ordering::AcqRel)
    }

    /// The background probe reported (whatever its answer).
    pub(crate) fn probed(&self) {
        self.last_probe_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Claims the background probe role; false if a probe task is already alive.
    pub(crate) fn start_prober(&self) -> bool {
        !self.prober.swap(true, Ordering::AcqRel)
    }

    /// The background probe task ended.
    pub(crate) fn prober_ended(&self) {
        self.prober.store(false, Ordering::Release);
    }

    /// Whether a background probe task is alive.
    pub(crate) fn has_prober(&self) -> bool {
        self.prober.load(Ordering::Acquire)
    }

    /// How long the background probe waits before its next probe: the period ±25 %.
    pub(crate) fn next_probe_in(&self) -> Duration {
        // Bounded both ways: no busy loop for a zero period, no overflow for a huge one.
        self.period
            .clamp(Duration::from_millis(10), Duration::from_secs(86_400))
            .mul_f64(0.75 + fastrand::f64() * 0.5)
    }

    /// Whether calls are currently being kept away from the node.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether the node's last call failed (or it is kept away).
    pub(crate) fn is_failing(&self) -> bool {
        self.consecutive_failures.load(Ordering::Acquire) != 0 || self.is_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_rejects() {
        let b = Breaker::new(3, Duration::from_secs(60), Duration::from_secs(1));
        for _ in 0..2 {
            assert!(matches!(b.permit(), Permit::Call));
            assert!(!b.on_failure());
        }
        assert!(b.on_failure());
        assert!(matches!(b.permit(), Permit::Reject));
        assert!(!b.on_failure(), "opens once");
    }

    #[test]
    fn a_silent_background_probe_lets_one_caller_probe() {
        let b = Breaker::new(1, Duration::ZERO, Duration::ZERO);
        assert!(b.on_failure());
        let probe = b.permit();
        assert!(matches!(probe, Permit::Probe(_)));
        assert!(
            matches!(b.permit(), Permit::Reject),
            "only one probe at a time"
        );
        drop(probe);
        assert!(b.on_success());
        assert!(matches!(b.permit(), Permit::Call));
        assert!(!b.is_open());
    }

    #[test]
    fn a_dropped_probe_frees_the_slot() {
        let b = Breaker::new(1, Duration::ZERO, Duration::ZERO);
        b.on_failure();
        let probe = b.permit();
        assert!(matches!(probe, Permit::Probe(_)));
        drop(probe); // cancelled before it reported
        assert!(
            matches!(b.permit(), Permit::Probe(_)),
            "the next caller probes"
        );
    }

    #[test]
    fn callers_leave_probing_to_a_reporting_background_task() {
        let b = Breaker::new(1, Duration::from_secs(60), Duration::from_secs(1));
        b.on_failure();
        b.probed();
        assert!(matches!(b.permit(), Permit::Reject));
    }
}
