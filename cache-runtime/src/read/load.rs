//! The loader's turn: run it (with the lock renewed beside it), turn its output into an
//! entry, write it if the claim still holds, and tell the flight's waiters what they may use.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tracing::Instrument;

use crate::{
    Cache,
    envelope::EntryMeta,
    read::{
        entry::{Encoded, decode, encode_checked, tags_current},
        flight::{LeaderGuard, Loaded, Outcome},
        keys::Keys,
        lock::{Claim, Fill, renewing},
        refresh,
    },
    shape::{Cacheable, ErrorSharing, Shape},
    spec::FnSpec,
    store::{FillReply, FillValue, StoredBytes},
    telemetry::{Event, FnId, Refusal},
};

/// What kind of load this is.
pub(crate) enum Mode {
    /// A miss, or a refresh in the background.
    Miss,
    /// `NAME_refresh`: stores before returning and reports whether it could.
    Refresh,
    /// A refresh of a stale or early-expiring entry. If the loader fails, the entry stays
    /// (stale-if-error); in the foreground the stale value answers its caller (only).
    Revalidate {
        stale: StoredBytes,
        foreground: bool,
    },
}

/// Everything a cached load owns.
pub(crate) struct LoadCtx {
    pub(crate) cache: Cache,
    pub(crate) keys: Keys,
    pub(crate) leader: Option<LeaderGuard>,
    pub(crate) fill: Fill,
    pub(crate) mode: Mode,
    /// How long waiters wait for this load before loading themselves.
    pub(crate) lock_wait: Duration,
    /// The call's span: the loader runs inside it, and its outcome is recorded on it.
    pub(crate) span: tracing::Span,
}

/// The loader's turn: run it, store the result, tell waiters.
pub struct Load<'a, S: Shape> {
    pub(crate) spec: &'a FnSpec,
    pub(crate) sharing: Option<ErrorSharing<S::Output>>,
    /// `None`: run the loader uncached.
    pub(crate) ctx: Option<LoadCtx>,
}

impl<S: Shape> Load<'_, S> {
    /// Runs the loader, stores its result and tells waiters; returns the loader's output (or,
    /// when a foreground refresh of a stale entry fails, the stale value).
    pub async fn run<F: Future<Output = S::Output>>(self, loader: F) -> S::Output {
        let Load { spec, sharing, ctx } = self;
        let Some(ctx) = ctx else {
            return loader.await;
        };
        let span = ctx.span.clone();
        Self::run_cached(spec, sharing, ctx, loader)
            .instrument(span)
            .await
    }

    async fn run_cached<F: Future<Output = S::Output>>(
        spec: &FnSpec,
        sharing: Option<ErrorSharing<S::Output>>,
        ctx: LoadCtx,
        loader: F,
    ) -> S::Output {
        let started = Instant::now();
        if let Some(leader) = &ctx.leader {
            leader.set_deadline(crate::read::later(ctx.lock_wait));
        }
        let lock = match &ctx.fill {
            Fill::Store(claim) => claim.lock.as_ref(),
            _ => None,
        };
        // Boxed: the loader's future need not be part of every call's (a hit's) future.
        let output = Box::pin(renewing(&ctx.cache, spec, &ctx.keys, lock, loader)).await;
        let load_time = started.elapsed();
        let cache = &ctx.cache;
        cache.record(spec, Event::Loaded(load_time));

        let outcome = match (&ctx.fill, &ctx.mode) {
            (_, Mode::Refresh) => "refreshed",
            (Fill::Nothing, _) => "fallback",
            _ => "loaded",
        };
        let (value, ttl, stale, delete) = match S::cacheable(&output) {
            Cacheable::Skip => {
                ctx.span.record("outcome", "failed");
                return Box::pin(failed::<S>(ctx, spec, sharing, output)).await;
            }
            Cacheable::Value(v) => (Some(v), spec.jittered(spec.ttl(cache)), spec.stale, false),
            Cacheable::Negative => (None, spec.none_ttl(cache), Duration::ZERO, !spec.cache_none),
        };
        ctx.span.record("outcome", outcome);
        if matches!(ctx.fill, Fill::Nothing)
            && !matches!(ctx.mode, Mode::Refresh)
            && !ctx.leader.as_ref().is_some_and(LeaderGuard::has_waiters)
        {
            // Nothing to store and nobody to hand bytes to (Redis is failing): skip encoding.
            return output;
        }
        let tag_versions = match &ctx.fill {
            Fill::Store(claim) | Fill::Check(claim) => claim.tag_versions.clone(),
            Fill::Nothing => Vec::new(),
        };
        let meta = EntryMeta {
            ttl,
            stale,
            load_time,
            tag_versions,
        };
        let written = Written {
            started,
            ttl: ttl.saturating_add(stale),
            delete,
        };
        let encoded = encode_checked::<S>(cache, spec, value, &meta);
        if let Some(leader) = &ctx.leader {
            // Storing: a fill and a tag read, each under the operation timeout.
            leader.set_deadline(crate::read::within_operations(cache, 2));
        }
        let background = cache.inner().fill_in_background
            && cache.conn().is_network()
            && matches!(ctx.mode, Mode::Miss)
            && matches!(ctx.fill, Fill::Store(_));
        let function = spec.id();
        if background {
            // The caller has its value; the fill (and the waiters' wake-up) need not delay it.
            // The flight stays open until the fill lands, so callers arriving meanwhile join it.
            let cache = cache.clone();
            let span = ctx.span.clone();
            let settling = Box::pin(settle(ctx, function, encoded, written).instrument(span));
            if let Err(settling) = cache.start_write(settling) {
                settling.await;
            }
        } else {
            Box::pin(settle(ctx, function, encoded, written)).await;
        }
        output
    }
}

