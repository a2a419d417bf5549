//! The first level: decoded values in the process, in front of Redis, for functions with
//! `l1 = true`, following Redis through server-assisted client-side caching.
//!
//! - [`epochs`]: what an entry was read under; an invalidation makes it unusable at once.
//! - [`tracking`]: the connection that receives Redis's invalidations (`CLIENT TRACKING` in
//!   `BCAST` mode over the namespace), re-armed after every reconnect, and the canary that
//!   confirms invalidations still arrive.
//!
//! An entry is served while all of these hold: nothing it was read under was invalidated
//! since (its ticket is current), its first-level lifetime (`l1_ttl`, capped by what was left
//! of its Redis TTL) has not run out, and the invalidation stream was confirmed live within the
//! liveness timeout. With `l1_outage`, an entry whose stream is not live may also be served
//! while its Redis node is unreachable, for at most `l1_outage` after the last confirmation.
//!
//! Values enter only from a read of Redis (a fresh hit) made under a live stream: a loaded
//! value enters on the first read after its fill, since the fill's own invalidation would
//! outdate an entry made before it.

mod epochs;
mod tracking;

use std::{
    any::Any,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::sync::Cache as Moka;

use self::epochs::Epochs;
pub(crate) use self::epochs::Ticket;
pub(crate) use self::tracking::{StreamSource, Tracking};
use crate::{
    shape::{Cacheable, Shape},
    telemetry::FirstLevelCounts,
};

/// Default byte budget of the first level.
pub(crate) const DEFAULT_CAPACITY: u64 = 64 * 1024 * 1024;
/// Default cap on first-level entries.
pub(crate) const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default liveness timeout: entries are served only this long after the last confirmation
/// that invalidations arrive.
pub(crate) const DEFAULT_LIVENESS: Duration = Duration::from_secs(1);

/// What `l1 = true` adds to a function.
#[derive(Debug, Clone, Copy)]
pub struct FirstLevelSpec {
    /// `l1_ttl`: the longest an entry lives in the first level.
    pub ttl: Duration,
    /// `l1_outage`: how long entries may be served while Redis is unreachable.
    pub outage: Option<Duration>,
}

/// Implemented by every type a first level can hold: decoded values are handed out as clones.
#[diagnostic::on_unimplemented(
    message = "`l1 = true` keeps decoded values in the process and hands out clones: `{Self}` must be `Clone + Send + Sync + 'static`",
    label = "`l1` needs `{Self}: Clone`",
    note = "derive `Clone` for it, or remove `l1`"
)]
pub trait FirstLevelValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> FirstLevelValue for T {}

type Boxed = Box<dyn Any + Send + Sync>;

/// How a function's outputs go in and out of the first level: built by generated code only for
/// `l1 = true`, where the value type is known to be [`FirstLevelValue`].
pub struct FirstLevelAccess<S: Shape> {
    keep: fn(&S::Output) -> Option<Boxed>,
    take: fn(&(dyn Any + Send + Sync)) -> Option<S::Output>,
}

impl<S: Shape> Clone for FirstLevelAccess<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Shape> Copy for FirstLevelAccess<S> {}

/// The first-level access of a function whose cached value is `S::Value`.
pub fn first_level<S: Shape>() -> FirstLevelAccess<S>
where
    S::Value: FirstLevelValue,
{
    FirstLevelAccess {
        keep: |output| match S::cacheable(output) {
            Cacheable::Value(v) => Some(Box::new(Some(v.clone()))),
            Cacheable::Negative => Some(Box::new(None::<S::Value>)),
            Cacheable::Skip => None,
        },
        take: |any| {
            let value = any.downcast_ref::<Option<S::Value>>()?;
            S::from_cached(value.clone())
        },
    }
}

/// A read that may enter the first level: how, under which options, and what it was read
/// under.
pub(crate) struct Candidate<'a, S: Shape> {
    pub(crate) access: FirstLevelAccess<S>,
    pub(crate) spec: &'a FirstLevelSpec,
    pub(crate) ticket: Ticket,
}

/// One first-level entry.
struct Slot {
    value: Boxed,
    ticket: Ticket,
    /// Served normally until then (nanoseconds on the level's clock).
    fresh_until: u64,
    /// Of no use after then (`fresh_until`, or later with `l1_outage`): dropped when found.
    keep_until: u64,
    weight: u32,
}

