//! The read-through path: look up, else load once (per process by single-flight, across
//! processes by a lock), store, and hand each waiter what it may use.
//!
//! Generated code calls [`begin`], which does every cache round trip up to "someone must run
//! the loader here", then [`Load::run`] with the function body. This module is the
//! orchestration; each concern has its own file:
//!
//! - [`keys`]: the entry, lock, generation and tag keys of a call;
//! - [`entry`]: encoding (size cap, round-trip check), decoding, tag-version checks;
//! - [`revalidate`]: what a lookup found; refreshing stale and early-expiring hits;
//! - [`flight`]: in-process single-flight with deadlines and checked outcomes;
//! - [`lock`]: the claim, the lock as an owned guard, its renewal;
//! - [`load`]: running the loader, the fill, failures;
//! - [`refresh`]: `NAME_refresh`'s request to skip the lookup.
//!
//! Round trips on a miss: the lookup; the claim (lock `SET NX PX`, generation and entry in one
//! pipeline, concurrently with capturing tag versions); the fill script (concurrently with a
//! re-read of the tag versions), which by default runs after the caller has its value.
//!
//! Who may use a value: the caller whose loader produced it, always. A waiter only if the
//! value was known current at a point after the waiter's call began (its load began later, or
//! a check sent later showed it current), or the store is unreachable right now and nothing
//! can be checked; otherwise the waiter regroups and reads again.

mod entry;
pub(crate) mod flight;
mod keys;
mod load;
mod lock;
pub(crate) mod refresh;
mod revalidate;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

pub(crate) use self::entry::{encode, usable};
pub(crate) use self::keys::Keys;
pub use self::load::Load;
pub(crate) use self::lock::{drop_entry, drop_entry_by_key, put_entry};
pub use self::refresh::refresh;
pub use self::revalidate::Refresh;
use self::{
    entry::decode_outcome,
    flight::{Outcome, Role, Waited},
    load::{LoadCtx, Mode},
    lock::{Fill, Led, lead},
    revalidate::Lookup,
};
use crate::{
    Cache, Error,
    first_level::{Candidate, FirstLevelAccess},
    key::{self, ArgsKey},
    shape::{ErrorSharing, Shape},
    spec::FnSpec,
    telemetry::{Event, Level},
};
use tracing::Instrument;

/// The default cache for a function without `cache = EXPR`.
pub fn default_cache() -> Option<Cache> {
    Cache::current()
}

/// The cache named by `cache = EXPR` (a `Cache` or a `&Cache`).
pub fn cache_ref<C: std::borrow::Borrow<Cache> + ?Sized>(cache: &C) -> Option<Cache> {
    Some(cache.borrow().clone())
}

static WARNED_NOT_INSTALLED: AtomicBool = AtomicBool::new(false);

fn warn_not_installed(function: &str) {
    if !WARNED_NOT_INSTALLED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            function,
            "no cache installed: #[redis_cached] functions run uncached \
             (call `Cache::builder()...build().await?.install()` at start-up)"
        );
    }
}

static WARNED_NO_FIRST_LEVEL: AtomicBool = AtomicBool::new(false);

/// `l1 = true` on a cluster: there is no first level there (see the README).
fn warn_no_first_level(cache: &Cache, function: &str) {
    if cache.conn().is_network() && !WARNED_NO_FIRST_LEVEL.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            function,
            "`l1 = true` has no first level on a Redis Cluster: these calls read Redis"
        );
    }
}