/// How a load's entry is written.
struct Written {
    started: Instant,
    /// How long Redis keeps it (`ttl + stale`).
    ttl: Duration,
    /// An uncached `None`: delete what was there instead of storing.
    delete: bool,
}

/// Writes a load's entry, then hands the outcome to the flight's waiters.
async fn settle(mut ctx: LoadCtx, function: FnId, encoded: Encoded, written: Written) {
    let fill = std::mem::replace(&mut ctx.fill, Fill::Nothing);
    // A refresh whose value cannot be stored must not leave the old entry to be served (and
    // refreshed again on every stale hit): it deletes it under the same checks.
    let replacing = !matches!(ctx.mode, Mode::Miss);
    let max = ctx.cache.inner().max_value_size;
    let (bytes, problem) = match encoded {
        Encoded::Entry(bytes) => (Some(bytes), None),
        Encoded::Oversized(bytes) => {
            let size = crate::envelope::decoded_len(&bytes);
            (Some(bytes), Some(crate::Error::ValueTooLarge { size, max }))
        }
        Encoded::Unusable(err) => (None, Some(err)),
    };
    let handed = bytes.as_ref();
    let write = match (handed, &problem) {
        (Some(bytes), None) if !written.delete => Some(FillValue::Bytes(bytes)),
        (Some(_), None) => Some(FillValue::Delete),
        (_, Some(_)) => replacing.then_some(FillValue::Delete),
        (None, None) => None,
    };
    let (valid_at, unverified, stored) = match (fill, write) {
        (Fill::Store(claim), Some(value)) => store(&ctx, function, claim, value, &written).await,
        // Nothing to write: the claim's lock guard releases the lock.
        (Fill::Store(_), None) => (written.started, false, Ok(())),
        (Fill::Check(claim), _) => {
            let (valid_at, unverified) = check(&ctx, claim, written.started).await;
            (valid_at, unverified, Ok(()))
        }
        (Fill::Nothing, _) => (written.started, true, Err(crate::Error::Unavailable)),
    };
    if let Err(err) = &stored {
        tracing::debug!(function = function.name, error = %err, "entry not stored");
    }
    if matches!(ctx.mode, Mode::Refresh) {
        // Whatever was read here before the new value landed is outdated.
        ctx.cache.forget_entry(&ctx.keys.entry);
        refresh::record(problem.map_or(stored, Err));
    }
    if let Some(leader) = ctx.leader.take() {
        // Copied for waiters only when there is a flight to hand them over.
        leader.finish(match handed {
            Some(bytes) => Outcome::Value(Loaded {
                bytes: bytes.as_slice().into(),
                valid_at,
                unverified,
            }),
            None => Outcome::Unusable,
        });
    }
}

