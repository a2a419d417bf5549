//! [`Cache`]: the shared handle, the process-wide default and guarded store access.

use std::{future::Future, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;

use crate::{
    CacheBuilder, Error, Stats,
    breaker::{Breaker, Permit},
    stats::{Counters, bump},
    store::Store,
};

/// A cache: where entries live and how calls to it behave.
///
/// Cheap to clone (an `Arc` inside). Build one with [`Cache::builder`], then either
/// [`install`](Self::install) it as the process-wide default that `#[redis_cached]` functions
/// use, name it per function with `cache = EXPR`, or run code under it with
/// [`scope`](Self::scope).
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use cache_runtime::Cache;
///
/// let cache = Cache::builder().url("mem://").namespace("demo").build().await?;
/// cache.install();
/// assert!(Cache::installed().is_some());
/// # Ok::<(), cache_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.namespace)
            .field(
                "store",
                &if self.inner.store.is_remote() {
                    "redis"
                } else {
                    "memory"
                },
            )
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) namespace: String,
    pub(crate) default_ttl: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) max_value_size: usize,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Counters,
    pub(crate) flights: Arc<crate::flight::Flights>,
    /// Whether a load's fill runs after its caller has its value.
    pub(crate) fill_in_background: bool,
    pub(crate) background: crate::background::Background,
    /// Last load time per function, for the default `lock_wait`.
    pub(crate) load_times: std::sync::Mutex<std::collections::HashMap<&'static str, Duration>>,
}

impl Inner {
    pub(crate) fn new(
        store: Store,
        namespace: String,
        default_ttl: Duration,
        operation_timeout: Duration,
        max_value_size: usize,
        breaker: Breaker,
        fill_in_background: bool,
    ) -> Self {
        Inner {
            store,
            namespace,
            default_ttl,
            operation_timeout,
            max_value_size,
            breaker,
            counters: Counters::default(),
            flights: Arc::default(),
            fill_in_background,
            background: Default::default(),
            load_times: std::sync::Mutex::default(),
        }
    }
}

static INSTALLED: ArcSwapOption<Inner> = ArcSwapOption::const_empty();

tokio::task_local! {
    static SCOPED: Cache;
}

impl Cache {
    /// Starts configuring a cache; see [`CacheBuilder`] for the options and defaults.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Cache {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Makes this cache the process-wide default used by `#[redis_cached]` functions that name
    /// no `cache = EXPR`. Replaces any cache installed before.
    pub fn install(&self) {
        INSTALLED.store(Some(self.inner.clone()));
    }

    /// The cache installed with [`install`](Self::install), if any.
    pub fn installed() -> Option<Cache> {
        INSTALLED.load_full().map(|inner| Cache { inner })
    }

    /// The cache a `#[redis_cached]` function without `cache = EXPR` uses here: the one of the
    /// innermost enclosing [`scope`](Self::scope), else the installed one.
    pub fn current() -> Option<Cache> {
        SCOPED.try_with(Cache::clone).ok().or_else(Cache::installed)
    }

    /// Runs `future` with this cache as the default for the functions it calls (in this task;
    /// tasks it spawns do not inherit it). Lets tests in one process each use their own cache.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use cache_runtime::Cache;
    ///
    /// let cache = Cache::builder().url("mem://").namespace("scoped").build().await?;
    /// let ns = cache.scope(async { Cache::current().map(|c| c.namespace().to_owned()) }).await;
    /// assert_eq!(ns.as_deref(), Some("scoped"));
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        SCOPED.scope(self.clone(), future).await
    }

    /// The namespace, the first segment of every key.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Counters since this cache was built.
    pub fn stats(&self) -> Stats {
        self.inner
            .counters
            .snapshot(self.inner.breaker.opened_total())
    }

    /// Invalidates tags: every entry carrying one of them misses from now on, in one round trip
    /// whatever the number of entries. Loads that began before this call cannot make a tagged
    /// entry valid again.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached (or the breaker is open), nothing was invalidated: the
    /// entries live until their TTL. Retry, or report the error to whoever made the change.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder().url("mem://").build().await?;
    /// cache.invalidate_tags(["org:456", "user:123"]).await?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn invalidate_tags<I>(&self, tags: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        crate::helpers::invalidate_tags(self, tags).await
    }

    /// Whether the circuit breaker currently keeps calls away from Redis.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// The underlying single-node Redis connection, for commands you write by hand (hashes,
    /// sorted sets, pipelines). `None` for the embedded store and for a cluster.
    ///
    /// The connection is shared and multiplexed: never send blocking commands (`BLPOP`,
    /// `SUBSCRIBE`) on it.
    pub fn redis_connection(&self) -> Option<redis::aio::ConnectionManager> {
        match &self.inner.store {
            Store::Redis(crate::store::RedisStore::Single(conn, _)) => Some(conn.clone()),
            _ => None,
        }
    }

    /// Runs one store operation behind the breaker and the operation timeout, counting failures.
    pub(crate) async fn guarded<T, F>(&self, op: &'static str, f: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let inner = &*self.inner;
        if !inner.store.is_remote() {
            return f.await;
        }
        let permit = inner.breaker.permit();
        if permit == Permit::Reject {
            bump(&inner.counters.breaker_rejections);
            return Err(Error::Unavailable);
        }
        let result = match tokio::time::timeout(inner.operation_timeout, f).await {
            // The connection's own response timeout (set to the same value) may fire first.
            Ok(Err(Error::Backend(err))) if err.is_timeout() => {
                Err(Error::Timeout(inner.operation_timeout))
            }
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(inner.operation_timeout)),
        };
        if let Err(Error::Timeout(_)) = result {
            bump(&inner.counters.timeouts);
        }
        match &result {
            Ok(_) => inner.breaker.on_success(permit),
            Err(err) => {
                bump(&inner.counters.backend_errors);
                if inner.breaker.on_failure(permit) {
                    tracing::warn!(
                        namespace = %inner.namespace, op, error = %err,
                        "redis failing; circuit breaker open, calls run their loaders uncached"
                    );
                } else {
                    tracing::warn!(namespace = %inner.namespace, op, error = %err, "redis command failed");
                }
            }
        }
        result
    }

    pub(crate) fn last_load_time(&self, function: &'static str) -> Option<Duration> {
        let times = self
            .inner
            .load_times
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        times.get(function).copied()
    }

    pub(crate) fn record_load_time(&self, function: &'static str, took: Duration) {
        let mut times = self
            .inner
            .load_times
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        times.insert(function, took);
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
}