/// What [`begin`] leaves for the generated code to do.
pub enum Begin<'a, S: Shape> {
    /// The output is known (a hit, or a value another caller loaded).
    Done(S::Output),
    /// Run the loader through [`Load::run`].
    Load(Load<'a, S>),
    /// Serve this (stale) output and refresh in a spawned task with [`Refresh::spawn`].
    Refresh(Refresh<'a, S>),
}

/// `now + after`, or a century from now when that does not fit (a duration meaning "forever").
pub(crate) fn later(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// When `operations` round trips to the store, each under its timeout, are over at the latest.
pub(crate) fn within_operations(cache: &Cache, operations: u32) -> Instant {
    later(cache.conn().timeout().saturating_mul(operations))
}

/// Rounds of regrouping (abandoned or rejected outcomes) before a caller loads by itself.
const MAX_ROUNDS: usize = 4;

/// The first level's answer to a call of an `l1 = true` function, before anything else of the
/// call is set up (generated code calls it ahead of [`begin`]); the arguments back otherwise.
pub fn first_level_hit<S: Shape>(
    cache: &Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    access: FirstLevelAccess<S>,
) -> Result<S::Output, Result<ArgsKey, Error>> {
    let (Some(cache), Some(l1_spec), Ok(key_args)) = (cache, &spec.l1, &args) else {
        return Err(args);
    };
    let Some(level) = cache.first_level() else {
        return Err(args);
    };
    if refresh::requested() {
        return Err(args);
    }
    let hit = key::with_entry_key(
        cache.namespace(),
        spec.name,
        spec.version,
        key_args,
        |key| {
            let output = level.get(access, l1_spec, key, false)?;
            cache.record(spec, Event::Hit(Level::First, key));
            Some(output)
        },
    );
    hit.ok_or(args)
}

/// Everything before the loader: first level, lookup, single-flight, lock, waiting.
///
/// Never fails because of the cache: without a cache, with an unusable key, or with Redis
/// failing, it ends in [`Begin::Load`] and the loader's output is returned.
pub async fn begin<'a, S: Shape>(
    cache: Option<Cache>,
    spec: &'a FnSpec,
    args: Result<ArgsKey, Error>,
    tags: Vec<String>,
    sharing: Option<ErrorSharing<S::Output>>,
    can_spawn: bool,
    l1: Option<FirstLevelAccess<S>>,
) -> Begin<'a, S> {
    let started = Instant::now();
    let refreshing = refresh::take_request();
    let uncached = |sharing| {
        Begin::Load(Load {
            spec,
            sharing,
            ctx: None,
        })
    };
    let Some(cache) = cache else {
        if refreshing {
            refresh::record(Err(Error::NotInstalled));
        } else {
            warn_not_installed(spec.name);
        }
        return uncached(sharing);
    };
    let args = match args {
        Ok(args) => args,
        Err(err) => {
            cache.record(spec, Event::Uncached);
            tracing::warn!(function = spec.name, error = %err, "arguments do not encode to a key; running uncached");
            if refreshing {
                refresh::record(Err(err));
            }
            return uncached(sharing);
        }
    };

    let keys = Keys::new(&cache, spec, &args, &tags);
    if refreshing {
        let span = call_span(&cache, spec, &keys, "refresh");
        return Box::pin(for_refresh(cache, spec, keys, sharing, span.clone()).instrument(span))
            .await;
    }
    // The first level (generated code asked it already, with `first_level_hit`): the ticket
    // this call's Redis read will be kept under.
    let first_level = match (l1, &spec.l1, cache.first_level()) {
        (Some(access), Some(l1_spec), Some(level)) => Some(Candidate {
            access,
            spec: l1_spec,
            ticket: level.ticket(&keys.entry, keys.tags.iter().map(String::as_str)),
        }),
        (Some(_), Some(_), None) => {
            warn_no_first_level(&cache, spec.name);
            None
        }
        _ => None,
    };

    // Lookup: one round of plain reads.
    let read = cache
        .conn()
        .read(&keys.entry, &keys.tags, spec.needs_age(&cache))
        .await;
    let reachable = match read {
        Ok(read) => match revalidate::classify::<S>(&cache, spec, &keys, read) {
            Lookup::Fresh(output, fresh_for, size) => {
                if let (Some(candidate), Some(fresh_for), Some(level)) =
                    (first_level, fresh_for, cache.first_level())
                {
                    level.insert(candidate, &keys.entry, &output, fresh_for, size);
                }
                return Begin::Done(output);
            }
            Lookup::Refresh(state, output, bytes) => {
                // Boxed, like the other cold paths, to keep the hit's future small.
                let call = match state {
                    crate::freshness::Freshness::Stale => "stale",
                    _ => "early",
                };
                let span = call_span(&cache, spec, &keys, call);
                let start = revalidate::start(
                    &cache,
                    spec,
                    state,
                    output,
                    bytes,
                    keys,
                    can_spawn,
                    span.clone(),
                );
                return Box::pin(start.instrument(span)).await;
            }
            Lookup::Miss => true,
        },
        Err(err) => {
            cache.record(spec, Event::StoreFailed);
            // With `l1_outage`, the first level answers while Redis does not (unreachable, or
            // kept away by the open breaker; not an error reply from a live server).
            if let (Some(candidate), Some(level)) = (&first_level, cache.first_level())
                && candidate.spec.outage.is_some()
                && crate::connection::is_unreachable(&err)
            {
                let (access, l1_spec) = (candidate.access, candidate.spec);
                if let Some(output) = level.get(access, l1_spec, &keys.entry, true) {
                    cache.record(spec, Event::Hit(Level::First, &keys.entry));
                    return Begin::Done(output);
                }
            }
            false
        }
    };
    let span = call_span(&cache, spec, &keys, "miss");
    let miss = miss(cache, spec, keys, sharing, reachable, started, span.clone());
    Box::pin(miss.instrument(span)).await
}

