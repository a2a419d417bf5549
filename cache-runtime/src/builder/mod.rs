//! [`CacheBuilder`]: options, their defaults and their validation.

use std::time::Duration;

mod connect;
mod validate;

use crate::{
    Cache, Error,
    cache::Inner,
    connection::{BreakerConfig, Connection},
    first_level::{self, FirstLevel, Tracking},
    redact::redact_url,
    store::{Backend, Master, MemoryStore, RedisStore},
};

/// Builds a [`Cache`]. Obtain one with [`Cache::builder`].
///
/// | option | default |
/// |---|---|
/// | [`url`](Self::url) | `redis://127.0.0.1:6379` |
/// | [`cluster`](Self::cluster), [`sentinel`](Self::sentinel) | instead of `url` |
/// | [`namespace`](Self::namespace) | `"cache"` |
/// | [`default_ttl`](Self::default_ttl) | 300 s |
/// | [`operation_timeout`](Self::operation_timeout) | 250 ms |
/// | [`max_value_size`](Self::max_value_size) | 8 MiB |
/// | [`compression`](Self::compression) | LZ4 from 1 KiB of JSON |
/// | [`codec`](Self::codec) | JSON |
/// | [`memory_capacity`](Self::memory_capacity) | 64 MiB (embedded store only) |
/// | [`breaker_threshold`](Self::breaker_threshold) | 3 consecutive failures |
/// | [`breaker_open_for`](Self::breaker_open_for) | 500 ms between probes, ±25 % |
/// | [`fill_in_background`](Self::fill_in_background) | `true` |
/// | [`batch_lookups`](Self::batch_lookups) | `true` (single node) |
/// | [`l1_capacity`](Self::l1_capacity) | 64 MiB (functions with `l1 = true`, single node) |
/// | [`l1_max_entries`](Self::l1_max_entries) | 100,000 |
/// | [`l1_liveness`](Self::l1_liveness) | 1 s |
/// | [`fleet_telemetry`](Self::fleet_telemetry) | `true` (single node) |
/// | [`telemetry_interval`](Self::telemetry_interval) | 5 s |
/// | [`record_keys`](Self::record_keys) | `false` |
/// | [`invalidation_replicas`](Self::invalidation_replicas) | off (invalidations do not wait for replicas) |
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// use cache_runtime::Cache;
///
/// let cache = Cache::builder()
///     .url("mem://")
///     .namespace("myapp")
///     .default_ttl(Duration::from_secs(60))
///     .build()
///     .await?;
/// assert_eq!(cache.namespace(), "myapp");
/// # Ok::<(), cache_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build().await` is called"]
pub struct CacheBuilder {
    target: Target,
    namespace: String,
    default_ttl: Duration,
    operation_timeout: Duration,
    max_value_size: usize,
    compression: crate::envelope::Compression,
    codec: crate::envelope::Codec,
    memory_capacity: u64,
    breaker_threshold: u32,
    breaker_open_for: Duration,
    fill_in_background: bool,
    batch_lookups: bool,
    /// A root certificate (PEM) to trust for `rediss://` instead of the system's.
    tls_root_certificate: Option<Vec<u8>>,
    l1: FirstLevelOptions,
    telemetry: TelemetryOptions,
    /// Credentials and database of the master Sentinel names.
    sentinel_master: SentinelMasterOptions,
    /// Replicas that must acknowledge each invalidation, and how long to wait.
    invalidation_replicas: Option<(u32, Duration)>,
}

#[derive(Clone, Default)]
struct SentinelMasterOptions {
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
}

/// Shows no password.
impl std::fmt::Debug for SentinelMasterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelMasterOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct TelemetryOptions {
    fleet: bool,
    interval: Duration,
    record_keys: bool,
}

#[derive(Debug, Clone)]
struct FirstLevelOptions {
    capacity: u64,
    max_entries: u64,
    liveness: Duration,
    /// Whether any of them was set (an error on a cluster, where there is no first level).
    set: bool,
    /// Tests only: see [`CacheBuilder::l1_ignore_invalidations_for_tests`].
    deaf: bool,
}

