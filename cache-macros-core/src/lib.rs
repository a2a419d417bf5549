//! The expansion behind `#[redis_cached]` and `#[cache_evict]`, on `proc_macro2` token
//! streams. The `cache-macros` proc-macro crate is a thin wrapper over it; being a plain
//! library, it can also be driven by tests and fuzzers (a proc-macro crate exports only
//! macros). Use the attributes through the `redis-cached` crate, which documents them.
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

use proc_macro2::TokenStream;

/// Expands `#[redis_cached(args)]` on `item`. Never panics: a misuse expands to compile
/// errors next to the function.
///
/// ```
/// let args = "ttl = 60".parse().unwrap();
/// let item = "async fn user(id: u64) -> String { id.to_string() }".parse().unwrap();
/// let expanded = cache_macros_core::redis_cached(args, item).to_string();
/// assert!(expanded.contains("user_invalidate"));
/// ```
pub fn redis_cached(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::redis_cached(args, item)
}

/// Expands `#[cache_evict(args)]` on `item`. Never panics: a misuse expands to compile
/// errors next to the function.
///
/// ```
/// let args = r#"tags = ["user:{id}"]"#.parse().unwrap();
/// let item = "async fn save(id: u64) -> Result<(), String> { Ok(()) }".parse().unwrap();
/// let expanded = cache_macros_core::cache_evict(args, item).to_string();
/// assert!(!expanded.contains("compile_error"));
/// ```
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    evict::cache_evict(args, item)
}
