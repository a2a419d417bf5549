//! The read-through path: look up, else load once (per process by single-flight, across
//! processes by a lock), store, and hand the value to everyone waiting.
//!
//! Generated code calls [`begin`], which does every cache round trip up to "someone must run
//! the loader here", then [`Load::run`] with the function body. Round trips on a miss: the
//! lookup; the claim (lock `SET NX PX` pipelined with a second read of the entry and its
//! generation, concurrently with capturing tag versions); the fill script (concurrently with a
//! re-read of the tag versions), which by default runs after the caller has its value (see
//! `Cache::wait_for_writes`). A hit is one round of plain reads: `GET` (or `MGET` of tag
//! versions alongside, and `PTTL` when `stale` or `early_refresh` needs the entry's age);
//! concurrent plain hits share `MGET`s (`store::Batcher`).
//!
//! No stale set: a load records the entry's generation and its tags' versions before it starts.
//! Invalidation, `put` and `refresh` start a new generation, and tag invalidation deletes tag
//! versions, so the fill of a load that began earlier is refused, and an entry whose recorded
//! tag versions differ from the current ones is a miss.

use std::{
    cell::RefCell,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    Cache, Error,
    envelope::{self, EntryMeta},
    flight::{self, LeaderGuard, Outcome, Role, Waited},
    freshness::{self, Freshness},
    key::{self, ArgsKey},
    shape::{Cacheable, ErrorSharing, Shape},
    spec::FnSpec,
    stats::bump,
    store::{EntryKeys, StoredBytes},
};

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

/// A request, set by [`refresh`], that the next cached call skip its lookup and load.
struct RefreshRequest {
    pending: bool,
    outcome: Option<Result<(), Error>>,
}

tokio::task_local! {
    static REFRESH: RefCell<RefreshRequest>;
}

/// Takes the refresh request of an enclosing [`refresh`], so nested cached calls do not see it.
fn take_refresh_request() -> bool {
    REFRESH
        .try_with(|r| std::mem::replace(&mut r.borrow_mut().pending, false))
        .unwrap_or(false)
}

fn record_refresh(outcome: Result<(), Error>) {
    let _ = REFRESH.try_with(|r| r.borrow_mut().outcome = Some(outcome));
}

/// Runs a cached function's call so that it skips the lookup, loads and stores (`NAME_refresh`).
///
/// Returns the function's output once it is stored; `Err` if there is no cache or storing failed.
pub async fn refresh<F: Future>(call: F) -> Result<F::Output, Error> {
    let request = RefCell::new(RefreshRequest {
        pending: true,
        outcome: None,
    });
    REFRESH
        .scope(request, async {
            let output = call.await;
            let outcome = REFRESH.with(|r| r.borrow_mut().outcome.take());
            outcome.unwrap_or(Ok(())).map(|()| output)
        })
        .await
}

/// The keys of one call: entry, lock, generation (one slot) and tag keys. The lock and
/// generation keys are only built on the paths that need them, not on hits.
pub(crate) struct Keys {
    pub(crate) entry: String,
    lock: std::sync::OnceLock<String>,
    generation: std::sync::OnceLock<String>,
    pub(crate) tags: Vec<String>,
}

impl Keys {
    pub(crate) fn new(cache: &Cache, spec: &FnSpec, args: &ArgsKey, tags: &[String]) -> Keys {
        Keys {
            entry: key::entry_key(cache.namespace(), spec.name, spec.version, args),
            lock: std::sync::OnceLock::new(),
            generation: std::sync::OnceLock::new(),
            tags: if tags.is_empty() {
                Vec::new()
            } else {
                tags.iter()
                    .map(|t| key::tag_key(cache.namespace(), t))
                    .collect()
            },
        }
    }

    fn lock(&self) -> &str {
        self.lock.get_or_init(|| format!("{}:lock", self.entry))
    }

