//! The attribute parser and expansion on arbitrary input: `#[redis_cached(ARGS)]` and
//! `#[cache_evict(ARGS)]` on arbitrary items must answer with tokens (compile errors for
//! misuse), never panic. The input is split at the first NUL into the attribute's arguments
//! and the item; text that is not a token stream (unbalanced brackets) cannot reach a macro
//! and is skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proc_macro2::TokenStream;

/// An item most inputs can pair with, so the fuzzer spends its time on the arguments.
const ITEM: &str = "async fn f(id: u64, name: &str, #[cache(skip)] db: &Db) -> Result<Option<u64>, E> { todo!() }";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (args, item) = text.split_once('\0').unwrap_or((text, ITEM));
    let (Ok(args), Ok(item)) = (args.parse::<TokenStream>(), item.parse::<TokenStream>()) else {
        return;
    };
    let _ = cache_macros_core::redis_cached(args.clone(), item.clone());
    let _ = cache_macros_core::cache_evict(args, item);
});
