#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use cache_runtime::{Cache, CacheBuilder, Error, Stats, redis};

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

/// Items for generated code only. Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use cache_runtime::private::*;
}
