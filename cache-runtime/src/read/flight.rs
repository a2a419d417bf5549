//! In-process single-flight: concurrent callers of one key in one process share one load,
//! and none of them waits without a deadline.
//!
//! The first caller of a key leads; later callers wait on a `watch` channel for its
//! [`Outcome`]. The leader sets the flight's deadline for each phase it enters (claiming,
//! waiting for another process's lock, loading, filling), each bounded. A waiter whose
//! deadline passes while the leader is silent (cancelled without being dropped, hung, or a
//! future nobody polls: moka issue 240) replaces the flight once and leads the replacement
//! (the spec's "loads through its own process's single-flight"). A replacement keeps the
//! deadline it was created with, `max_load`: its waiters wait for that one extra load unless it
//! hangs too, and only then load by themselves. So a loader that turns slow costs a process one
//! extra load per key, not one per waiter. So a process runs
//! at most one extra load per stalled key, and nobody waits forever.
//!
//! A leader that is dropped (cancelled, panicked, returned early) publishes
//! [`Outcome::Abandoned`] through its [`LeaderGuard`]; waiters regroup behind a new leader.

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

/// A loaded value as handed to waiters.
#[derive(Clone)]
pub(crate) struct Loaded {
    /// Envelope bytes (waiters decode them, so values need no `Clone`).
    pub(crate) bytes: Arc<[u8]>,
    /// The latest instant at which the value is known to have been current: when its load
    /// began, or when a check sent later (an accepted fill, a read with current tags) showed it.
    pub(crate) valid_at: Instant,
    /// The check could not be made because the store did not answer.
    pub(crate) unverified: bool,
}

/// What a flight ended with.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// Not finished yet.
    Running,
    /// A value (or a negative result).
    Value(Loaded),
    /// The loader failed; its error when it can be shared (`E: Clone`).
    Failed(Option<Arc<dyn Any + Send + Sync>>),
    /// The loader's value cannot become an entry (does not serialize or decode back):
    /// waiters load by themselves, at once.
    Unusable,
    /// The leader gave up, was cancelled or panicked, or an invalidation overtook its load:
    /// regroup.
    Abandoned,
}

pub(crate) struct Flight {
    outcome: watch::Sender<Outcome>,
    epoch: Instant,
    /// Milliseconds after `epoch` until which waiters wait.
    deadline_ms: AtomicU64,
    /// This flight replaced a stalled one; it is not replaced again.
    replacement: bool,
}

impl Flight {
    fn new(deadline: Instant, replacement: bool) -> Arc<Flight> {
        let flight = Arc::new(Flight {
            outcome: watch::Sender::new(Outcome::Running),
            epoch: Instant::now(),
            deadline_ms: AtomicU64::new(0),
            replacement,
        });
        flight.set_deadline(deadline);
        flight
    }

    fn set_deadline(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.epoch).as_millis();
        self.deadline_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn deadline(&self) -> tokio::time::Instant {
        let ms = Duration::from_millis(self.deadline_ms.load(Ordering::Acquire));
        // A deadline too far to represent is as good as "in a century".
        let deadline = self
            .epoch
            .checked_add(ms)
            .unwrap_or_else(|| crate::read::later(Duration::MAX));
        tokio::time::Instant::from_std(deadline)
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

    /// Joins the running flight of `key`, or starts one (waited on until `deadline` unless its
    /// leader moves it) and leads it.
    pub(crate) fn join(self: &Arc<Self>, key: &str, deadline: impl FnOnce() -> Instant) -> Role {
        let mut map = self.lock();
        if let Some(flight) = map.get(key) {
            return Role::Waiter(flight.clone());
        }
        let flight = Flight::new(deadline(), false);
        map.insert(key.to_owned(), flight.clone());
        Role::Leader(self.guard(key, flight))
    }

    /// Leads a new flight of `key` unless one is running (a stale refresh: callers that find
    /// one running serve what they read).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &str, deadline: Instant) -> Option<LeaderGuard> {
        match self.join(key, || deadline) {
            Role::Leader(guard) => Some(guard),
            Role::Waiter(_) => None,
        }
    }

    fn guard(self: &Arc<Self>, key: &str, flight: Arc<Flight>) -> LeaderGuard {
        LeaderGuard {
            flights: self.clone(),
            key: key.to_owned(),
            flight,
            done: false,
        }
    }

    /// Stops new callers of `key` from joining its running flight (after an invalidation, a
    /// load that began earlier must not serve callers that arrive later). Its waiters still
    /// get its outcome, which is checked before they accept it.
    pub(crate) fn detach(&self, key: &str) {
        self.lock().remove(key);
    }