    pub(crate) fn entry_keys(&self) -> EntryKeys<'_> {
        let generation = self
            .generation
            .get_or_init(|| format!("{}:gen", self.entry));
        EntryKeys {
            entry: &self.entry,
            lock: self.lock(),
            generation,
        }
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

/// The loader's turn: run it, store the result, tell waiters.
pub struct Load<'a, S: Shape> {
    spec: &'a FnSpec,
    sharing: Option<ErrorSharing<S::Output>>,
    refreshing: bool,
    ctx: Option<LoadCtx>,
}

/// What a load may write, decided before it starts.
pub(crate) struct Claim {
    /// The lock this load owns, if it took one.
    token: Option<String>,
    /// The entry's generation when the load began; the fill is refused if it changed.
    generation: Option<String>,
    /// Tag versions when the load began; recorded in the entry.
    tag_versions: Vec<u64>,
}

/// How the result of a load is stored.
enum Fill {
    Claimed(Claim),
    /// Not at all: another process holds the lock, or Redis is failing.
    Skip,
}

struct LoadCtx {
    cache: Cache,
    keys: Keys,
    leader: Option<LeaderGuard>,
    fill: Fill,
    /// The entry being refreshed, served if the loader fails (stale-if-error).
    stale: Option<StoredBytes>,
}

impl LoadCtx {
    fn token(&self) -> Option<&str> {
        match &self.fill {
            Fill::Claimed(claim) => claim.token.as_deref(),
            Fill::Skip => None,
        }
    }
}

impl Drop for LoadCtx {
    /// A load that is cancelled or panics still releases its lock (in a task, since drop
    /// cannot wait), so other processes need not wait for the lock to expire.
    fn drop(&mut self) {
        if let Fill::Claimed(Claim {
            token: Some(token), ..
        }) = std::mem::replace(&mut self.fill, Fill::Skip)
        {
            let (cache, lock) = (self.cache.clone(), self.keys.lock().to_owned());
            // Outside a runtime the lock is left to expire.
            let _ = self.cache.spawn_write(async move {
                let _ = cache
                    .guarded("unlock", cache.store().unlock(&lock, &token))
                    .await;
            });
        }
    }
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
    /// entry in place.
    pub fn spawn<F>(self, loader: F) -> S::Output
    where
        F: Future<Output = S::Output> + Send + 'static,
        S: 'static,
        S::Output: Send,
    {
        let Refresh { output, spec, ctx } = self;
        let spec = spec.clone();
        let cache = ctx.cache.clone();
        // Outside a runtime there is no refresh: the lock is left to expire.
        let _ = cache.clone().spawn_write(async move {
            let load: Load<'_, S> = Load {
                spec: &spec,
                sharing: None,
                refreshing: false,
                ctx: Some(ctx),
            };
            // Nested cached calls in the body use the same default cache.
            cache
                .scope(async move { drop(load.run(loader).await) })
                .await;
        });
        output
    }

    /// Serves the stale output without refreshing (used when the arguments borrow).
    pub fn serve_stale(self) -> S::Output {
        self.output
    }
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// How long a generation key lives: at least as long as the entries it guards.
pub(crate) fn generation_ttl(cache: &Cache, spec: &FnSpec) -> Duration {
    (spec.ttl(cache) + spec.stale).max(Duration::from_secs(3600))
}

/// Whether an entry's recorded tag versions are all still current.
fn tags_current(recorded: &[u64], current: &[Option<u64>]) -> bool {
    recorded.len() == current.len() && recorded.iter().zip(current).all(|(r, c)| Some(*r) == *c)
}

/// Decodes an entry into the function's output; `Err` says why it is unusable.
fn decode<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    bytes: &[u8],
) -> Result<(S::Output, EntryMeta), String> {
    let decoded =
        envelope::decode::<S::Value>(spec.fingerprint, bytes, cache.inner().max_value_size)
            .map_err(|e| e.to_string())?;
    let output = S::from_cached(decoded.value)
        .ok_or_else(|| "negative entry for a plain return type".to_owned())?;
    Ok((output, decoded.meta))
}

/// An entry that decodes and whose tags are current.
fn usable<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    bytes: &[u8],
    versions: &[Option<u64>],
) -> Option<S::Output> {
    decode::<S>(cache, spec, bytes)
        .ok()
        .filter(|(_, meta)| tags_current(&meta.tag_versions, versions))
        .map(|(o, _)| o)
}

