//! `#[cache_evict(tags = [...])]`: invalidates tags after an update function succeeds.
//!
//! Parse, check and expand live together here because the attribute is small; the rules are
//! in [`check`], the tokens in [`expand`].

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Expr, Ident, ItemFn, LitStr, Path, Token, ext::IdentExt, parse::ParseStream};

use crate::{
    ast::{Function, ShapeKind},
    attr,
    check::{self, TagPlan},
    ctxt::Ctxt,
    expand::render_tags,
};

const VALID: &str = "`tags`, `on_error`, `cache`, `crate`";

#[derive(Default)]
struct Options {
    tags: Option<Vec<LitStr>>,
    on_error: Option<Expr>,
    cache: Option<Expr>,
    krate: Option<Path>,
}

fn parse(cx: &mut Ctxt, input: ParseStream) -> syn::Result<Options> {
    let mut options = Options::default();
    while !input.is_empty() {
        let name = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        let duplicate = match name.to_string().as_str() {
            "tags" => options.tags.replace(attr::parse_tags(input)?).is_some(),
            "on_error" => options.on_error.replace(input.parse()?).is_some(),
            "cache" => options.cache.replace(input.parse()?).is_some(),
            "crate" => options
                .krate
                .replace(Path::parse_mod_style(input)?)
                .is_some(),
            _ => {
                let _: Expr = input.parse()?;
                cx.error_spanned_by(
                    &name,
                    format!("unknown option `{name}`; expected one of: {VALID}"),
                );
                false
            }
        };
        if duplicate {
            cx.error_spanned_by(&name, format!("duplicate option `{name}`"));
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(options)
}

struct Plan {
    krate: Path,
    tags: Vec<TagPlan>,
    on_error: Option<Expr>,
    cache: Option<Expr>,
    is_result: bool,
}

fn check(cx: &mut Ctxt, options: Options, func: &Function) -> Option<Plan> {
    let sig = &func.item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "#[cache_evict] needs an `async fn` (invalidation talks to Redis)",
        );
    }
    let is_result = matches!(func.shape, ShapeKind::Res | ShapeKind::ResOpt);
    if !is_result && options.on_error.is_none() {
        let span = func
            .output
            .as_ref()
            .map_or_else(|| sig.ident.to_token_stream(), |t| t.to_token_stream());
        cx.error_spanned_by(
            span,
            "#[cache_evict] must be able to report a failed invalidation: return \
             `Result<T, E>` where `E: From<redis_cached::Error>`, or pass `on_error = handler` \
             (a function taking `redis_cached::Error`)",
        );
    }
    let tags = match &options.tags {
        Some(tags) if !tags.is_empty() => check::plan_tags(cx, tags, func).0,
        _ => {
            cx.error_spanned_by(
                &sig.ident,
                "#[cache_evict] needs `tags = [\"...\"]`: the tags to invalidate on success",
            );
            Vec::new()
        }
    };
    if cx.has_errors() {
        return None;
    }
    Some(Plan {
        krate: options
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::redis_cached)),
        tags,
        on_error: options.on_error,
        cache: options.cache,
        is_result,
    })
}

pub(crate) fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::driver::attribute(args, item, "cache_evict", parse, check, expand)
}

fn expand(func: &Function, plan: &Plan) -> TokenStream {
    let krate = &plan.krate;
    let p = quote!(#krate::__private);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func.item;
    let rendered = render_tags(&plan.tags);
    let tags = quote!(::std::vec![#(#rendered),*]);
    let resolve = crate::expand::resolve_tokens(plan.cache.as_ref(), &p);
    let output = match &func.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let evict = quote!(#p::evict_tags(__cache_handle, __cache_tags).await);
    let body = match (&plan.on_error, plan.is_result) {
        (None, _) => quote! {
            match __cache_ret {
                ::core::result::Result::Ok(__cache_ok) => match #evict {
                    ::core::result::Result::Ok(()) => ::core::result::Result::Ok(__cache_ok),
                    ::core::result::Result::Err(__cache_err) => ::core::result::Result::Err(#p::into_error(__cache_err)),
                },
                ::core::result::Result::Err(__cache_err) => ::core::result::Result::Err(__cache_err),
            }
        },
        (Some(handler), true) => quote! {
            if __cache_ret.is_ok() && let ::core::result::Result::Err(__cache_err) = #evict {
                (#handler)(__cache_err);
            }
            __cache_ret
        },
        (Some(handler), false) => quote! {
            if let ::core::result::Result::Err(__cache_err) = #evict {
                (#handler)(__cache_err);
            }
            __cache_ret
        },
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            // Rendered before the body takes the arguments.
            let __cache_tags = #tags;
            let __cache_handle = #resolve;
            #[allow(clippy::let_and_return, clippy::needless_return, unused_braces)]
            let __cache_ret: #output = async move #block.await;
            #body
        }
    }
}
