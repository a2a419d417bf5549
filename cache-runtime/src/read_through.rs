//! The read-through path and the generated helpers' runtime halves.
//!
//! Generated code calls these through the facade's hidden `__private` module; users never
//! call them directly.

use std::{
    cell::RefCell,
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    Cache, Error,
    envelope::{self, EntryMeta},
    key::{self, ArgsKey},
    shape::{Cacheable, Shape},
    stats::{bump, metric},
};

/// Longest TTL a negative result gets by default.
const DEFAULT_NONE_TTL_CAP: Duration = Duration::from_secs(60);

/// What the attribute says about one function; built by generated code at each call.
#[derive(Debug, Clone)]
pub struct FnSpec {
    /// Stable name in keys: `name = "..."` or `module_path::fn`.
    pub name: &'static str,
    /// `version = N`.
    pub version: u32,
    /// Hash of the return type's tokens and `version`.
    pub fingerprint: u64,
    /// `ttl`; `None` uses the cache's default.
    pub ttl: Option<Duration>,
    /// `none_ttl`; `None` uses min(ttl, 60 s).
    pub none_ttl: Option<Duration>,
    /// `cache_none`.
    pub cache_none: bool,
    /// `jitter`: fraction of the TTL by which expiries are spread (shortened).
    pub jitter: f64,
}

impl FnSpec {
    fn ttl(&self, cache: &Cache) -> Duration {
        self.ttl.unwrap_or(cache.inner().default_ttl)
    }

    fn none_ttl(&self, cache: &Cache) -> Duration {
        self.none_ttl
            .unwrap_or_else(|| self.ttl(cache).min(DEFAULT_NONE_TTL_CAP))
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        let cut = ttl.mul_f64(self.jitter.min(1.0) * fastrand::f64());
        ttl.saturating_sub(cut).max(Duration::from_millis(1))
    }
}

/// Converts a `ttl = EXPR` constant: whole seconds or a `Duration`.
pub trait IntoTtl {
    /// The TTL as a duration.
    fn into_ttl(self) -> Duration;
}

impl IntoTtl for u64 {
    fn into_ttl(self) -> Duration {
        Duration::from_secs(self)
    }
}

impl IntoTtl for u32 {
    fn into_ttl(self) -> Duration {
        Duration::from_secs(u64::from(self))
    }
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Duration {
        self
    }
}

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

/// The body of every `#[redis_cached]` function: look up, else load and store.
///
/// Never fails because of the cache: without a cache, with an unusable key, or with Redis
/// failing, it runs `load` and returns its output.
pub async fn read_through<S, F>(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    load: F,
) -> S::Output
where
    S: Shape,
    F: Future<Output = S::Output>,
{
    let refreshing = take_refresh_request();
    let Some(cache) = cache else {
        if refreshing {
            record_refresh(Err(Error::NotInstalled));
        } else {
            warn_not_installed(spec.name);
        }
        return load.await;
    };
    let counters = &cache.inner().counters;
    let key = match args {
        Ok(args) => entry_key(&cache, spec, &args),
        Err(err) => {
            bump(&counters.uncached);
            tracing::warn!(function = spec.name, error = %err, "arguments do not encode to a key; running uncached");
            if refreshing {
                record_refresh(Err(err));
            }
            return load.await;
        }
    };

    let mut store_after_load = true;
    if !refreshing {
        match lookup::<S>(&cache, spec, &key).await {
            Lookup::Hit(output) => return output,
            Lookup::Miss => {}
            // Redis is failing: do not pay a second timeout to store.
            Lookup::Unavailable => store_after_load = false,
        }
    }

    let started = Instant::now();
    let output = load.await;
    let load_time = started.elapsed();
    bump(&counters.loads);
    metrics::counter!(metric::LOADS, "function" => spec.name).increment(1);
    metrics::histogram!(metric::LOAD_SECONDS, "function" => spec.name)
        .record(load_time.as_secs_f64());

    if store_after_load || refreshing {
        let stored = store::<S>(&cache, spec, &key, &output, load_time).await;
        if let Err(err) = &stored {
            tracing::debug!(function = spec.name, key, error = %err, "entry not stored");
        }
        if refreshing {
            record_refresh(stored);
        }
    }
    output
}

enum Lookup<T> {
    Hit(T),
    Miss,
    Unavailable,
}

async fn lookup<S: Shape>(cache: &Cache, spec: &FnSpec, key: &str) -> Lookup<S::Output> {
    let inner = cache.inner();
    let bytes = match cache.store_get(key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            record_miss(cache, spec);
            return Lookup::Miss;
        }
        Err(_) => {
            metrics::counter!(metric::ERRORS, "function" => spec.name).increment(1);
            return Lookup::Unavailable;
        }
    };
    let decoded = envelope::decode::<S::Value>(spec.fingerprint, &bytes, inner.max_value_size)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            S::from_cached(d.value)
                .ok_or_else(|| "negative entry for a plain return type".to_owned())
        });
    match decoded {
        Ok(output) => {
            bump(&inner.counters.hits);
            metrics::counter!(metric::HITS, "function" => spec.name).increment(1);
            Lookup::Hit(output)
        }
        Err(reason) => {
            // A miss: the load that follows overwrites the entry.
            bump(&inner.counters.decode_errors);
            tracing::debug!(
                function = spec.name,
                key,
                reason,
                "undecodable entry treated as a miss"
            );
            record_miss(cache, spec);
            Lookup::Miss
        }
    }
}

fn record_miss(cache: &Cache, spec: &FnSpec) {
    bump(&cache.inner().counters.misses);
    metrics::counter!(metric::MISSES, "function" => spec.name).increment(1);
}

/// Stores a loader output according to its shape; `Ok` also when the shape says not to store.
async fn store<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    key: &str,
    output: &S::Output,
    load_time: Duration,
) -> Result<(), Error> {
    let (value, ttl) = match S::cacheable(output) {
        Cacheable::Value(v) => (Some(v), spec.ttl(cache)),
        Cacheable::Negative if spec.cache_none => (None, spec.none_ttl(cache)),
        Cacheable::Negative | Cacheable::Skip => return Ok(()),
    };
    write_entry(cache, spec, key, value, ttl, load_time).await
}

async fn write_entry<T: Serialize + ?Sized>(
    cache: &Cache,
    spec: &FnSpec,
    key: &str,
    value: Option<&T>,
    ttl: Duration,
    load_time: Duration,
) -> Result<(), Error> {
    let meta = EntryMeta {
        ttl,
        stale: Duration::ZERO,
        load_time,
        tag_versions: Vec::new(),
    };
    let bytes = envelope::encode(spec.fingerprint, value, &meta).map_err(|e| {
        bump(&cache.inner().counters.uncached);
        Error::Encode(e.to_string())
    })?;
    let result = cache.store_set(key, bytes, spec.jittered(ttl)).await;
    if let Err(Error::ValueTooLarge { .. }) = &result {
        bump(&cache.inner().counters.uncached);
    }
    result
}

fn entry_key(cache: &Cache, spec: &FnSpec, args: &ArgsKey) -> String {
    key::entry_key(cache.namespace(), spec.name, spec.version, args)
}

/// `NAME_put`: stores a known value under the function's key (write-through).
pub async fn put<T: Serialize + ?Sized>(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    value: &T,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let key = entry_key(&cache, spec, &args?);
    write_entry(
        &cache,
        spec,
        &key,
        Some(value),
        spec.ttl(&cache),
        Duration::ZERO,
    )
    .await
}

/// `NAME_invalidate`: drops the function's entry for these arguments.
pub async fn invalidate(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let key = entry_key(&cache, spec, &args?);
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
