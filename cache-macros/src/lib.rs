//! The `#[redis_cached]` attribute. Use it through the `redis-cached` crate, which documents it.
//!
//! Layout (after `serde_derive` and `thiserror-impl`): `attr` parses the attribute options,
//! `ast` reads the function, `check` holds the semantic rules and collects every error,
//! `expand` only emits tokens, and `driver` runs the three in order for both attributes.
#![forbid(unsafe_code)]

mod ast;
mod attr;
mod check;
mod ctxt;
mod driver;
mod duration;
mod evict;
mod expand;
mod template;

use proc_macro::TokenStream;

/// Turns an `async fn` into a read-through cache. Documented in the `redis-cached` crate.
#[proc_macro_attribute]
pub fn redis_cached(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::redis_cached(args.into(), item.into()).into()
}

/// Invalidates tags after an update function succeeds. Documented in the `redis-cached` crate.
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    evict::cache_evict(args.into(), item.into()).into()
}