fn record_hit(cache: &Cache, spec: &FnSpec) {
    bump(&cache.inner().counters.hits);
    spec.metrics().hits.increment(1);
}

fn record_miss(cache: &Cache, spec: &FnSpec) {
    bump(&cache.inner().counters.misses);
    spec.metrics().misses.increment(1);
}

/// Takes the lock (if `lock`) and reads the entry and its generation, while capturing tag
/// versions: one round of concurrent requests.
async fn claim(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    lock: bool,
) -> Result<(Claim, bool, Option<StoredBytes>), Error> {
    let token = lock.then(new_token);
    let store = cache.store();
    let (acquired, tags) = futures_util::future::join(
        cache.guarded(
            "lock",
            store.acquire(&keys.entry_keys(), token.as_deref(), spec.lock_ttl()),
        ),
        capture_tags(cache, &keys.tags, spec.ttl(cache) + spec.stale),
    )
    .await;
    let acquired = acquired?;
    let tag_versions = match tags {
        Ok(versions) => versions,
        Err(err) => {
            if acquired.locked
                && let Some(token) = &token
            {
                let _ = cache
                    .guarded("unlock", store.unlock(keys.lock(), token))
                    .await;
            }
            return Err(err);
        }
    };
    let locked = acquired.locked;
    let claim = Claim {
        token: token.filter(|_| locked),
        generation: acquired.generation,
        tag_versions,
    };
    Ok((claim, locked, acquired.current))
}

/// Captures the versions of an entry's tags before its value is produced (none to capture for
/// an untagged function, which costs no request).
pub(crate) async fn capture_tags(
    cache: &Cache,
    tags: &[String],
    ttl: Duration,
) -> Result<Vec<u64>, Error> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    cache
        .guarded("tags", cache.store().capture_tags(tags, ttl))
        .await
}

/// For `NAME_refresh`: starts a new generation of the entry (so loads that began earlier cannot
/// fill) and captures its tags' versions.
async fn claim_for_refresh(cache: &Cache, spec: &FnSpec, keys: &Keys) -> Result<Claim, Error> {
    let generation = cache
        .guarded(
            "bump",
            cache
                .store()
                .bump(&keys.entry_keys(), generation_ttl(cache, spec)),
        )
        .await?;
    let tag_versions = capture_tags(cache, &keys.tags, spec.ttl(cache) + spec.stale).await?;
    Ok(Claim {
        token: None,
        generation: Some(generation),
        tag_versions,
    })
}

