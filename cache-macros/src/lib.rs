//! The `#[redis_cached]` and `#[cache_evict]` attributes. Use them through the `redis-cached`
//! crate, which documents them. The expansion lives in `cache-macros-core`, a plain library
//! that tests and fuzzers can drive; this crate only hands it the compiler's tokens.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

/// Turns an `async fn` into a read-through cache. Documented in the `redis-cached` crate.
#[proc_macro_attribute]
pub fn redis_cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cache_macros_core::redis_cached(args.into(), item.into()).into()
}

/// Invalidates tags after an update function succeeds. Documented in the `redis-cached` crate.
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    cache_macros_core::cache_evict(args.into(), item.into()).into()
}
