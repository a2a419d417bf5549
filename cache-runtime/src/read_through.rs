//! The read-through path: look up, else load once (per process by single-flight, across
//! processes by a lock), store, and hand the value to everyone waiting.
//!
//! Generated code calls [`begin`], which does every cache round trip up to "someone must run
//! the loader here", then [`Load::run`] with the function body. Round trips on a miss: the
//! lookup; the lock (`SET NX PX`, pipelined with a second read of the entry); the fill-and-release
//! script. A hit is one `GET` (plus `PTTL` in the same pipeline when `stale` or `early_refresh`
//! needs the entry's age).

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
    stats::{bump, metric},
    store::StoredBytes,
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

/// How the result of a load is stored.
enum Fill {
    /// With the lock this token owns (fill-and-release script).
    Locked(String),
    /// With a plain `SET` (no lock in use).
    Plain,
    /// Not at all: another process holds the lock, or Redis is failing.
    Skip,
}

struct LoadCtx {
    cache: Cache,
    key: String,
    lock_key: String,
    leader: Option<LeaderGuard>,
    fill: Fill,
    /// The entry being refreshed, served if the loader fails (stale-if-error).
    stale: Option<StoredBytes>,
}

impl Drop for LoadCtx {
    /// A load that is cancelled or panics still releases its lock (in a task, since drop
    /// cannot wait), so other processes need not wait for the lock to expire.
    fn drop(&mut self) {
        if let Fill::Locked(token) = std::mem::replace(&mut self.fill, Fill::Skip)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (cache, lock_key) = (self.cache.clone(), std::mem::take(&mut self.lock_key));
            runtime.spawn(async move {
                let _ = cache
                    .guarded("unlock", cache.store().unlock(&lock_key, &token))
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
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let spec = spec.clone();
            let cache = ctx.cache.clone();
            runtime.spawn(async move {
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
        }
        output
    }

    /// Serves the stale output without refreshing (used when the arguments borrow).
    pub fn serve_stale(self) -> S::Output {
        self.output
    }
}

fn lock_key(key: &str) -> String {
    // Same hash tag as the entry: same cluster slot.
    format!("{key}:lock")
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
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

fn record_hit(cache: &Cache, spec: &FnSpec) {
    bump(&cache.inner().counters.hits);
    metrics::counter!(metric::HITS, "function" => spec.name).increment(1);
}

fn record_miss(cache: &Cache, spec: &FnSpec) {
    bump(&cache.inner().counters.misses);
    metrics::counter!(metric::MISSES, "function" => spec.name).increment(1);
}

/// Everything before the loader: lookup, single-flight, lock, waiting.
///
/// Never fails because of the cache: without a cache, with an unusable key, or with Redis
/// failing, it ends in [`Begin::Load`] and the loader's output is returned.
pub async fn begin<'a, S: Shape>(
    cache: Option<Cache>,
    spec: &'a FnSpec,
    args: Result<ArgsKey, Error>,
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
    let key = match args {
        Ok(args) => key::entry_key(cache.namespace(), spec.name, spec.version, &args),
        Err(err) => {
            bump(&cache.inner().counters.uncached);
            tracing::warn!(function = spec.name, error = %err, "arguments do not encode to a key; running uncached");
            if refreshing {
                record_refresh(Err(err));
            }
            return uncached(sharing);
        }
    };
    let lock_key = lock_key(&key);
    let ctx = |leader, fill, stale| LoadCtx {
        cache: cache.clone(),
        key: key.clone(),
        lock_key: lock_key.clone(),
        leader,
        fill,
        stale,
    };

    if refreshing {
        // NAME_refresh: skip the lookup, store with a plain SET.
        return Begin::Load(Load {
            spec,
            sharing,
            refreshing,
            ctx: Some(ctx(None, Fill::Plain, None)),
        });
    }

    // Lookup: one round trip of plain reads.
    let looked_up = if spec.needs_age() {
        cache.guarded("get", cache.store().get_with_ttl(&key)).await
    } else {
        cache
            .guarded("get", cache.store().get(&key))
            .await
            .map(|bytes| (bytes, None))
    };
    let redis_ok = match looked_up {
        Ok((Some(bytes), remaining)) => match decode::<S>(&cache, spec, &bytes) {
            Ok((output, meta)) => {
                let u = 1.0 - fastrand::f64();
                match freshness::classify(
                    remaining,
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
                        return start_refresh(
                            &cache, spec, state, output, bytes, ctx, can_spawn, &key, &lock_key,
                        )
                        .await;
                    }
                }
            }
            Err(reason) => {
                // A miss: the load that follows overwrites the entry.
                bump(&cache.inner().counters.decode_errors);
                tracing::debug!(
                    function = spec.name,
                    key,
                    reason,
                    "undecodable entry treated as a miss"
                );
                record_miss(&cache, spec);
                true
            }
        },
        Ok((None, _)) => {
            record_miss(&cache, spec);
            true
        }
        Err(_) => {
            metrics::counter!(metric::ERRORS, "function" => spec.name).increment(1);
            false
        }
    };

    // Miss: one loader per key in this process; the leader coordinates with other processes.
    let patience = spec.lock_ttl();
    let flights = cache.inner().flights.clone();
    loop {
        let leader = match flights.join(&key) {
            Role::Leader(leader) => leader,
            Role::Waiter(flight) => match flight::wait(&flights, &key, flight, patience).await {
                Waited::TookOver(leader) => leader,
                Waited::Outcome(Outcome::Value(bytes)) => match decode::<S>(&cache, spec, &bytes) {
                    Ok((output, _)) => return Begin::Done(output),
                    Err(_) => continue,
                },
                Waited::Outcome(Outcome::Error(shared)) => {
                    match sharing.as_ref().and_then(|s| (s.unpack)(&*shared)) {
                        Some(output) => return Begin::Done(output),
                        None => continue,
                    }
                }
                Waited::Outcome(Outcome::Running | Outcome::Abandoned) => continue,
            },
        };
        if !redis_ok {
            // Redis is failing: do not pay a second timeout to lock or store.
            return Begin::Load(Load {
                spec,
                sharing,
                refreshing,
                ctx: Some(ctx(Some(leader), Fill::Skip, None)),
            });
        }
        if !spec.lock {
            return Begin::Load(Load {
                spec,
                sharing,
                refreshing,
                ctx: Some(ctx(Some(leader), Fill::Plain, None)),
            });
        }
        return lead(&cache, spec, leader, &key, &lock_key, sharing, ctx).await;
    }
}

/// The in-process leader of a miss: take the lock, or wait for the process that holds it.
async fn lead<'a, S: Shape>(
    cache: &Cache,
    spec: &'a FnSpec,
    leader: LeaderGuard,
    key: &str,
    lock_key: &str,
    sharing: Option<ErrorSharing<S::Output>>,
    ctx: impl Fn(Option<LeaderGuard>, Fill, Option<StoredBytes>) -> LoadCtx,
) -> Begin<'a, S> {
    let load = |leader, fill| {
        Begin::Load(Load {
            spec,
            sharing: None,
            refreshing: false,
            ctx: Some(ctx(Some(leader), fill, None)),
        })
    };
    let started = Instant::now();
    let last_load = cache.last_load_time(spec.name);
    let lock_wait = spec.lock_wait(last_load);
    let mut delay = Duration::from_millis(1);
    let token = new_token();
    let mut try_lock = true;
    let mut waited = false;
    loop {
        leader.beat();
        let (locked, current) = if try_lock {
            match cache
                .guarded(
                    "lock",
                    cache
                        .store()
                        .acquire(key, lock_key, &token, spec.lock_ttl()),
                )
                .await
            {
                Ok(acquired) => (Some(acquired.locked), acquired.current),
                Err(_) => return with_sharing(load(leader, Fill::Skip), sharing),
            }
        } else {
            match cache
                .guarded("poll", cache.store().poll(key, lock_key))
                .await
            {
                Ok(polled) => (polled.locked.then_some(false), polled.current),
                Err(_) => return with_sharing(load(leader, Fill::Skip), sharing),
            }
        };
        // The value may have arrived: another process filled it.
        if let Some(bytes) = current
            && let Ok((output, _)) = decode::<S>(cache, spec, &bytes)
        {
            if locked == Some(true) {
                let _ = cache
                    .guarded("unlock", cache.store().unlock(lock_key, &token))
                    .await;
            }
            if waited {
                bump(&cache.inner().counters.lock_waits);
            }
            leader.finish(Outcome::Value(Arc::from(&*bytes)));
            return Begin::Done(output);
        }
        match locked {
            Some(true) => return with_sharing(load(leader, Fill::Locked(token)), sharing),
            // Lock free and no value: the holder finished without storing, or died. Take it.
            None => {
                try_lock = true;
                continue;
            }
            Some(false) => {
                try_lock = false;
                waited = true;
            }
        }
        if started.elapsed() >= lock_wait {
            // Give up waiting: load here, but do not store (the lock holder will).
            bump(&cache.inner().counters.lock_timeouts);
            tracing::debug!(
                function = spec.name,
                key,
                ?lock_wait,
                "lock wait elapsed; loading without the lock"
            );
            return with_sharing(load(leader, Fill::Skip), sharing);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(5));
    }
}

