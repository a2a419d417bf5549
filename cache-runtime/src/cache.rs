//! [`Cache`]: the shared handle and the process-wide default.

use std::{future::Future, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;

use crate::{
    CacheBuilder, Error, Stats,
    connection::{Connection, ConnectionEvent},
    first_level::FirstLevel,
    telemetry::Telemetry,
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
                &if self.inner.conn.is_network() {
                    "redis"
                } else {
                    "memory"
                },
            )
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) conn: Arc<Connection>,
    pub(crate) namespace: String,
    pub(crate) default_ttl: Duration,
    pub(crate) max_value_size: usize,
    /// How payloads are compressed unless a function says otherwise.
    pub(crate) compression: crate::envelope::Compression,
    /// How values are serialized unless a function says otherwise.
    pub(crate) codec: crate::envelope::Codec,
    pub(crate) telemetry: Telemetry,
    pub(crate) flights: Arc<crate::read::flight::Flights>,
    /// Whether a load's fill runs after its caller has its value.
    pub(crate) fill_in_background: bool,
    pub(crate) background: crate::background::Background,
    /// The first level (single-node Redis only).
    pub(crate) first_level: Option<Arc<FirstLevel>>,
}

impl Inner {
    pub(crate) fn new(
        conn: Arc<Connection>,
        namespace: String,
        default_ttl: Duration,
        max_value_size: usize,
        fill_in_background: bool,
        first_level: Option<Arc<FirstLevel>>,
        telemetry: Telemetry,
    ) -> Self {
        Inner {
            conn,
            namespace,
            default_ttl,
            max_value_size,
            compression: crate::envelope::Compression::DEFAULT,
            codec: crate::envelope::Codec::Json,
            telemetry,
            flights: Arc::default(),
            fill_in_background,
            background: Default::default(),
            first_level,
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

    /// A reference that does not keep the cache alive (for its background tasks).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Cache> {
        weak.upgrade().map(|inner| Cache { inner })
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
        let first_level = self.inner.first_level.as_ref().map(|l1| l1.stats());
        Stats::sum(
            &self.inner.telemetry,
            self.inner.conn.counts(),
            first_level.unwrap_or_default(),
        )
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
        self.inner.conn.is_degraded()
    }

    /// The underlying single-node Redis connection, for commands you write by hand (hashes,
    /// sorted sets, pipelines). `None` for the embedded store and for a cluster.
    ///
    /// Under [`sentinel`](crate::CacheBuilder::sentinel) it is the master of the moment
    /// (`None` while none is known): after a failover it still points at the old one, so ask
    /// again rather than keep it.
    ///
    /// The connection is shared and multiplexed: never send blocking commands (`BLPOP`,
    /// `SUBSCRIBE`) on it.
    pub fn redis_connection(&self) -> Option<redis::aio::ConnectionManager> {
        self.inner.conn.redis_connection()
    }

    /// Subscribes to [`ConnectionEvent`]s: Redis answering for the first time, going away, and
    /// answering again (after which per-connection state such as client tracking is lost).
    /// Events sent before the call are not replayed; a receiver that falls more than 64 events
    /// behind gets `RecvError::Lagged` and then the newest ones.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder().url("mem://").build().await?;
    /// let events = cache.connection_events();
    /// assert!(events.is_empty());
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn connection_events(&self) -> tokio::sync::broadcast::Receiver<ConnectionEvent> {
        self.inner.conn.subscribe()
    }

    /// The first level, if this cache has one.
    pub(crate) fn first_level(&self) -> Option<&Arc<FirstLevel>> {
        self.inner.first_level.as_ref()
    }

    /// Runs `change`, a write of the entry `key` to Redis, with this process's first-level entry
    /// of it dropped before (whatever Redis then answers) and again after (a read sent before
    /// the write may have refilled it): read-your-writes.
    pub(crate) async fn changing_entry<T>(&self, key: &str, change: impl Future<Output = T>) -> T {
        self.forget_entry(key);
        let result = change.await;
        self.forget_entry(key);
        result
    }

    /// [`changing_entry`](Self::changing_entry) for a change of tags (by tag key).
    pub(crate) async fn changing_tags<T>(
        &self,
        tag_keys: &[String],
        change: impl Future<Output = T>,
    ) -> T {
        self.forget_tags(tag_keys);
        let result = change.await;
        self.forget_tags(tag_keys);
        result
    }

    /// Outdates this process's first-level entry of `key`.
    pub(crate) fn forget_entry(&self, key: &str) {
        if let Some(level) = &self.inner.first_level {
            level.forget_entry(key);
        }
    }

    /// Outdates this process's first-level entries carrying these tags (by tag key).
    fn forget_tags(&self, tag_keys: &[String]) {
        if let Some(level) = &self.inner.first_level {
            for key in tag_keys {
                level.forget_tag(key);
            }
        }
    }

    /// Records one event of a call of `spec`'s function (see [`crate::telemetry`]).
    #[inline]
    pub(crate) fn record(&self, spec: &crate::spec::FnSpec, event: crate::telemetry::Event<'_>) {
        self.inner.telemetry.record(spec.id(), event);
    }

    /// [`record`](Self::record) for a function known by its id (background work).
    #[inline]
    pub(crate) fn record_for(
        &self,
        function: crate::telemetry::FnId,
        event: crate::telemetry::Event<'_>,
    ) {
        self.inner.telemetry.record(function, event);
    }

    /// The connection every store operation goes through.
    pub(crate) fn conn(&self) -> &Connection {
        &self.inner.conn
    }
}