    /// [`detach`](Self::detach) for every key (a tag invalidation may concern any of them).
    pub(crate) fn detach_all(&self) {
        self.lock().clear();
    }

    /// Replaces a stalled flight with one led by the caller, unless it was replaced already.
    fn take_over(self: &Arc<Self>, key: &str, stalled: &Arc<Flight>, max_load: Duration) -> Waited {
        let mut map = self.lock();
        match map.get(key) {
            Some(current) if Arc::ptr_eq(current, stalled) => {
                let flight = Flight::new(crate::read::later(max_load), true);
                map.insert(key.to_owned(), flight.clone());
                drop(map);
                // The stalled flight's other waiters regroup behind the replacement.
                stalled.outcome.send_replace(Outcome::Abandoned);
                Waited::TookOver(self.guard(key, flight))
            }
            _ => Waited::Done(Outcome::Abandoned),
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
    /// Moves the waiters' deadline: the leader entered a phase that ends by `deadline`. A
    /// replacement keeps its `max_load` deadline (see the module docs).
    pub(crate) fn set_deadline(&self, deadline: Instant) {
        if !self.flight.replacement {
            self.flight.set_deadline(deadline);
        }
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
    Done(Outcome),
    /// The leader stalled and this caller now leads the replacement.
    TookOver(LeaderGuard),
    /// A replacement stalled too: load without the flight.
    Expired,
}

/// Waits for `flight` to finish, until its deadline; then replaces it (once).
pub(crate) async fn wait(
    flights: &Arc<Flights>,
    key: &str,
    flight: Arc<Flight>,
    max_load: Duration,
) -> Waited {
    let mut rx = flight.outcome.subscribe();
    loop {
        let deadline = flight.deadline();
        let finished =
            tokio::time::timeout_at(deadline, rx.wait_for(|o| !matches!(o, Outcome::Running)))
                .await;
        match finished {
            Ok(Ok(outcome)) => return Waited::Done(outcome.clone()),
            // The sender lives in the flight we hold: it cannot be dropped while we wait.
            Ok(Err(_)) => return Waited::Done(Outcome::Abandoned),
            // The leader moved into a new phase meanwhile.
            Err(_) if flight.deadline() > deadline => continue,
            Err(_) if flight.replacement => return Waited::Expired,
            Err(_) => return flights.take_over(key, &flight, max_load),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(guard) = flights.join("k", || soon(30_000)) else {
            panic!("first caller leads")
        };
        let Role::Waiter(flight) = flights.join("k", || soon(30_000)) else {
            panic!("second caller waits")
        };
        let waiter = tokio::spawn({
            let flights = flights.clone();
            async move { wait(&flights, "k", flight, Duration::from_secs(30)).await }
        });
        drop(guard);
        let waited = waiter.await.expect("waiter task");
        assert!(matches!(waited, Waited::Done(Outcome::Abandoned)));
        assert!(
            matches!(flights.join("k", || soon(1)), Role::Leader(_)),
            "the flight is gone"
        );
    }

    #[tokio::test]
    async fn a_silent_leader_is_replaced_once_then_waiters_go_alone() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(_stalled) = flights.join("k", || soon(20)) else {
            panic!("leads")
        };
        let Role::Waiter(flight) = flights.join("k", || soon(20)) else {
            panic!("waits")
        };
        let Waited::TookOver(_replacement) =
            wait(&flights, "k", flight, Duration::from_millis(20)).await
        else {
            panic!("the first waiter past the deadline takes over")
        };
        let Role::Waiter(replacement) = flights.join("k", || soon(20)) else {
            panic!("later callers join the replacement")
        };
        let waited = wait(&flights, "k", replacement, Duration::from_millis(20)).await;
        assert!(
            matches!(waited, Waited::Expired),
            "a stalled replacement is not replaced again"
        );
    }

    #[tokio::test]
    async fn a_leader_moving_its_deadline_keeps_its_waiters() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join("k", || soon(20)) else {
            panic!("leads")
        };
        let Role::Waiter(flight) = flights.join("k", || soon(20)) else {
            panic!("waits")
        };
        leader.set_deadline(soon(60_000));
        let waiting = wait(&flights, "k", flight, Duration::from_secs(60));
        tokio::pin!(waiting);
        let early = tokio::time::timeout(Duration::from_millis(100), waiting.as_mut()).await;
        assert!(early.is_err(), "still waiting past the first deadline");
        leader.finish(Outcome::Unusable);
        assert!(matches!(waiting.await, Waited::Done(Outcome::Unusable)));
    }
}