/// The span of a call that does more than hit: `call` says why (`miss`, `stale`, `early`,
/// `refresh`), `outcome` what came of it. It carries the entry key only with
/// `CacheBuilder::record_keys` (keys hold argument values).
fn call_span(cache: &Cache, spec: &FnSpec, keys: &Keys, call: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "redis_cached",
        function = spec.name,
        call,
        outcome = tracing::field::Empty,
        key = tracing::field::Empty,
    );
    if cache.inner().telemetry.record_keys {
        span.record("key", keys.entry.as_str());
    }
    span
}

/// `NAME_refresh`: a new generation (earlier loads can no longer fill), then load and store.
async fn for_refresh<'a, S: Shape>(
    cache: Cache,
    spec: &'a FnSpec,
    keys: Keys,
    sharing: Option<ErrorSharing<S::Output>>,
    span: tracing::Span,
) -> Begin<'a, S> {
    // This process stops serving the old value before Redis is asked (and again once the new
    // one is stored, in `load`).
    cache.forget_entry(&keys.entry);
    let fill = match lock::claim_for_refresh(&cache, spec, &keys).await {
        Ok(claim) => Fill::Store(claim),
        Err(err) => {
            refresh::record(Err(err));
            Fill::Nothing
        }
    };
    // Callers arriving from now on must not join a load that began before this.
    cache.inner().flights.detach(&keys.entry);
    let lock_wait = spec.lock_wait(&cache);
    Begin::Load(Load {
        spec,
        sharing,
        ctx: Some(LoadCtx {
            cache,
            keys,
            leader: None,
            fill,
            mode: Mode::Refresh,
            lock_wait,
            span,
        }),
    })
}

