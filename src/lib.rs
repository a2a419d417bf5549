#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use cache_runtime::{
    Cache, CacheBuilder, ConnectionEvent, Error, MINIMUM_REDIS, Stats,
    envelope::{Codec, Compression},
    redact_url, redis,
};

/// Turns an `async fn` into a read-through cache.
///
/// ```
/// use redis_cached::{Cache, redis_cached};
///
/// #[redis_cached(ttl = 60, key = "square:{n}")]
/// async fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redis_cached::Error> {
/// Cache::builder().url("mem://").build().await?.install();
/// assert_eq!(square(7).await, 49); // loads and stores
/// assert_eq!(square(7).await, 49); // served from the cache
/// assert!(square_key(7).ends_with(":{square:7}"));
/// square_invalidate(7).await?;
/// # Ok(())
/// # }
/// ```
///
/// The options, the generated helpers and the rules for `Result`, `Option`, methods and
/// generics are described in the [crate documentation](crate).
pub use cache_macros::redis_cached;

/// Invalidates tags after an update function returns `Ok`.
///
/// ```
/// use redis_cached::{Cache, cache_evict, redis_cached};
///
/// #[derive(Debug)]
/// enum AppError { Cache(redis_cached::Error) }
///
/// impl From<redis_cached::Error> for AppError {
///     fn from(err: redis_cached::Error) -> Self { AppError::Cache(err) }
/// }
///
/// #[redis_cached(ttl = 60, tags = ["user:{id}"])]
/// async fn user_name(id: u64) -> Result<String, String> {
///     Ok(format!("user {id}"))
/// }
///
/// #[cache_evict(tags = ["user:{id}"])]
/// async fn rename_user(id: u64, name: &str) -> Result<(), AppError> {
///     let _ = (id, name); // UPDATE users SET name = $2 WHERE id = $1
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), AppError> {
/// Cache::builder().url("mem://").build().await?.install();
/// user_name(1).await.ok();
/// rename_user(1, "Ada").await?; // entries tagged user:1 miss from now on
/// # Ok(())
/// # }
/// ```
///
/// The function must return `Result<T, E>` with `E: From<redis_cached::Error>`, so a failed
/// invalidation reaches the caller as `Err` (the update itself has happened: retry the
/// invalidation or let the TTL expire the entries). Alternatively `on_error = handler` names a
/// function that receives the `redis_cached::Error`. Options: `tags = [...]` (templates over the
/// arguments, like `#[redis_cached]`'s), `cache = EXPR`, `on_error = EXPR`, `crate = path`.
pub use cache_macros::cache_evict;

/// Invalidates tags on the installed (or [scoped](Cache::scope)) cache; see
/// [`Cache::invalidate_tags`].
///
/// # Errors
///
/// [`Error::NotInstalled`] without a cache; otherwise as [`Cache::invalidate_tags`].
pub async fn invalidate_tags<I>(tags: I) -> Result<(), Error>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    Cache::current()
        .ok_or(Error::NotInstalled)?
        .invalidate_tags(tags)
        .await
}

/// Items for generated code only. Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use cache_runtime::private::*;
}