/// Everything before the loader: lookup, single-flight, lock, waiting.
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
) -> Begin<'a, S> {
    let refreshing = take_refresh_request();
    let uncached = |sharing| {
        Begin::Load(Load {
            spec,
            sharing,
            refreshing,
            ctx: None,
        })
    };
    let Some(cache) = cache else {
        if refreshing {
            record_refresh(Err(Error::NotInstalled));
        } else {
            warn_not_installed(spec.name);
        }
        return uncached(sharing);
    };
    let keys = match args {
        Ok(args) => Keys::new(&cache, spec, &args, &tags),
        Err(err) => {
            bump(&cache.inner().counters.uncached);
            tracing::warn!(function = spec.name, error = %err, "arguments do not encode to a key; running uncached");
            if refreshing {
                record_refresh(Err(err));
            }
            return uncached(sharing);
        }
    };
    let load = |keys, leader, fill, stale, sharing| {
        let ctx = LoadCtx {
            cache: cache.clone(),
            keys,
            leader,
            fill,
            stale,
        };
        Begin::Load(Load {
            spec,
            sharing,
            refreshing,
            ctx: Some(ctx),
        })
    };

    if refreshing {
        // NAME_refresh: a new generation (earlier loads can no longer fill), then load.
        return match Box::pin(claim_for_refresh(&cache, spec, &keys)).await {
            Ok(claim) => load(keys, None, Fill::Claimed(claim), None, sharing),
            Err(err) => {
                record_refresh(Err(err));
                load(keys, None, Fill::Skip, None, sharing)
            }
        };
    }

    // Lookup: one round of plain reads.
    let read = cache
        .guarded(
            "get",
            cache
                .store()
                .read(&keys.entry, &keys.tags, spec.needs_age()),
        )
        .await;
    let redis_ok = match read {
        Ok(read) => match read
            .current
            .as_ref()
            .map(|bytes| decode::<S>(&cache, spec, bytes))
        {
            Some(Ok((output, meta))) if tags_current(&meta.tag_versions, &read.tag_versions) => {
                // Without a remaining TTL (no `stale`, no `early_refresh`) an entry is fresh.
                let u = if read.ttl.is_some() {
                    1.0 - fastrand::f64()
                } else {
                    1.0
                };
                match freshness::classify(
                    read.ttl,
                    meta.stale,
                    meta.load_time,
                    spec.early_refresh,
                    u,
                ) {
                    Freshness::Fresh => {
                        record_hit(&cache, spec);
                        return Begin::Done(output);
                    }
                    state => {
                        let bytes = read.current.unwrap_or(StoredBytes::Owned(Vec::new()));
                        // Boxed, like the other cold paths, to keep the hit's future small.
                        return Box::pin(start_refresh(
                            &cache, spec, state, output, bytes, keys, can_spawn,
                        ))
                        .await;
                    }
                }
            }
            Some(Ok(_)) => {
                // A tag was invalidated since this entry was loaded.
                bump(&cache.inner().counters.tag_misses);
                record_miss(&cache, spec);
                true
            }
            Some(Err(reason)) => {
                // A miss: the load that follows overwrites the entry.
                bump(&cache.inner().counters.decode_errors);
                tracing::debug!(
                    function = spec.name,
                    key = keys.entry,
                    reason,
                    "undecodable entry treated as a miss"
                );
                record_miss(&cache, spec);
                true
            }
            None => {
                record_miss(&cache, spec);
                true
            }
        },
        Err(_) => {
            spec.metrics().errors.increment(1);
            false
        }
    };

    // Miss: one loader per key in this process; the leader coordinates with other processes.
    let patience = spec.lock_ttl();
    let flights = cache.inner().flights.clone();
    loop {
        let leader = match flights.join(&keys.entry) {
            Role::Leader(leader) => leader,
            Role::Waiter(flight) => {
                match Box::pin(flight::wait(&flights, &keys.entry, flight, patience)).await {
                    Waited::TookOver(leader) => leader,
                    Waited::Outcome(Outcome::Value(bytes)) => {
                        match decode::<S>(&cache, spec, &bytes) {
                            Ok((output, _)) => return Begin::Done(output),
                            Err(_) => continue,
                        }
                    }
                    Waited::Outcome(Outcome::Error(shared)) => {
                        match sharing.as_ref().and_then(|s| (s.unpack)(&*shared)) {
                            Some(output) => return Begin::Done(output),
                            None => continue,
                        }
                    }
                    Waited::Outcome(Outcome::Running | Outcome::Abandoned) => continue,
                }
            }
        };
        if !redis_ok {
            // Redis is failing: do not pay a second timeout to lock or store.
            return load(keys, Some(leader), Fill::Skip, None, sharing);
        }
        return match Box::pin(lead::<S>(&cache, spec, &leader, &keys)).await {
            Led::Done(output, bytes) => {
                leader.finish(Outcome::Value(bytes));
                Begin::Done(output)
            }
            Led::Load(fill) => load(keys, Some(leader), fill, None, sharing),
        };
    }
}

enum Led<T> {
    /// Another process's value arrived.
    Done(T, Arc<[u8]>),
    /// Load here, storing as this says.
    Load(Fill),
}

