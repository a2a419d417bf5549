//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in a cache operation a caller asked for explicitly
/// (building a [`Cache`](crate::Cache), invalidating, putting, refreshing).
///
/// Read-through calls never return this type: when Redis fails they run the loader and return
/// its result (see the crate docs on fail-open behaviour).
///
/// ```
/// use cache_runtime::{Cache, Error};
///
/// # tokio_test_block(async {
/// let err = Cache::builder().url("ftp://nope").build().await.unwrap_err();
/// assert!(matches!(err, Error::Config(_)));
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option passed to the builder, or a combination of options, is invalid.
    #[error("invalid cache configuration: {0}")]
    Config(String),

    /// No [`Cache`](crate::Cache) is installed and the function names none with `cache = EXPR`.
    #[error(
        "no cache is installed: call `Cache::builder()...build().await?.install()` at start-up, \
         or give the function `cache = EXPR`"
    )]
    NotInstalled,

    /// Redis answered with an error or the connection failed.
    #[error("redis command failed: {0}")]
    Backend(#[source] redis::RedisError),

    /// Redis did not answer within the configured operation timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),

    /// The circuit breaker is open: Redis failed recently and is not being called until a probe
    /// succeeds.
    #[error("redis is unavailable (circuit breaker open after recent failures)")]
    Unavailable,

    /// The load this call waited for (another caller's, in this process) failed. Returned
    /// through `E: From<redis_cached::Error>` to waiters of a function whose error type is not
    /// `Clone`, so one failing load ends every wait at once with a single source call.
    #[error("the load this call waited for failed")]
    LoadFailed,

    /// A key given to an operator action is not an entry key of this cache's namespace (a key
    /// of another namespace, or a lock, generation, tag or telemetry key).
    #[error("not an entry key of this namespace: {0}")]
    NotAnEntryKey(String),

    /// The Redis server is older than the oldest version this library supports
    /// ([`MINIMUM_REDIS`](crate::MINIMUM_REDIS)): the cache runs uncached against it.
    #[error(
        "redis {found} is older than the minimum supported version {minimum}; running uncached"
    )]
    UnsupportedServer {
        /// The server's `redis_version`.
        found: String,
        /// The minimum supported version.
        minimum: &'static str,
    },

    /// Redis answered something this library did not expect: a reply of the wrong shape or
    /// length (a protocol fault, not a failing value).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),

    /// A value could not be serialized into an entry; the codec's error is the source.
    #[error("could not serialize the value for the cache")]
    Serialize(#[source] crate::envelope::EncodeError),

    /// A key argument could not be serialized, or a value does not decode back from its entry.
    #[error("could not serialize for the cache: {0}")]
    Encode(String),

    /// The serialized value is larger than the configured maximum value size.
    #[error("value of {size} bytes exceeds the maximum value size of {max} bytes")]
    ValueTooLarge {
        /// Size of the entry, a compressed payload counted at its decompressed size.
        size: usize,
        /// The configured maximum ([`CacheBuilder::max_value_size`](crate::CacheBuilder::max_value_size)).
        max: usize,
    },

    /// The change was made on the master, but fewer replicas than
    /// [`invalidation_replicas`](crate::CacheBuilder::invalidation_replicas) asks for
    /// acknowledged it in time: a failover now could lose it.
    #[error(
        "the invalidation reached the master but only {acked} of {wanted} replicas acknowledged \
         it in time; a failover now could lose it"
    )]
    NotReplicated {
        /// Replicas that acknowledged the change (`WAIT`'s answer).
        acked: u32,
        /// Replicas asked for.
        wanted: u32,
    },
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Error::Backend(err)
    }
}