/// Fills the entry under the claim, re-reading tag versions alongside. Returns when the value
/// is known to have been current (the fill's send time if it was stored with current tags,
/// else its load's start), whether that could not be checked, and how storing went.
async fn store(
    ctx: &LoadCtx,
    function: FnId,
    claim: Claim,
    value: FillValue<'_>,
    written: &Written,
) -> (Instant, bool, Result<(), crate::Error>) {
    let Claim {
        lock,
        generation,
        tag_versions,
        ..
    } = claim;
    let conn = ctx.cache.conn();
    let sent = Instant::now();
    let entry_keys = ctx.keys.entry_keys();
    let token = lock.as_ref().map(|l| l.token());
    let (filled, versions) = futures_util::future::join(
        conn.fill(&entry_keys, token, &generation, value, written.ttl),
        conn.tag_versions(&ctx.keys.tags),
    )
    .await;
    let filled = match filled {
        Ok(reply) => {
            // The script released the lock if it was ours.
            if let Some(lock) = lock {
                lock.disarm();
            }
            reply
        }
        // Nothing was checked: the value is known current only at its load's start. The
        // guard releases the lock, if the fill did not.
        Err(err) => return (written.started, true, Err(err)),
    };
    let refused = match (filled, versions) {
        (FillReply::RefusedLock, _) => Refusal::Lock,
        (FillReply::RefusedGeneration, _) => Refusal::Generation,
        (FillReply::Stored, Ok(versions)) if tags_current(&tag_versions, &versions) => {
            ctx.cache.record_for(function, Event::Stored);
            return (sent, false, Ok(()));
        }
        // A tag changed meanwhile, or its versions could not be read (fail closed): the stored
        // entry recorded the old versions and will miss.
        (FillReply::Stored, _) => Refusal::Tags,
    };
    // An invalidation (or another process's load) overtook this one: the value was current at
    // its load's start, which only waiters that joined before then may rely on.
    ctx.cache.record_for(function, Event::FillRefused(refused));
    (written.started, false, Ok(()))
}

/// For a load that did not store: whether the claim still holds (generation and tags
/// unchanged). The value is current at the check if it does, else only at its load's start.
async fn check(ctx: &LoadCtx, claim: Claim, started: Instant) -> (Instant, bool) {
    if !ctx.leader.as_ref().is_some_and(LeaderGuard::has_waiters) {
        return (started, false);
    }
    let conn = ctx.cache.conn();
    let sent = Instant::now();
    let entry_keys = ctx.keys.entry_keys();
    let (generation, versions) = futures_util::future::join(
        conn.generation(&entry_keys),
        conn.tag_versions(&ctx.keys.tags),
    )
    .await;
    match (generation, versions) {
        (Ok(generation), Ok(versions))
            if generation.as_deref() == Some(claim.generation.as_str())
                && tags_current(&claim.tag_versions, &versions) =>
        {
            (sent, false)
        }
        (Ok(_), Ok(_)) => (started, false),
        _ => (started, true),
    }
}

/// The loader failed (`Err`): release the lock, serve the stale value to this caller if there
/// is one, and end the wait of every waiter at once.
async fn failed<S: Shape>(
    mut ctx: LoadCtx,
    spec: &FnSpec,
    sharing: Option<ErrorSharing<S::Output>>,
    output: S::Output,
) -> S::Output {
    // The claim's lock guard releases the lock.
    ctx.fill = Fill::Nothing;
    let shared = sharing.and_then(|s| s.pack.and_then(|pack| pack(&output)));
    if let Some(leader) = ctx.leader.take() {
        leader.finish(Outcome::Failed(shared));
    }
    match std::mem::replace(&mut ctx.mode, Mode::Miss) {
        Mode::Refresh => refresh::record(Ok(())),
        Mode::Revalidate { stale, foreground } => {
            ctx.cache.record(spec, Event::StaleIfError);
            tracing::warn!(
                function = spec.name,
                "refresh failed; the stale value stays"
            );
            if foreground && let Ok((stale_output, _)) = decode::<S>(&ctx.cache, spec, &stale) {
                return stale_output;
            }
        }
        Mode::Miss => {}
    }
    output
}
