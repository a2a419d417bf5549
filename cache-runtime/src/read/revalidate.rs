//! What a lookup found, and the refresh of a stale or early-expiring hit: serve it, and let
//! exactly one caller (per process, and across processes by the lock) reload it.

use std::{future::Future, time::Duration};

use crate::{
    Cache,
    freshness::{self, Freshness},
    read::{
        Begin,
        entry::{decode, tags_current},
        keys::Keys,
        load::{Load, LoadCtx, Mode},
        lock::{Fill, claim},
    },
    shape::Shape,
    spec::FnSpec,
    store::{Read, StoredBytes},
    telemetry::{Event, Level, MissReason},
};

/// What a lookup found.
pub(crate) enum Lookup<T> {
    /// A fresh hit, with how long a first-level copy may live (for `l1` functions whose TTL was
    /// read) and its size.
    Fresh(T, Option<Duration>, usize),
    /// A hit to serve while one caller refreshes it.
    Refresh(Freshness, T, StoredBytes),
    /// Nothing usable: absent, undecodable, or a tag was invalidated.
    Miss,
}

/// Classifies a lookup: fresh, due for a refresh, or a miss (counted).
pub(crate) fn classify<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    read: Read,
) -> Lookup<S::Output> {
    let Some(bytes) = read.current else {
        cache.record(spec, Event::Miss(MissReason::Absent, &keys.entry));
        return Lookup::Miss;
    };
    match decode::<S>(cache, spec, &bytes) {
        Ok((output, meta)) if tags_current(&meta.tag_versions, &read.tag_versions) => {
            // Without a remaining TTL (no `stale`, no `early_refresh`) an entry is fresh.
            let u = if read.ttl.is_some() {
                1.0 - fastrand::f64()
            } else {
                1.0
            };
            // Stored for `ttl + stale`, capped at the longest expiry: the stale window is what
            // the cap left of it past `ttl`.
            let stale = meta
                .stale
                .min(crate::store::MAX_EXPIRY.saturating_sub(meta.ttl));
            match freshness::classify(read.ttl, stale, meta.load_time, spec.early_refresh, u) {
                Freshness::Fresh => {
                    cache.record(spec, Event::Hit(Level::Store, &keys.entry));
                    // With `early_refresh`, a first-level entry ends before XFetch would
                    // usually fire (-ln u > 3 in 95% of draws), so Redis is read again and
                    // the refresh can happen.
                    let fresh_for = spec.l1.and(read.ttl).map(|left| {
                        let early = spec.early_refresh.map_or(Duration::ZERO, |beta| {
                            let secs = meta.load_time.as_secs_f64() * beta * 3.0;
                            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
                        });
                        left.saturating_sub(stale).saturating_sub(early)
                    });
                    Lookup::Fresh(output, fresh_for, bytes.len())
                }
                state => Lookup::Refresh(state, output, bytes),
            }
        }
        Ok(_) => {
            // A tag was invalidated since this entry was loaded.
            cache.record(spec, Event::Miss(MissReason::TagInvalidated, &keys.entry));
            Lookup::Miss
        }
        Err(reason) => {
            // A miss: the load that follows overwrites the entry.
            cache.record(spec, Event::Miss(MissReason::Undecodable, &keys.entry));
            tracing::debug!(
                function = spec.name,
                reason,
                "undecodable entry treated as a miss"
            );
            Lookup::Miss
        }
    }
}

/// A stale or early-expiring hit: serve it, and start its refresh unless one runs here or in
/// another process (the lock), or the entry changed since it was read.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start<'a, S: Shape>(
    cache: &Cache,
    spec: &'a FnSpec,
    state: Freshness,
    output: S::Output,
    bytes: StoredBytes,
    keys: Keys,
    can_spawn: bool,
    span: tracing::Span,
) -> Begin<'a, S> {
    cache.record(spec, Event::Hit(Level::Store, &keys.entry));
    if state == Freshness::Stale {
        cache.record(spec, Event::StaleServed);
    }
    let Some(leader) = cache
        .inner()
        .flights
        .try_lead(&keys.entry, crate::read::within_operations(cache, 2))
    else {
        span.record("outcome", "stale");
        return Begin::Done(output);
    };
    let claimed = match claim(cache, spec, &keys, spec.lock).await {
        Ok(claimed) if claimed.locked || !spec.lock => claimed,
        // Another process is refreshing, or Redis is failing: serve what we have.
        _ => {
            span.record("outcome", "stale");
            return Begin::Done(output);
        }
    };
    // A refresh may have landed between our read and the claim (its fill freed the lock): then
    // the entry changed, and there is nothing left to refresh. The claim's guard unlocks.
    if claimed.current.as_deref() != Some(&*bytes) {
        drop(leader);
        span.record("outcome", "stale");
        return Begin::Done(output);
    }
    cache.record(spec, Event::RefreshStarted);
    let ctx = LoadCtx {
        cache: cache.clone(),
        keys,
        leader: Some(leader),
        fill: Fill::Store(claimed.claim),
        mode: Mode::Revalidate {
            stale: bytes,
            foreground: !can_spawn,
        },
        lock_wait: spec.lock_wait(cache),
        span,
    };
    if can_spawn {
        return Begin::Refresh(Refresh { output, spec, ctx });
    }
    // Foreground: this caller reloads; concurrent callers keep getting the stale value.
    drop(output);
    Begin::Load(Load {
        spec,
        sharing: None,
        ctx: Some(ctx),
    })
}

/// A background refresh to start: the stale output to serve now and what the refresh owns.
pub struct Refresh<'a, S: Shape> {
    output: S::Output,
    spec: &'a FnSpec,
    ctx: LoadCtx,
}

impl<S: Shape> Refresh<'_, S> {
    /// Spawns `loader` (the function body, owning its arguments) as the refresh and returns the
    /// stale output. The refresh stores its result like any load; a failure leaves the stale
    /// entry in place. A refresh still running after `max_load` is dropped (its lock released).
    pub fn spawn<F>(self, loader: F) -> S::Output
    where
        F: Future<Output = S::Output> + Send + 'static,
        S: 'static,
        S::Output: Send,
    {
        let Refresh { output, spec, ctx } = self;
        let spec = spec.clone();
        let cache = ctx.cache.clone();
        let max_load: Duration = spec.max_load();
        // Outside a runtime there is no refresh: the lock guard releases (or the lock expires).
        let _ = cache.clone().spawn_write(async move {
            let load: Load<'_, S> = Load {
                spec: &spec,
                sharing: None,
                ctx: Some(ctx),
            };
            // Nested cached calls in the body use the same default cache.
            let refresh = cache.scope(async move { drop(load.run(loader).await) });
            if tokio::time::timeout(max_load, refresh).await.is_err() {
                tracing::warn!(
                    function = spec.name,
                    ?max_load,
                    "background refresh outlived max_load; dropped"
                );
            }
        });
        output
    }

    /// Serves the stale output without refreshing (used when the arguments borrow).
    pub fn serve_stale(self) -> S::Output {
        self.output
    }
}
