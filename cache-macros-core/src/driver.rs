//! The driver both attributes share: parse the options ([`crate::attr`]), read the function
//! ([`crate::ast`]), check the rules ([`crate::check`]), and only then expand
//! ([`crate::expand`], which never fails).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemFn, parse::Parser};

use crate::{ast::Function, attr::Options, check, ctxt::Ctxt, expand};

/// Parse, check, expand: the driver both attributes share. On any error the function is still
/// emitted (without our parameter markers) next to the errors, so one mistake does not turn
/// into errors at every call site.
pub(crate) fn attribute<O, P>(
    args: TokenStream,
    item: TokenStream,
    name: &str,
    parse: impl FnOnce(&mut Ctxt, syn::parse::ParseStream) -> syn::Result<O>,
    check: impl FnOnce(&mut Ctxt, O, &Function) -> Option<P>,
    emit: impl FnOnce(&Function, &P) -> TokenStream,
) -> TokenStream {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(item_fn) => item_fn,
        Err(_) => {
            let err = syn::Error::new_spanned(&item, format!("#[{name}] applies to an `async fn`"))
                .to_compile_error();
            return quote!(#err #item);
        }
    };
    let mut cx = Ctxt::default();
    let options = match (|input: syn::parse::ParseStream| parse(&mut cx, input)).parse2(args) {
        Ok(options) => Some(options),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    };
    let func = Function::read(&mut cx, item_fn);
    match options.and_then(|options| check(&mut cx, options, &func)) {
        Some(plan) if !cx.has_errors() => emit(&func, &plan),
        _ => {
            let errors = cx.into_compile_errors();
            let item = &func.item;
            quote!(#errors #item)
        }
    }
}

pub(crate) fn redis_cached(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(
        args,
        item,
        "redis_cached",
        Options::parse,
        check::check,
        expand::emit,
    )
}

#[cfg(test)]
mod no_panic {
    //! The attribute parser on arbitrary input: errors, never a panic (a proc-macro panic is an
    //! unreadable compiler error). The bounded version, for CI, of `fuzz/`'s
    //! `attribute_parse` target.

    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "ttl",
        "name",
        "key",
        "tags",
        "version",
        "cache_none",
        "none_ttl",
        "jitter",
        "stale",
        "early_refresh",
        "lock",
        "lock_ttl",
        "lock_wait",
        "max_load",
        "l1",
        "l1_ttl",
        "l1_outage",
        "compress",
        "compress_over",
        "codec",
        "cache",
        "crate",
        "=",
        ",",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "\"1h\"",
        "\"{id}\"",
        "\"user:{id}\"",
        "\"{a.b}\"",
        "\"\"",
        "\"lz4\"",
        "\"postcard\"",
        "\"{\"",
        "\"}{\"",
        "0",
        "1",
        "3600",
        "0.5",
        "-1",
        "1e400",
        "99999999999999999999",
        "true",
        "false",
        "self",
        "::",
        "x",
        "'a",
        "#",
        "!",
        "-",
        "&",
        "*",
        "<",
        ">",
        "\"5 parsecs\"",
        "\"{0}\"",
        "\"{self.x}\"",
    ];

    const ITEMS: &[&str] = &[
        "async fn f(id: u64) -> u64 { id }",
        "async fn f(id: u64, #[cache(skip)] db: &Db) -> Result<Option<User>, E> { todo!() }",
        "async fn f(&self, a: String, b: Vec<u8>) -> Option<String> { None }",
        "async fn f<T: Clone>(a: T) -> T { a }",
        "fn f() -> u64 { 1 }",
        "async fn f() {}",
        "struct S;",
        "async fn f(a: impl Fn()) -> impl Sized { 1 }",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn any_attribute_on_any_item_is_an_error_or_an_expansion_never_a_panic(
            pieces in proptest::collection::vec(0..PIECES.len(), 0..24),
            item in 0..ITEMS.len(),
        ) {
            let args: String = pieces.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join(" ");
            // Only what the lexer accepts reaches a proc macro.
            let Ok(args) = args.parse::<proc_macro2::TokenStream>() else {
                return Ok(());
            };
            let item = ITEMS[item].parse::<proc_macro2::TokenStream>().expect("item");
            let expanded = std::panic::catch_unwind(|| {
                super::redis_cached(args.clone(), item.clone()).to_string()
            });
            prop_assert!(expanded.is_ok(), "panicked on #[redis_cached({})] {}", args, item);
        }
    }
}