fn with_sharing<'a, S: Shape>(
    begin: Begin<'a, S>,
    sharing: Option<ErrorSharing<S::Output>>,
) -> Begin<'a, S> {
    match begin {
        Begin::Load(load) => Begin::Load(Load { sharing, ..load }),
        other => other,
    }
}

/// A stale or early-expiring hit: serve it, and let exactly one caller refresh it.
#[allow(clippy::too_many_arguments)]
async fn start_refresh<'a, S: Shape>(
    cache: &Cache,
    spec: &'a FnSpec,
    state: Freshness,
    output: S::Output,
    bytes: StoredBytes,
    ctx: impl Fn(Option<LeaderGuard>, Fill, Option<StoredBytes>) -> LoadCtx,
    can_spawn: bool,
    key: &str,
    lock_key: &str,
) -> Begin<'a, S> {
    record_hit(cache, spec);
    if state == Freshness::Stale {
        bump(&cache.inner().counters.stale_serves);
        metrics::counter!(metric::STALE, "function" => spec.name).increment(1);
    }
    let flights = &cache.inner().flights;
    if flights.is_running(key) {
        return Begin::Done(output);
    }
    let Role::Leader(leader) = flights.join(key) else {
        return Begin::Done(output);
    };
    let fill = if spec.lock {
        let token = new_token();
        match cache
            .guarded(
                "lock",
                cache
                    .store()
                    .acquire(key, lock_key, &token, spec.lock_ttl()),
            )
            .await
        {
            Ok(acquired) if acquired.locked => Fill::Locked(token),
            // Another process is refreshing, or Redis is failing: serve what we have.
            _ => return Begin::Done(output),
        }
    } else {
        Fill::Plain
    };
    bump(&cache.inner().counters.refreshes);
    if can_spawn {
        // The stale bytes stay with the refresh: if its loader fails, waiters get them.
        let ctx = ctx(Some(leader), fill, Some(bytes));
        return Begin::Refresh(Refresh { output, spec, ctx });
    }
    // Foreground: this caller reloads; concurrent callers keep getting the stale value.
    drop(output);
    Begin::Load(Load {
        spec,
        sharing: None,
        refreshing: false,
        ctx: Some(ctx(Some(leader), fill, Some(bytes))),
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
        let output = drive(&ctx, spec, loader).await;
        let load_time = started.elapsed();
        let cache = ctx.cache.clone();
        cache.record_load_time(spec.name, load_time);
        bump(&cache.inner().counters.loads);
        metrics::counter!(metric::LOADS, "function" => spec.name).increment(1);
        metrics::histogram!(metric::LOAD_SECONDS, "function" => spec.name)
            .record(load_time.as_secs_f64());

        let (value, ttl, stale, store) = match S::cacheable(&output) {
            Cacheable::Value(v) => (Some(v), spec.jittered(spec.ttl(&cache)), spec.stale, true),
            Cacheable::Negative => (None, spec.none_ttl(&cache), Duration::ZERO, spec.cache_none),
            Cacheable::Skip => return failed::<S>(ctx, spec, sharing, refreshing, output).await,
        };
        let meta = EntryMeta {
            ttl,
            stale,
            load_time,
            tag_versions: Vec::new(),
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
        let stored = if store {
            write(&mut ctx, &bytes, ttl + stale).await
        } else {
            release(&mut ctx).await;
            Ok(())
        };
        if let Err(err) = &stored {
            tracing::debug!(function = spec.name, key = ctx.key, error = %err, "entry not stored");
        }
        if refreshing {
            record_refresh(stored);
        }
        if let Some(leader) = ctx.leader.take() {
            leader.finish(Outcome::Value(bytes.into()));
        }
        output
    }
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
                if let Fill::Locked(token) = &ctx.fill {
                    let renewed = ctx.cache.guarded("renew", ctx.cache.store().renew(&ctx.lock_key, token, spec.lock_ttl())).await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::debug!(function = spec.name, key = ctx.key, "lost the lock while loading; the result will not be stored");
                    }
                }
            }
        }
    }
}