/// Whether the invalidation stream is confirmed live, on a monotonic clock of nanoseconds.
struct Liveness {
    base: Instant,
    timeout: Duration,
    /// When the last confirmed canary was sent (0: never). Live while it is later than the
    /// last loss and less than `timeout` ago.
    confirmed_at: AtomicU64,
    /// The canary awaiting its invalidation: its round and when it was sent.
    canary: std::sync::Mutex<Option<(u64, u64)>>,
    /// When the stream was last lost (0: never).
    lost_at: AtomicU64,
    /// Number of the current connection.
    link: AtomicU64,
    /// Wakes the task waiting for a confirmation or a loss.
    changed: tokio::sync::Notify,
}

impl Liveness {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The canary of `round` came back: everything Redis invalidated before it was written has
    /// reached this process. Any other round's (late, expired, evicted) is ignored.
    fn confirm(&self, round: u64) {
        let awaited = *self.canary.lock().unwrap_or_else(|p| p.into_inner());
        let Some((awaited, sent)) = awaited else {
            return;
        };
        if awaited != round {
            return;
        }
        self.confirmed_at.fetch_max(sent, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// The stream is gone: nothing is served as live until the next confirmation (and a late
    /// invalidation of the canary in flight confirms nothing).
    fn lose(&self) {
        *self.canary.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.lost_at.store(self.now().max(1), Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn is_live(&self, now: u64) -> bool {
        let confirmed = self.confirmed_at.load(Ordering::SeqCst);
        confirmed > self.lost_at.load(Ordering::SeqCst)
            && now < confirmed.saturating_add(Self::nanos(self.timeout))
    }
}

/// The first level of one cache.
pub(crate) struct FirstLevel {
    entries: Moka<String, Arc<Slot>, crate::key::KeyHasher>,
    epochs: Epochs,
    liveness: Liveness,
    /// Reads not kept because something they were read under changed meanwhile.
    refused: AtomicU64,
    /// The least weight of an entry: the budget over the entry cap, so the cap holds too.
    min_weight: u32,
    tracking: Tracking,
    started: AtomicBool,
    /// Set by `Cache::shutdown`: the stream is not followed again, and nothing is served.
    stopped: AtomicBool,
}

impl FirstLevel {
    pub(crate) fn new(
        capacity: u64,
        max_entries: u64,
        liveness: Duration,
        tracking: Tracking,
    ) -> Arc<FirstLevel> {
        let min_weight = u32::try_from(capacity / max_entries.max(1))
            .unwrap_or(u32::MAX)
            .max(1);
        let entries = Moka::builder()
            .max_capacity(capacity)
            .weigher(|_key: &String, slot: &Arc<Slot>| slot.weight)
            .build_with_hasher(crate::key::KeyHasher::random());
        Arc::new(FirstLevel {
            entries,
            epochs: Epochs::default(),
            liveness: Liveness {
                base: Instant::now(),
                timeout: liveness,
                confirmed_at: AtomicU64::new(0),
                canary: std::sync::Mutex::new(None),
                lost_at: AtomicU64::new(0),
                link: AtomicU64::new(0),
                changed: tokio::sync::Notify::new(),
            },
            refused: AtomicU64::new(0),
            min_weight,
            tracking,
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// Stops following Redis for good (`Cache::shutdown`): the tracking task ends and nothing
    /// is served from here on.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.liveness.lose();
        self.entries.invalidate_all();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Starts following Redis, on the first use by an `l1` function.
    fn start(self: &Arc<Self>) {
        if self.is_stopped() {
            return;
        }
        if !self.started.load(Ordering::Relaxed) && !self.started.swap(true, Ordering::SeqCst) {
            tracking::spawn(self);
        }
    }

    /// A usable entry of `key`, cloned. `redis_failed`: this call's own read of Redis just
    /// failed (only then may `l1_outage` serve an entry while the stream is not live).
    pub(crate) fn get<S: Shape>(
        &self,
        access: FirstLevelAccess<S>,
        spec: &FirstLevelSpec,
        key: &str,
        redis_failed: bool,
    ) -> Option<S::Output> {
        let slot = self.entries.get(key)?;
        let now = self.liveness.now();
        if now >= slot.keep_until || !self.epochs.still_current(&slot.ticket) {
            // Of no more use (moka keeps no clock for us: a lookup is cheaper so).
            self.entries.invalidate(key);
            return None;
        }
        let usable = if now < slot.fresh_until && self.liveness.is_live(now) {
            true
        } else {
            // Only with `l1_outage`, only for an entry read before the stream was lost (a
            // re-arm outdates every ticket), for at most that long after the last
            // confirmation, and only when Redis just failed this very call.
            spec.outage.is_some_and(|outage| {
                let confirmed = self.liveness.confirmed_at.load(Ordering::SeqCst);
                redis_failed && now < confirmed.saturating_add(Liveness::nanos(outage))
            })
        };
        if !usable {
            return None;
        }
        let output = (access.take)(&*slot.value)?;
        Some(output)
    }

    /// A ticket for a read of `entry` with its tag keys, taken before the read is sent.
    pub(crate) fn ticket<'k>(
        self: &Arc<Self>,
        entry: &'k str,
        tags: impl Iterator<Item = &'k str>,
    ) -> Ticket {
        self.start();
        let now = self.liveness.now();
        let live = self.liveness.is_live(now);
        // A read made while the stream is not live never enters: it needs no tag counters.
        let tags = tags.filter(|_| live);
        self.epochs.ticket(entry, tags, live, now)
    }

    /// Keeps `output`, read from Redis with `remaining` of its fresh time left, unless
    /// something it was read under changed since its ticket was taken.
    pub(crate) fn insert<S: Shape>(
        &self,
        read: Candidate<'_, S>,
        key: &str,
        output: &S::Output,
        remaining: Duration,
        size: usize,
    ) {
        let Candidate {
            access,
            spec,
            ticket,
        } = read;
        if !ticket.live {
            return;
        }
        if !self.epochs.current(&ticket) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let fresh = spec.ttl.min(remaining);
        if fresh.is_zero() {
            return;
        }
        let Some(value) = (access.keep)(output) else {
            return;
        };
        // Counted from the ticket, taken before the read: never past the Redis TTL it saw.
        let now = ticket.taken_at;
        let weight = u32::try_from(size).unwrap_or(u32::MAX).max(self.min_weight);
        let ticket_check = ticket.clone();
        let slot = Slot {
            value,
            ticket,
            fresh_until: now.saturating_add(Liveness::nanos(fresh)),
            keep_until: now.saturating_add(Liveness::nanos(
                fresh.saturating_add(spec.outage.unwrap_or(Duration::ZERO)),
            )),
            weight,
        };
        self.entries.insert(key.to_owned(), Arc::new(slot));
        // Pairs with the fence in `forget_entry`: either this check sees the bump, or the
        // removal that follows the bump sees the entry (on any memory model).
        std::sync::atomic::fence(Ordering::SeqCst);
        // Sealed: from here on an invalidation of the key removes the entry itself (the push
        // handler bumps the key's stripe, then removes the key), so lookups need not check the
        // stripe, which other keys share. One that came between the check above and the insert
        // is seen now.
        if !self.epochs.current(&ticket_check) {
            self.entries.invalidate(key);
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops `key` (an entry's) here at once: called before and after this process changes it
    /// in Redis, and for every invalidation Redis sends.
    pub(crate) fn forget_entry(&self, key: &str) {
        self.epochs.bump(key);
        // See `insert`: a concurrent insert either sees the bump or is removed here.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.entries.invalidate(key);
    }

    /// Outdates every entry carrying the tag with this key.
    pub(crate) fn forget_tag(&self, tag_key: &str) {
        self.epochs.bump_tag(tag_key);
    }

    /// Outdates every entry (a flush, or a stream re-armed after missing invalidations).
    fn forget_all(&self) {
        self.epochs.bump_all();
        self.entries.invalidate_all();
    }

    pub(crate) fn stats(&self) -> FirstLevelCounts {
        self.entries.run_pending_tasks();
        FirstLevelCounts {
            live: self.liveness.is_live(self.liveness.now()),
            refused: self.refused.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
        }
    }
}
