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