fn encode<T: Serialize + ?Sized>(
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

/// Stores the entry the way this load is allowed to (and so gives up the lock).
async fn write(ctx: &mut LoadCtx, bytes: &[u8], ttl: Duration) -> Result<(), Error> {
    let cache = &ctx.cache;
    match std::mem::replace(&mut ctx.fill, Fill::Skip) {
        Fill::Locked(token) => {
            let filled = cache
                .guarded(
                    "fill",
                    cache
                        .store()
                        .fill(&ctx.key, &ctx.lock_key, &token, bytes, ttl),
                )
                .await?;
            if filled {
                bump(&cache.inner().counters.stores);
            } else {
                // The lock expired and someone else took it, or it was invalidated: our value
                // may be older than theirs, so it is not written.
                bump(&cache.inner().counters.fills_rejected);
            }
            Ok(())
        }
        Fill::Plain => cache.store_set(&ctx.key, bytes.to_vec(), ttl).await,
        Fill::Skip => Ok(()),
    }
}

/// Releases the lock without storing.
async fn release(ctx: &mut LoadCtx) {
    if let Fill::Locked(token) = std::mem::replace(&mut ctx.fill, Fill::Skip) {
        let _ = ctx
            .cache
            .guarded("unlock", ctx.cache.store().unlock(&ctx.lock_key, &token))
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
        metrics::counter!(metric::ERRORS, "function" => spec.name).increment(1);
        tracing::warn!(
            function = spec.name,
            key = ctx.key,
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

/// `NAME_put`: stores a known value under the function's key (write-through).
pub async fn put<T: Serialize + ?Sized>(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    value: &T,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let key = key::entry_key(cache.namespace(), spec.name, spec.version, &args?);
    let ttl = spec.jittered(spec.ttl(&cache));
    let meta = EntryMeta {
        ttl,
        stale: spec.stale,
        load_time: Duration::ZERO,
        tag_versions: Vec::new(),
    };
    let bytes = encode(&cache, spec, Some(value), &meta)?;
    cache.store_set(&key, bytes, ttl + spec.stale).await
}

/// `NAME_invalidate`: drops the function's entry for these arguments.
pub async fn invalidate(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let key = key::entry_key(cache.namespace(), spec.name, spec.version, &args?);
    cache.store_delete(&key).await
}

/// `NAME_key`: the full key for these arguments. Without a cache the namespace is `cache`
/// (the builder's default); when the arguments do not encode, the key says so and is never
/// written.
pub fn key_string(cache: Option<Cache>, spec: &FnSpec, args: Result<ArgsKey, Error>) -> String {
    let namespace = cache.as_ref().map_or("cache", |c| c.namespace());
    match args {
        Ok(args) => key::entry_key(namespace, spec.name, spec.version, &args),
        Err(err) => format!(
            "{namespace}:{}:v{}:!unencodable({err})",
            spec.name, spec.version
        ),
    }
}