/// The in-process leader of a miss: take the lock, or wait for the process that holds it.
async fn lead<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    leader: &LeaderGuard,
    keys: &Keys,
) -> Led<S::Output> {
    let started = Instant::now();
    let lock_wait = spec.lock_wait(cache.last_load_time(spec.name));
    let mut delay = Duration::from_millis(1);
    let mut waited = false;
    let mut try_lock = true;
    loop {
        leader.beat();
        if try_lock {
            let Ok((claim, locked, current)) = claim(cache, spec, keys, spec.lock).await else {
                return Led::Load(Fill::Skip);
            };
            let versions: Vec<Option<u64>> = claim.tag_versions.iter().copied().map(Some).collect();
            // A fill may have landed between our lookup and now.
            if let Some(bytes) = current
                && let Some(output) = usable::<S>(cache, spec, &bytes, &versions)
            {
                if let Some(token) = &claim.token {
                    let _ = cache
                        .guarded("unlock", cache.store().unlock(keys.lock(), token))
                        .await;
                }
                return Led::Done(output, Arc::from(&*bytes));
            }
            if locked || !spec.lock {
                return Led::Load(Fill::Claimed(claim));
            }
            try_lock = false;
            waited = true;
        } else {
            let (polled, versions) = futures_util::future::join(
                cache.guarded("poll", cache.store().poll(&keys.entry_keys())),
                cache.guarded("tags", cache.store().tag_versions(&keys.tags)),
            )
            .await;
            let (Ok((current, locked)), Ok(versions)) = (polled, versions) else {
                return Led::Load(Fill::Skip);
            };
            if let Some(bytes) = current
                && let Some(output) = usable::<S>(cache, spec, &bytes, &versions)
            {
                if waited {
                    bump(&cache.inner().counters.lock_waits);
                }
                return Led::Done(output, Arc::from(&*bytes));
            }
            if !locked {
                // Lock free and no usable value: the holder stored nothing, or died. Take it.
                try_lock = true;
                continue;
            }
        }
        if started.elapsed() >= lock_wait {
            // Give up waiting: load here, but do not store (the lock holder will).
            bump(&cache.inner().counters.lock_timeouts);
            tracing::debug!(
                function = spec.name,
                key = keys.entry,
                ?lock_wait,
                "lock wait elapsed; loading without the lock"
            );
            return Led::Load(Fill::Skip);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(5));
    }
}

/// A stale or early-expiring hit: serve it, and let exactly one caller refresh it.
async fn start_refresh<'a, S: Shape>(
    cache: &Cache,
    spec: &'a FnSpec,
    state: Freshness,
    output: S::Output,
    bytes: StoredBytes,
    keys: Keys,
    can_spawn: bool,
) -> Begin<'a, S> {
    record_hit(cache, spec);
    if state == Freshness::Stale {
        bump(&cache.inner().counters.stale_serves);
        spec.metrics().stale.increment(1);
    }
    let flights = &cache.inner().flights;
    if flights.is_running(&keys.entry) {
        return Begin::Done(output);
    }
    let Role::Leader(leader) = flights.join(&keys.entry) else {
        return Begin::Done(output);
    };
    let claim = match claim(cache, spec, &keys, spec.lock).await {
        Ok((claim, locked, current)) if locked || !spec.lock => {
            // A refresh may have landed between our read and the lock (its fill freed the
            // lock): then the entry changed, and there is nothing left to refresh.
            if let Some(current) = current
                && *current != *bytes
            {
                if let Some(token) = &claim.token {
                    let _ = cache
                        .guarded("unlock", cache.store().unlock(keys.lock(), token))
                        .await;
                }
                leader.finish(Outcome::Abandoned);
                return Begin::Done(output);
            }
            claim
        }
        // Another process is refreshing, or Redis is failing: serve what we have.
        _ => return Begin::Done(output),
    };
    bump(&cache.inner().counters.refreshes);
    let ctx = LoadCtx {
        cache: cache.clone(),
        keys,
        leader: Some(leader),
        fill: Fill::Claimed(claim),
        stale: Some(bytes),
    };
    if can_spawn {
        return Begin::Refresh(Refresh { output, spec, ctx });
    }
    // Foreground: this caller reloads; concurrent callers keep getting the stale value.
    drop(output);
    Begin::Load(Load {
        spec,
        sharing: None,
        refreshing: false,
        ctx: Some(ctx),
    })
}