/// A miss: join this process's load of the key, or lead one.
async fn miss<'a, S: Shape>(
    cache: Cache,
    spec: &'a FnSpec,
    keys: Keys,
    sharing: Option<ErrorSharing<S::Output>>,
    mut reachable: bool,
    started: Instant,
    span: tracing::Span,
) -> Begin<'a, S> {
    let flights = cache.inner().flights.clone();
    let lock_wait = spec.lock_wait(&cache);
    let claim_phase = || within_operations(&cache, 2);
    for _ in 0..MAX_ROUNDS {
        let leader = match flights.join(&keys.entry, claim_phase) {
            Role::Leader(leader) => leader,
            Role::Waiter(flight) => {
                let waited = flight::wait(&flights, &keys.entry, flight, spec.max_load());
                match Box::pin(waited).await {
                    Waited::TookOver(leader) => leader,
                    Waited::Expired => break,
                    Waited::Done(outcome) => {
                        match receive::<S>(&cache, spec, &keys, outcome, sharing.as_ref(), started)
                        {
                            Received::Output(output) => {
                                span.record("outcome", "joined");
                                return Begin::Done(output);
                            }
                            Received::Alone => break,
                            Received::Regroup => {
                                reachable =
                                    reachable || !cache.conn().is_down([keys.entry.as_str()]);
                                continue;
                            }
                            Received::RegroupUnclaimed => {
                                // The store failed the last load's check: the next load skips
                                // the claim (nobody waits behind the same failure), and its
                                // value, begun after we started, is ours to use.
                                reachable = false;
                                continue;
                            }
                        }
                    }
                }
            }
        };
        let fill = if reachable {
            match Box::pin(lead::<S>(&cache, spec, &leader, &keys, lock_wait)).await {
                Led::Done(output, loaded) => {
                    leader.finish(Outcome::Value(loaded));
                    span.record("outcome", "joined");
                    return Begin::Done(output);
                }
                Led::Load(fill) => fill,
            }
        } else {
            // Redis is failing: do not pay a second timeout to lock or store.
            Fill::Nothing
        };
        let ctx = LoadCtx {
            cache,
            keys,
            leader: Some(leader),
            fill,
            mode: Mode::Miss,
            lock_wait,
            span,
        };
        return Begin::Load(Load {
            spec,
            sharing,
            ctx: Some(ctx),
        });
    }
    // Load by ourselves, at once, without storing: never a queue behind other callers.
    span.record("outcome", "alone");
    Begin::Load(Load {
        spec,
        sharing,
        ctx: None,
    })
}

/// What a waiter makes of a flight's outcome.
enum Received<T> {
    Output(T),
    /// Load by ourselves, at once.
    Alone,
    /// Join or lead the key's next flight.
    Regroup,
    /// Join or lead the key's next flight, loading without a claim.
    RegroupUnclaimed,
}

fn receive<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    outcome: Outcome,
    sharing: Option<&ErrorSharing<S::Output>>,
    started: Instant,
) -> Received<S::Output> {
    match outcome {
        Outcome::Value(loaded) => {
            if loaded.valid_at < started {
                if !loaded.unverified {
                    // Redis answers: read again.
                    cache.record(spec, Event::OutcomeRejected);
                    return Received::Regroup;
                }
                // Nothing could be checked. While every node of the entry and its tags is
                // down, nothing can be, and the waiter shares the load (the documented
                // window). If some node answers, the waiter regroups behind one new load that
                // skips the claim, so it neither queues behind the same failure nor joins N
                // uncached loads.
                let keys = std::iter::once(keys.entry.as_str())
                    .chain(keys.tags.iter().map(String::as_str));
                if !cache.conn().is_down(keys) {
                    cache.record(spec, Event::OutcomeRejected);
                    return Received::RegroupUnclaimed;
                }
            }
            match decode_outcome::<S>(spec, &loaded.bytes) {
                Some(output) => Received::Output(output),
                None => Received::Alone,
            }
        }
        Outcome::Failed(shared) => {
            let Some(sharing) = sharing else {
                return Received::Alone;
            };
            if let (Some(shared), Some(unpack)) = (shared, sharing.unpack)
                && let Some(output) = unpack(&*shared)
            {
                return Received::Output(output);
            }
            match sharing.load_failed {
                Some(load_failed) => Received::Output(load_failed(Error::LoadFailed)),
                None => Received::Alone,
            }
        }
        Outcome::Unusable => Received::Alone,
        Outcome::Abandoned | Outcome::Running => Received::Regroup,
    }
}