#[derive(Clone)]
enum Target {
    Url(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    /// Sentinels, and the name of the master they monitor.
    Sentinel(Vec<String>, String),
}

/// Shows URLs without their passwords.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
            Target::Sentinel(urls, name) => f
                .debug_tuple("Sentinel")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .field(name)
                .finish(),
        }
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            target: Target::Url("redis://127.0.0.1:6379".into()),
            namespace: "cache".into(),
            default_ttl: Duration::from_secs(300),
            operation_timeout: Duration::from_millis(250),
            max_value_size: 8 * 1024 * 1024,
            compression: crate::envelope::Compression::DEFAULT,
            codec: crate::envelope::Codec::Json,
            memory_capacity: 64 * 1024 * 1024,
            breaker_threshold: 3,
            breaker_open_for: Duration::from_millis(500),
            fill_in_background: true,
            batch_lookups: true,
            tls_root_certificate: None,
            l1: FirstLevelOptions {
                capacity: first_level::DEFAULT_CAPACITY,
                max_entries: first_level::DEFAULT_MAX_ENTRIES,
                liveness: first_level::DEFAULT_LIVENESS,
                set: false,
                deaf: false,
            },
            telemetry: TelemetryOptions {
                fleet: true,
                interval: Duration::from_secs(5),
                record_keys: false,
            },
            sentinel_master: SentinelMasterOptions::default(),
            invalidation_replicas: None,
        }
    }
}