impl<S: Shape> Load<'_, S> {
    /// Runs the loader, stores its result and tells waiters; returns the loader's output (or,
    /// when refreshing a stale entry and the loader fails, the stale value).
    pub async fn run<F: Future<Output = S::Output>>(self, loader: F) -> S::Output {
        let Load {
            spec,
            sharing,
            refreshing,
            ctx,
        } = self;
        let Some(mut ctx) = ctx else {
            return loader.await;
        };
        let started = Instant::now();
        // Boxed: the loader's future need not be part of every call's (a hit's) future.
        let output = Box::pin(drive(&ctx, spec, loader)).await;
        let load_time = started.elapsed();
        let cache = ctx.cache.clone();
        cache.record_load_time(spec.name, load_time);
        bump(&cache.inner().counters.loads);
        spec.metrics().loads.increment(1);
        spec.metrics().load_seconds.record(load_time.as_secs_f64());

        let (value, ttl, stale, store) = match S::cacheable(&output) {
            Cacheable::Value(v) => (Some(v), spec.jittered(spec.ttl(&cache)), spec.stale, true),
            Cacheable::Negative => (None, spec.none_ttl(&cache), Duration::ZERO, spec.cache_none),
            Cacheable::Skip => {
                return Box::pin(failed::<S>(ctx, spec, sharing, refreshing, output)).await;
            }
        };
        if matches!(ctx.fill, Fill::Skip)
            && !ctx.leader.as_ref().is_some_and(LeaderGuard::has_waiters)
        {
            // Nothing to store and nobody to hand bytes to (Redis is failing): skip encoding.
            if let Some(leader) = ctx.leader.take() {
                leader.finish(Outcome::Abandoned);
            }
            return output;
        }
        let tag_versions = match &ctx.fill {
            Fill::Claimed(claim) => claim.tag_versions.clone(),
            Fill::Skip => Vec::new(),
        };
        let meta = EntryMeta {
            ttl,
            stale,
            load_time,
            tag_versions,
        };
        let bytes = match encode(&cache, spec, value, &meta) {
            Ok(bytes) => bytes,
            Err(err) => {
                release(&mut ctx).await;
                if refreshing {
                    record_refresh(Err(err));
                }
                return output;
            }
        };
        let background = cache.inner().fill_in_background && cache.store().is_remote();
        if background && !refreshing && matches!(ctx.fill, Fill::Claimed(_)) {
            // The caller has its value; the fill (and the waiters' wake-up) need not delay it.
            // The flight stays open until the fill lands, so callers arriving meanwhile join it.
            let settling = Box::pin(settle(ctx, spec.name, bytes, store, ttl + stale));
            if let Err(settling) = cache.start_write(async move { drop(settling.await) }) {
                settling.await;
            }
            return output;
        }
        let stored = Box::pin(settle(ctx, spec.name, bytes, store, ttl + stale)).await;
        if refreshing {
            record_refresh(stored.map(drop));
        }
        output
    }
}

/// Stores a load's entry, then hands the outcome to the flight's waiters; or, when the result
/// is not to be stored, hands it over and releases the lock (so no later call joins the flight).
async fn settle(
    mut ctx: LoadCtx,
    function: &'static str,
    bytes: Vec<u8>,
    store: bool,
    ttl: Duration,
) -> Result<bool, Error> {
    if !store {
        if let Some(leader) = ctx.leader.take() {
            leader.finish(Outcome::Value(bytes.into()));
        }
        release(&mut ctx).await;
        return Ok(true);
    }
    let stored = write(&mut ctx, &bytes, ttl).await;
    if let Err(err) = &stored {
        tracing::debug!(function, key = ctx.keys.entry, error = %err, "entry not stored");
    }
    if let Some(leader) = ctx.leader.take() {
        // A refused fill means an invalidation overtook this load: waiters reload.
        match stored {
            Ok(false) => leader.finish(Outcome::Abandoned),
            _ => leader.finish(Outcome::Value(bytes.into())),
        }
    }
    stored
}

