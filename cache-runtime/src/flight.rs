//! In-process single-flight: concurrent callers of one key in one process share one load.
//!
//! The first caller of a key becomes the leader; later callers wait on a `watch` channel for
//! the leader's outcome: the stored envelope bytes (waiters decode them, so values need no
//! `Clone`), a shared error, or "abandoned". A leader that is cancelled or panics drops its
//! [`LeaderGuard`], which publishes "abandoned"; waiters then regroup behind one new leader.
//! A leader also beats a heartbeat while it works; a waiter that sees no heartbeat for its
//! patience period (a leader future nobody polls, moka issue 240) takes over.

use std::{
    any::Any,
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// What a flight ended with.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// Not finished yet.
    Running,
    /// Envelope bytes of the value (or of a negative result).
    Value(Arc<[u8]>),
    /// The loader failed and its error can be shared (`E: Clone`).
    Error(Arc<dyn Any + Send + Sync>),
    /// The leader gave up, was cancelled or panicked: regroup.
    Abandoned,
}

pub(crate) struct Flight {
    outcome: watch::Sender<Outcome>,
    epoch: Instant,
    heartbeat_ms: AtomicU64,
}

impl Flight {
    fn beat(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(now, Ordering::Relaxed);
    }

    fn since_heartbeat(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The flights of one cache, by entry key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

/// Either lead the load of a key or wait for its leader.
pub(crate) enum Role {
    Leader(LeaderGuard),
    Waiter(Arc<Flight>),
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Flight>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the running flight of `key`, or starts one and leads it.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut map = self.lock();
        if let Some(flight) = map.get(key) {
            return Role::Waiter(flight.clone());
        }
        let flight = Arc::new(Flight {
            outcome: watch::Sender::new(Outcome::Running),
            epoch: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
        });
        map.insert(key.to_owned(), flight.clone());
        Role::Leader(LeaderGuard {
            flights: self.clone(),
            key: key.to_owned(),
            flight,
            done: false,
        })
    }

    /// Stops new callers of `key` from joining its running flight (after an invalidation, a
    /// load that began earlier must not serve callers that arrive later). Its waiters still
    /// get its outcome.
    pub(crate) fn detach(&self, key: &str) {
        self.lock().remove(key);
    }

    /// [`detach`](Self::detach) for every key (a tag invalidation may concern any of them).
    pub(crate) fn detach_all(&self) {
        self.lock().clear();
    }

    /// Whether some caller in this process is loading `key` right now.
    pub(crate) fn is_running(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    /// Replaces a stalled flight with a new one led by the caller, if it is still the current one.
    fn take_over(self: &Arc<Self>, key: &str, stalled: &Arc<Flight>) -> Option<LeaderGuard> {
        let mut map = self.lock();
        match map.get(key) {
            Some(current) if Arc::ptr_eq(current, stalled) => {
                stalled.outcome.send_replace(Outcome::Abandoned);
                map.remove(key);
                drop(map);
                match self.join(key) {
                    Role::Leader(guard) => Some(guard),
                    Role::Waiter(_) => None,
                }
            }
            _ => None,
        }
    }
}

/// Held by the leader of a flight. Dropping it without [`finish`](Self::finish) (cancellation,
/// panic, early return) publishes [`Outcome::Abandoned`].
pub(crate) struct LeaderGuard {
    flights: Arc<Flights>,
    key: String,
    flight: Arc<Flight>,
    done: bool,
}

impl LeaderGuard {
    /// Tells waiters the leader is still working.
    pub(crate) fn beat(&self) {
        self.flight.beat();
    }

    /// Whether any caller is waiting on this flight right now.
    pub(crate) fn has_waiters(&self) -> bool {
        self.flight.outcome.receiver_count() > 0
    }

    /// Publishes the outcome and ends the flight.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let mut map = self.flights.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        self.flight.outcome.send_replace(outcome);
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

/// What a waiter gets.
pub(crate) enum Waited {
    Outcome(Outcome),
    /// The leader stalled and this caller now leads.
    TookOver(LeaderGuard),
}

/// Waits for `flight` to finish; takes over if its leader shows no sign of life for `patience`.
pub(crate) async fn wait(
    flights: &Arc<Flights>,
    key: &str,
    flight: Arc<Flight>,
    patience: Duration,
) -> Waited {
    let mut rx = flight.outcome.subscribe();
    loop {
        let changed =
            tokio::time::timeout(patience, rx.wait_for(|o| !matches!(o, Outcome::Running))).await;
        match changed {
            Ok(Ok(outcome)) => return Waited::Outcome(outcome.clone()),
            // The sender lives in the flight we hold: it cannot be dropped while we wait.
            Ok(Err(_)) => return Waited::Outcome(Outcome::Abandoned),
            Err(_) if flight.since_heartbeat() < patience => continue,
            Err(_) => {
                return match flights.take_over(key, &flight) {
                    Some(guard) => Waited::TookOver(guard),
                    None => Waited::Outcome(Outcome::Abandoned),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(guard) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Waiter(flight) = flights.join("k") else {
            panic!("second caller waits")
        };
        let waiter = tokio::spawn({
            let flights = flights.clone();
            async move { wait(&flights, "k", flight, Duration::from_secs(30)).await }
        });
        drop(guard);
        let waited = waiter.await.expect("waiter task");
        assert!(matches!(waited, Waited::Outcome(Outcome::Abandoned)));
        assert!(!flights.is_running("k"), "the flight is gone");
    }

    #[tokio::test]
    async fn a_silent_leader_is_taken_over() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(_stalled) = flights.join("k") else {
            panic!("leads")
        };
        let Role::Waiter(flight) = flights.join("k") else {
            panic!("waits")
        };
        let waited = wait(&flights, "k", flight, Duration::from_millis(20)).await;
        assert!(matches!(waited, Waited::TookOver(_)));
    }
}