impl CacheBuilder {
    /// Where entries live: `redis://host:port/db`, `rediss://...` (TLS, needs the `tls-rustls`
    /// feature), `redis+unix:///path`, or `mem://` for the embedded in-process store.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Url(url.into());
        self
    }

    /// A Redis Cluster, given some of its nodes (`redis://host:port`); the rest are discovered.
    #[cfg(feature = "cluster")]
    pub fn cluster<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.target = Target::Cluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// A master monitored by Redis Sentinel: the sentinels' URLs (`redis://host:26379`, with
    /// the sentinels' own password if they have one; `rediss://` for TLS, which the master
    /// connections then use too) and the master's name (`sentinel monitor NAME ...`).
    ///
    /// The cache follows failovers by itself, without a restart: it listens for
    /// `+switch-master` on every sentinel, re-asks them when an operation fails with
    /// `READONLY` or on the link, and every 2 s in any case; a node is used only once `ROLE`
    /// says it is a master. Until the first master is known, calls run their loaders uncached.
    /// The master's credentials and database: [`sentinel_master_auth`](Self::sentinel_master_auth),
    /// [`sentinel_master_db`](Self::sentinel_master_db). See the README's high-availability
    /// section for what a failover can lose.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder()
    ///     .sentinel(
    ///         ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///         "mymaster",
    ///     )
    ///     .sentinel_master_auth(None, "s3cret")
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn sentinel<I>(mut self, sentinels: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.target = Target::Sentinel(
            sentinels.into_iter().map(Into::into).collect(),
            master_name.into(),
        );
        self
    }

    /// The username (ACL, `None` for the default user) and password of the master (and of the
    /// replicas that may replace it) under [`sentinel`](Self::sentinel). The sentinels' own
    /// password goes in their URLs.
    pub fn sentinel_master_auth(
        mut self,
        username: Option<&str>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_master.username = username.map(str::to_owned);
        self.sentinel_master.password = Some(password.into());
        self
    }

    /// The database of the master under [`sentinel`](Self::sentinel) (default 0).
    pub fn sentinel_master_db(mut self, db: i64) -> Self {
        self.sentinel_master.db = Some(db);
        self
    }

    /// Makes every invalidation (`NAME_invalidate`, [`Cache::invalidate_tags`], `NAME_put`,
    /// `#[cache_evict]`, the admin API's) wait until `replicas` replicas have acknowledged it,
    /// for at most `timeout` (Redis's `WAIT`), and fail with [`Error::NotReplicated`] when
    /// fewer did: the change is made on the master either way, but one that a master
    /// acknowledged and then lost in a failover before replicating it comes back with the
    /// promoted replica, and this is how to know it could.
    ///
    /// Without it, an invalidation is acknowledged as soon as the master applied it;
    /// replication is asynchronous, so a failover within the replication lag (usually well
    /// under a millisecond, longer under load) can lose it. The wait runs on a connection of
    /// its own (`WAIT` blocks the connection it is sent on), so hits never queue behind it, and
    /// by group commit (a burst of invalidations shares one or two waits; a caller may wait up
    /// to twice `timeout` plus three operation timeouts), outside the circuit breaker (a slow
    /// replica says nothing about the master). `NAME_refresh` does not wait. The ACL profile
    /// needs `+wait`. The URL must name one server (not a DNS name or proxy that may move
    /// between the change and the wait's own connection). A full master under `noeviction`
    /// refuses the wait's marker write, and every invalidation then reports `NotReplicated`.
    /// Single node and [`sentinel`](Self::sentinel) only (an error on a cluster).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = cache_runtime::Cache::builder()
    ///     .sentinel(["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"], "mymaster")
    ///     .invalidation_replicas(1, Duration::from_millis(100))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn invalidation_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.invalidation_replicas = Some((replicas, timeout));
        self
    }

    /// The first segment of every key, so applications sharing a Redis stay apart.
    /// Must be non-empty and contain no `:`, `{`, `}` or whitespace (a `:` would let two
    /// namespaces share keys: `a:b` with function `c`, and `a` with function `b:c`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// TTL of functions that set none.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The longest any one cache operation may take, reconnect waits included. Past it the
    /// call gives up on Redis and runs (or returns) the loader's result.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How entries' payloads are compressed, unless a function says otherwise with
    /// `compress = ...`: LZ4 from 1 KiB of JSON by default (the fastest hit among the
    /// settings that at least halve a 10 KB document, `docs/benchmarks.md`). Readers decode
    /// every setting, so changing it never makes existing entries miss.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use cache_runtime::{Cache, envelope::Compression};
    ///
    /// let cache = Cache::builder()
    ///     .url("mem://")
    ///     .compression(Compression::Zstd { over: 4096 })
    ///     .build()
    ///     .await?;
    /// # let _ = cache;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn compression(mut self, compression: crate::envelope::Compression) -> Self {
        self.compression = compression;
        self
    }

    /// How values are serialized, unless a function says otherwise with `codec = ...`: JSON
    /// by default. [`Codec::Postcard`](crate::envelope::Codec::Postcard) halves entries and
    /// decodes faster but needs a `version` bump on every change to the value's fields and
    /// cannot carry `untagged`, `flatten` or `serde_json::Value` (see
    /// [`Codec`](crate::envelope::Codec)). Readers decode every codec, so changing it never
    /// makes existing entries miss.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use cache_runtime::{Cache, envelope::Codec};
    ///
    /// let cache = Cache::builder().url("mem://").codec(Codec::Postcard).build().await?;
    /// # let _ = cache;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn codec(mut self, codec: crate::envelope::Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Largest entry that is stored or accepted on read, counting a compressed payload at its
    /// decompressed size (bigger ones are not cached; a compressed entry declaring more is a
    /// miss before anything is allocated for it).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Capacity of the embedded store (`mem://`), in bytes of keys and values.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.memory_capacity = bytes;
        self
    }

    /// Consecutive Redis failures that open the circuit breaker.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures;
        self
    }

    /// How often an open breaker probes Redis (`PING` from a background task, jittered by
    /// ±25 %). The first answer closes it, so hits resume within about this long of Redis
    /// answering again. If the background probe falls silent for twice this plus an operation
    /// timeout, the next call probes instead.
    pub fn breaker_open_for(mut self, duration: Duration) -> Self {
        self.breaker_open_for = duration;
        self
    }

    /// Whether a miss returns the loader's value before its entry is stored (`true`, the
    /// default) or only after (`false`).
    ///
    /// In the background, a miss costs its caller two round trips plus the loader instead of
    /// three. Nothing else changes: the lock is held until the fill lands, so other processes
    /// still wait for that one load, and callers in this process that arrive meanwhile get the
    /// value from it rather than loading again. Reading Redis directly right after a call may
    /// not find the entry yet; [`Cache::wait_for_writes`] waits for pending fills (call it
    /// before a graceful shutdown). `NAME_refresh` and `NAME_put` always store before returning,
    /// and so does the embedded store, where storing costs no round trip.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("mem://")
    ///     .fill_in_background(false)
    ///     .build()
    ///     .await?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn fill_in_background(mut self, yes: bool) -> Self {
        self.fill_in_background = yes;
        self
    }

    /// Whether lookups that arrive at the same time share one `MGET` (`true`, the default).
    ///
    /// Applies to plain hits (no tags, no `stale` or `early_refresh`) on a single Redis node.
    /// The first lookup of a batch yields once to let concurrent ones join, then sends `GET`
    /// alone or `MGET` for several; under load this lifts throughput above one `GET` per call,
    /// and a lone call pays one task yield. With `false`, every lookup sends its own `GET`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .batch_lookups(false)
    ///     .build()
    ///     .await?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn batch_lookups(mut self, yes: bool) -> Self {
        self.batch_lookups = yes;
        self
    }

    /// The first level's budget in bytes, shared by every function with `l1 = true`; entries
    /// weigh their encoded size. Least recently and least frequently used entries go first.
    ///
    /// The first level needs a single Redis node (not the embedded store, where it would add
    /// nothing, nor a cluster, where setting this is an error at [`build`](Self::build)).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .l1_capacity(16 * 1024 * 1024)
    ///     .l1_max_entries(10_000)
    ///     .build()
    ///     .await?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn l1_capacity(mut self, bytes: u64) -> Self {
        self.l1.capacity = bytes;
        self.l1.set = true;
        self
    }

    /// The most entries the first level holds: each entry weighs at least
    /// `l1_capacity / l1_max_entries` bytes, so both limits hold.
    pub fn l1_max_entries(mut self, entries: u64) -> Self {
        self.l1.max_entries = entries;
        self.l1.set = true;
        self
    }

    /// How long after the last confirmation that Redis's invalidations still arrive the first
    /// level keeps serving: the hard bound on how stale a first-level hit can be when the
    /// invalidation stream fails silently (a confirmation is sought every quarter of it; each
    /// is one `SET` of a key of this process's own).
    pub fn l1_liveness(mut self, timeout: Duration) -> Self {
        self.l1.liveness = timeout;
        self.l1.set = true;
        self
    }

    /// For this crate's tests only (not part of the API): the first level ignores Redis's
    /// invalidations of entries and tags, as if they were arbitrarily late, so a test sees
    /// what read-your-writes owes to the local drop alone. Never use it otherwise: other
    /// processes' changes would not reach this one's first level before `l1_ttl`.
    #[doc(hidden)]
    pub fn l1_ignore_invalidations_for_tests(mut self) -> Self {
        self.l1.deaf = true;
        self
    }

    /// Whether this process's per-function counts and hot keys are sent to Redis, so
    /// `redis-cached stats` and `hot` can show the fleet's. One pipeline every
    /// [`telemetry_interval`](Self::telemetry_interval) into expiring keys under
    /// `{namespace};`, never on a call's path. Single-node Redis only (a cluster keeps them in
    /// the process: [`Cache::stats`] and the `metrics` facade).
    pub fn fleet_telemetry(mut self, yes: bool) -> Self {
        self.telemetry.fleet = yes;
        self
    }

    /// How often the fleet counters are sent (at least 100 ms). A process that dies loses at
    /// most this much of its counts.
    pub fn telemetry_interval(mut self, every: Duration) -> Self {
        self.telemetry.interval = every;
        self
    }

    /// Whether `tracing` spans and logs carry entry keys. Off by default: keys hold argument
    /// values (emails, tokens); spans and metrics carry the function name only.
    pub fn record_keys(mut self, yes: bool) -> Self {
        self.telemetry.record_keys = yes;
        self
    }

    /// Trusts this root certificate (PEM) for `rediss://` URLs instead of the system's roots:
    /// a private CA, as managed Redis services and self-hosted TLS often use. Needs the
    /// `tls-rustls` feature.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::Error> {
    /// let ca = std::fs::read("/etc/redis/ca.crt").expect("CA certificate");
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("rediss://cache.internal:6380")
    ///     .tls_root_certificate(ca)
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// Checks the options and builds the [`Cache`].
    ///
    /// Errors with [`Error::Config`] for a malformed URL or an invalid option. An unreachable
    /// Redis is not an error: the connection is made lazily, and until Redis answers, calls run
    /// their loaders.
    pub async fn build(self) -> Result<Cache, Error> {
        self.validate()?;
        let mut first_level = None;
        let backend: Box<dyn Backend> = match &self.target {
            Target::Url(url) if url.starts_with("mem://") => {
                Box::new(MemoryStore::new(self.memory_capacity))
            }
            Target::Url(_) | Target::Sentinel(..) => {
                let master = match &self.target {
                    Target::Url(url) => {
                        Master::Fixed(std::sync::Arc::new(self.connect_single(url)?))
                    }
                    _ => Master::Sentinel(self.connect_sentinel().await?),
                };
                let batcher = self
                    .batch_lookups
                    .then(|| std::sync::Arc::new(crate::store::Batcher::default()));
                let store = RedisStore::Single(master.clone(), batcher);
                let mut tracking =
                    Tracking::new(Box::new(master), &self.namespace, self.operation_timeout);
                tracking.deaf = self.l1.deaf;
                first_level = Some(FirstLevel::new(
                    self.l1.capacity,
                    self.l1.max_entries,
                    self.l1.liveness,
                    tracking,
                ));
                Box::new(store)
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(nodes) => {
                if self.l1.set {
                    return Err(Error::Config(
                        "the first level (l1_capacity, l1_max_entries, l1_liveness) needs a \
                         single Redis node: it is not available on a cluster, where `l1 = true` \
                         functions read Redis on every call"
                            .into(),
                    ));
                }
                Box::new(self.connect_cluster(nodes)?)
            }
        };
        let conn = Connection::new(
            backend,
            self.operation_timeout,
            BreakerConfig {
                threshold: self.breaker_threshold,
                probe_every: self.breaker_open_for,
            },
            self.namespace.clone(),
        );
        // Decided by the kind of store: under Sentinel the master may not be known yet.
        let fleet = self.telemetry.fleet && conn.is_single_redis();
        let telemetry = crate::telemetry::Telemetry::new(self.telemetry.record_keys, fleet);
        let mut inner = Inner::new(
            conn,
            self.namespace,
            self.default_ttl,
            self.max_value_size,
            self.fill_in_background,
            first_level,
            telemetry,
        );
        inner.compression = self.compression;
        inner.codec = self.codec;
        let cache = Cache::from_inner(inner);
        if fleet {
            cache.start_telemetry_flush(self.telemetry.interval);
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod password_tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_debug_output_and_errors() {
        let url = "redis://ops:s3cret@cache:6379/not-a-db";
        let builder = Cache::builder().url(url);
        assert!(!format!("{builder:?}").contains("s3cret"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let err = runtime
            .block_on(builder.build())
            .expect_err("a database that is not a number");
        let message = err.to_string();
        assert!(message.contains("ops:***@cache"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(
            redact_url("rediss://u:p@h:1/2?x=y@z"),
            "rediss://u:***@h:1/2?x=y@z"
        );
    }
}