/// Polls the loader while beating the flight's heartbeat and renewing the lock.
async fn drive<F: Future>(ctx: &LoadCtx, spec: &FnSpec, loader: F) -> F::Output {
    let period = spec.lock_ttl() / 3;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tokio::pin!(loader);
    loop {
        tokio::select! {
            biased;
            output = &mut loader => return output,
            _ = ticks.tick() => {
                if let Some(leader) = &ctx.leader {
                    leader.beat();
                }
                if let Some(token) = ctx.token() {
                    let renewed = ctx.cache.guarded("renew", ctx.cache.store().renew(ctx.keys.lock(), token, spec.lock_ttl())).await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::debug!(function = spec.name, key = ctx.keys.entry, "lost the lock while loading; the result will not be stored");
                    }
                }
            }
        }
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    cache: &Cache,
    spec: &FnSpec,
    value: Option<&T>,
    meta: &EntryMeta,
) -> Result<Vec<u8>, Error> {
    let bytes =
        envelope::encode(spec.fingerprint, value, meta).map_err(|e| Error::Encode(e.to_string()));
    let bytes = bytes.and_then(|b| {
        let max = cache.inner().max_value_size;
        if b.len() > max {
            Err(Error::ValueTooLarge { size: b.len(), max })
        } else {
            Ok(b)
        }
    });
    if bytes.is_err() {
        bump(&cache.inner().counters.uncached);
    }
    bytes
}

/// Stores the entry if no invalidation overtook the load; `Ok(false)` when refused.
async fn write(ctx: &mut LoadCtx, bytes: &[u8], ttl: Duration) -> Result<bool, Error> {
    let Fill::Claimed(claim) = std::mem::replace(&mut ctx.fill, Fill::Skip) else {
        return Ok(true);
    };
    let cache = &ctx.cache;
    let store = cache.store();
    let (filled, versions) = futures_util::future::join(
        cache.guarded(
            "fill",
            store.fill(
                &ctx.keys.entry_keys(),
                claim.token.as_deref(),
                claim.generation.as_deref(),
                bytes,
                ttl,
            ),
        ),
        async {
            if ctx.keys.tags.is_empty() {
                return Ok(Vec::new());
            }
            cache
                .guarded("tags", store.tag_versions(&ctx.keys.tags))
                .await
        },
    )
    .await;
    let filled = filled? && tags_current(&claim.tag_versions, &versions?);
    if filled {
        bump(&cache.inner().counters.stores);
    } else {
        // The entry was invalidated, put or refreshed since the load began, or its lock expired
        // and was taken: the value may be older than what is there now.
        bump(&cache.inner().counters.fills_rejected);
    }
    Ok(filled)
}

/// Releases the lock without storing.
async fn release(ctx: &mut LoadCtx) {
    if let Fill::Claimed(Claim {
        token: Some(token), ..
    }) = std::mem::replace(&mut ctx.fill, Fill::Skip)
    {
        let _ = ctx
            .cache
            .guarded("unlock", ctx.cache.store().unlock(ctx.keys.lock(), &token))
            .await;
    }
}

/// The loader failed (`Err`): release the lock, serve the stale value if there is one, share the
/// error with waiters when it can be cloned, else let them regroup.
async fn failed<S: Shape>(
    mut ctx: LoadCtx,
    spec: &FnSpec,
    sharing: Option<ErrorSharing<S::Output>>,
    refreshing: bool,
    output: S::Output,
) -> S::Output {
    release(&mut ctx).await;
    if refreshing {
        record_refresh(Ok(()));
    }
    let leader = ctx.leader.take();
    if let Some(stale) = ctx.stale.take()
        && let Ok((stale_output, _)) = decode::<S>(&ctx.cache, spec, &stale)
    {
        bump(&ctx.cache.inner().counters.stale_if_error);
        spec.metrics().errors.increment(1);
        tracing::warn!(
            function = spec.name,
            key = ctx.keys.entry,
            "loader failed; serving the stale value"
        );
        if let Some(leader) = leader {
            leader.finish(Outcome::Value(Arc::from(&*stale)));
        }
        return stale_output;
    }
    if let Some(leader) = leader {
        match sharing.and_then(|s| (s.pack)(&output)) {
            Some(shared) => leader.finish(Outcome::Error(shared)),
            None => leader.finish(Outcome::Abandoned),
        }
    }
    output
}
