//! Emits the rewritten function and its helpers. Never fails: every rule is in
//! [`crate::check`].

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ItemFn, Pat, spanned::Spanned, visit_mut::VisitMut};

use crate::{
    ast::{Function, ShapeKind},
    attr::TtlValue,
    check::{Access, KeyPiece, KeyPlan, Name, Plan},
};

impl quote::ToTokens for Access {
    /// `root.field.0`, or `self.field`.
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let members = &self.members;
        let root = match &self.root {
            Some(ident) => quote!(#ident),
            None => quote!(self),
        };
        tokens.extend(quote!(#root #(.#members)*));
    }
}

impl quote::ToTokens for Name {
    /// An expression of type `&'static str`.
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(match self {
            Name::Given(name) => quote!(#name),
            Name::FromPath(ident) => quote!(::core::concat!(
                ::core::module_path!(),
                "::",
                ::core::stringify!(#ident)
            )),
        });
    }
}

/// An expression of type `Duration`.
fn ttl_tokens(krate: &syn::Path, value: &TtlValue) -> TokenStream {
    match value {
        TtlValue::Literal(d, _) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::time::Duration::new(#secs, #nanos))
        }
        TtlValue::Expr(expr) => quote!(#krate::__private::IntoTtl::into_ttl(#expr)),
    }
}

/// The rewritten function and its helpers.
pub(crate) fn emit(func: &Function, plan: &Plan) -> TokenStream {
    let krate = &plan.krate;
    let p = quote!(#krate::__private);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func.item;
    let output = &plan.output;
    let spec = spec_tokens(plan, &p);
    let resolve = resolve_tokens(plan.cache.as_ref(), &p);
    let key = key_tokens(func, plan, &p);
    let shape = shape_tokens(func, plan, &p);
    let loader = quote_spanned! {block.span()=>
        async move {
            #[allow(clippy::let_and_return, clippy::needless_return, unused_braces)]
            let __cache_ret: #output = #block;
            __cache_ret
        }
    };
    let tags = tags_tokens(plan);
    let helpers = helpers(func, plan, &p, &spec, &resolve, &key, &tags);
    let plain_check = (func.shape == ShapeKind::Plain && func.type_params.is_empty()).then(|| {
        quote_spanned! {output.span()=>
            {
                #[allow(unused_imports)]
                use #p::{ProbeOption as _, ProbePlain as _, ProbeResult as _};
                #p::require_plain((&&#p::ShapeProbe::<#output>::new()).probe());
            }
        }
    });
    let sharing = if plan.share_errors {
        quote! {{
            #[allow(unused_imports)]
            use #p::{ProbeConvertedError as _, ProbeSharedError as _, ProbeUnsharedError as _};
            (&&&#p::ErrorProbe::<#output>::new()).sharing()
        }}
    } else {
        quote!(::core::option::Option::None)
    };
    // `l1 = true`: how values go in and out of the first level, which needs `Clone` (reported
    // at `l1`). A first-level hit returns before the rest of the call (tags, the lookup's
    // future) is set up.
    let (l1, l1_hit) = match &plan.l1 {
        Some(l1) => {
            let access = respan(quote!(#p::first_level::<#shape>()), l1.span);
            let hit = quote! {
                let __cache_args = match #p::first_level_hit::<#shape>(&__cache_cache, &__cache_spec, __cache_args, #access) {
                    ::core::result::Result::Ok(__cache_out) => return __cache_out,
                    ::core::result::Result::Err(__cache_args) => __cache_args,
                };
            };
            (quote!(::core::option::Option::Some(#access)), hit)
        }
        None => (quote!(::core::option::Option::None), quote!()),
    };
    // A background refresh moves the arguments into a spawned run of the body. The body is
    // emitted once: in a closure owning the arguments when two arms may run it, else inline.
    let (can_spawn, make_loader, load_arm, refresh_arm) = if plan.background {
        (
            quote!(true),
            quote!(let __cache_loader = move || #loader;),
            quote!(__cache_load.run(__cache_loader()).await),
            quote!(__cache_refresh.spawn(__cache_loader())),
        )
    } else {
        (
            quote!(false),
            quote!(),
            quote!(__cache_load.run(#loader).await),
            quote!(__cache_refresh.serve_stale()),
        )
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #plain_check
            let __cache_spec = #spec;
            let __cache_args = #key;
            let __cache_cache = #resolve;
            #l1_hit
            let __cache_tags = #tags;
            #make_loader
            match #p::begin::<#shape>(__cache_cache, &__cache_spec, __cache_args, __cache_tags, #sharing, #can_spawn, #l1).await {
                #p::Begin::Done(__cache_out) => __cache_out,
                #p::Begin::Load(__cache_load) => #load_arm,
                #p::Begin::Refresh(__cache_refresh) => #refresh_arm,
            }
        }
        #helpers
    }
}

/// The runtime's shape type for the function's return type (the error type, if any, inferred).
fn shape_tokens(func: &Function, plan: &Plan, p: &TokenStream) -> TokenStream {
    let value_ty = &plan.value_ty;
    match func.shape {
        ShapeKind::Plain => quote!(#p::Plain<#value_ty>),
        ShapeKind::Opt => quote!(#p::Opt<#value_ty>),
        ShapeKind::Res => quote!(#p::Res<#value_ty, _>),
        ShapeKind::ResOpt => quote!(#p::ResOpt<#value_ty, _>),
    }
}

/// `tokens` with every span set to `span`, so an error about the whole expression points there.
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                return proc_macro2::TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

/// An expression of type `Vec<String>`: the rendered tags, then the function's own tag.
fn tags_tokens(plan: &Plan) -> TokenStream {
    let mut rendered = render_tags(&plan.tags);
    if plan.function_tag {
        rendered.push(function_tag(plan));
    }
    quote!(::std::vec![#(#rendered),*])
}

/// `format!` calls rendering tag templates.
pub(crate) fn render_tags(tags: &[crate::check::TagPlan]) -> Vec<TokenStream> {
    tags.iter()
        .map(|tag| {
            let (format, args) = (&tag.format, &tag.args);
            quote!(::std::format!(#format, #(#args),*))
        })
        .collect()
}

/// The implicit tag every entry of the function carries: `fn:{name}:v{version}`.
fn function_tag(plan: &Plan) -> TokenStream {
    let (name, version) = (&plan.name, plan.version);
    quote!(::std::format!("fn:{}:v{}", #name, #version))
}

fn spec_tokens(plan: &Plan, p: &TokenStream) -> TokenStream {
    let Plan {
        name,
        version,
        fingerprint,
        cache_none,
        jitter,
        lock,
        ..
    } = plan;
    let krate = &plan.krate;
    let opt = |t: &Option<TtlValue>| match t {
        Some(t) => {
            let t = ttl_tokens(krate, t);
            quote!(::core::option::Option::Some(#t))
        }
        None => quote!(::core::option::Option::None),
    };
    let ttl = opt(&plan.ttl);
    let none_ttl = opt(&plan.none_ttl);
    let stale = plan.stale.as_ref().map_or_else(
        || quote!(::core::time::Duration::ZERO),
        |t| ttl_tokens(krate, t),
    );
    let early_refresh = match plan.early_refresh {
        Some(beta) => quote!(::core::option::Option::Some(#beta)),
        None => quote!(::core::option::Option::None),
    };
    let lock_ttl = opt(&plan.lock_ttl);
    let lock_wait = opt(&plan.lock_wait);
    let max_load = opt(&plan.max_load);
    let l1 = match &plan.l1 {
        Some(l1) => {
            let ttl = l1.ttl.as_ref().map_or_else(
                || quote!(::core::time::Duration::from_secs(5)),
                |t| ttl_tokens(krate, t),
            );
            let outage = opt(&l1.outage);
            quote!(::core::option::Option::Some(#p::FirstLevelSpec { ttl: #ttl, outage: #outage }))
        }
        None => quote!(::core::option::Option::None),
    };
    let compression = match plan.compress {
        None => quote!(::core::option::Option::None),
        Some((crate::attr::Compress::Off, _)) => {
            quote!(::core::option::Option::Some(#p::Compression::Off))
        }
        Some((algorithm, over)) => {
            let over = over.map_or_else(
                || quote!(#p::Compression::DEFAULT_OVER),
                |over| {
                    let over = over as usize;
                    quote!(#over)
                },
            );
            let variant = match algorithm {
                crate::attr::Compress::Zstd => quote!(Zstd),
                _ => quote!(Lz4),
            };
            quote!(::core::option::Option::Some(#p::Compression::#variant { over: #over }))
        }
    };
    let codec = match plan.codec {
        None => quote!(::core::option::Option::None),
        Some(crate::attr::CodecName::Json) => quote!(::core::option::Option::Some(#p::Codec::Json)),
        Some(crate::attr::CodecName::Postcard) => {
            quote!(::core::option::Option::Some(#p::Codec::Postcard))
        }
    };
    quote! {{
        static __CACHE_TELEMETRY: #p::FnTelemetry = #p::FnTelemetry::new();
        #p::FnSpec {
            name: #name,
            version: #version,
            fingerprint: #fingerprint,
            ttl: #ttl,
            none_ttl: #none_ttl,
            cache_none: #cache_none,
            jitter: #jitter,
            stale: #stale,
            early_refresh: #early_refresh,
            lock: #lock,
            lock_ttl: #lock_ttl,
            lock_wait: #lock_wait,
            max_load: #max_load,
            l1: #l1,
            compression: #compression,
            codec: #codec,
            telemetry: &__CACHE_TELEMETRY,
        }
    }}
}

/// An expression of type `Option<Cache>`: `cache = EXPR`, else the current default.
pub(crate) fn resolve_tokens(cache: Option<&syn::Expr>, p: &TokenStream) -> TokenStream {
    match cache {
        Some(expr) => quote_spanned!(expr.span()=> #p::cache_ref(&(#expr))),
        None => quote!(#p::default_cache()),
    }
}

/// A reference to everything a parameter's pattern binds: `&id`, or `&(&a, &b)`.
fn binding_ref(func: &Function, index: usize) -> TokenStream {
    let bindings = &func.params[index].bindings;
    match bindings.as_slice() {
        [one] => quote!(&#one),
        many => quote!(&(#(&#many,)*)),
    }
}

/// An expression of type `Result<ArgsKey, Error>`.
fn key_tokens(func: &Function, plan: &Plan, p: &TokenStream) -> TokenStream {
    let mut steps = Vec::new();
    match &plan.key {
        KeyPlan::Derived => {
            for &i in &plan.key_params {
                let value = binding_ref(func, i);
                steps.push(quote!(__cache_k.arg(#value);));
            }
        }
        KeyPlan::Template(pieces) => {
            for piece in pieces {
                steps.push(match piece {
                    KeyPiece::Literal(text) => quote!(__cache_k.literal(#text);),
                    KeyPiece::Value(expr) => quote!(__cache_k.value(&#expr);),
                });
            }
        }
    }
    for &i in &plan.key_params {
        if func.params[i].impl_trait {
            let value = binding_ref(func, i);
            steps.push(quote!(__cache_k.type_of_val(#value);));
        }
    }
    for ty in &func.type_params {
        steps.push(quote!(__cache_k.type_param::<#ty>();));
    }
    for c in &func.const_params {
        steps.push(quote!(__cache_k.arg(&#c);));
    }
    quote! {{
        let mut __cache_k = #p::KeyBuilder::new();
        #(#steps)*
        __cache_k.finish()
    }}
}

/// Removes `mut` from parameter patterns (helpers never mutate them).
struct StripMut;

impl VisitMut for StripMut {
    fn visit_pat_ident_mut(&mut self, pat: &mut syn::PatIdent) {
        pat.mutability = None;
        syn::visit_mut::visit_pat_ident_mut(self, pat);
    }
}

fn helpers(
    func: &Function,
    plan: &Plan,
    p: &TokenStream,
    spec: &TokenStream,
    resolve: &TokenStream,
    key: &TokenStream,
    tags: &TokenStream,
) -> TokenStream {
    let ItemFn { vis, sig, .. } = &func.item;
    let ident = &sig.ident;
    let (impl_generics, _, where_clause) = sig.generics.split_for_impl();
    let _ = impl_generics;
    let generics = &sig.generics;
    let receiver: Vec<&FnArg> = sig
        .inputs
        .iter()
        .filter(|a| matches!(a, FnArg::Receiver(_)))
        .collect();
    // Key, invalidate and put borrow the receiver whatever its form (`self: Arc<Self>` included),
    // so calling them does not consume it; refresh takes it as the function does.
    let by_ref: Vec<TokenStream> = receiver.iter().map(|_| quote!(&self)).collect();
    let param = |i: usize| {
        let mut pat: Pat = (*func.params[i].pat).clone();
        StripMut.visit_pat_mut(&mut pat);
        let ty = &func.params[i].ty;
        quote!(#pat: #ty)
    };
    let key_params: Vec<TokenStream> = plan.key_params.iter().map(|&i| param(i)).collect();
    // `NAME_put` also takes what its tags use, so a put entry carries its tags.
    let mut put_indexes: Vec<usize> = plan
        .key_params
        .iter()
        .chain(&plan.tag_params)
        .copied()
        .collect();
    put_indexes.sort_unstable();
    put_indexes.dedup();
    let put_params: Vec<TokenStream> = put_indexes.iter().map(|&i| param(i)).collect();
    let krate = &plan.krate;
    let output = &plan.output;
    let value_ty = &plan.value_ty;
    let value_arg = if func
        .params
        .iter()
        .any(|p| p.bindings.iter().any(|b| b == "value"))
    {
        format_ident!("__cache_value")
    } else {
        format_ident!("value")
    };

    let key_fn = format_ident!("{}_key", ident);
    let invalidate_fn = format_ident!("{}_invalidate", ident);
    let put_fn = format_ident!("{}_put", ident);
    let refresh_fn = format_ident!("{}_refresh", ident);
    let peek_fn = format_ident!("{}_peek", ident);
    let shape = shape_tokens(func, plan, p);
    let invalidate_all_fn = format_ident!("{}_invalidate_all", ident);

    let refresh_params: Vec<TokenStream> = func
        .params
        .iter()
        .enumerate()
        .map(|(i, param)| {
            let name = format_ident!("__cache_arg{}", i);
            let ty = &param.ty;
            quote!(#name: #ty)
        })
        .collect();
    let refresh_args = (0..func.params.len()).map(|i| format_ident!("__cache_arg{}", i));
    let turbofish = if func.has_impl_trait_params()
        || (func.type_params.is_empty() && func.const_params.is_empty())
    {
        quote!()
    } else {
        let (tys, consts) = (&func.type_params, &func.const_params);
        quote!(::<#(#tys,)* #(#consts,)*>)
    };
    let call = if receiver.is_empty() {
        quote!(#ident #turbofish(#(#refresh_args),*))
    } else {
        quote!(self.#ident #turbofish(#(#refresh_args),*))
    };

    let doc_key = format!(
        "The cache key [`{ident}`] uses for these arguments (generated by `#[redis_cached]`).\n\n\
         Includes the namespace of the cache the function uses (`cache` when none is installed)."
    );
    let doc_invalidate = format!(
        "Drops the cached entry of [`{ident}`] for these arguments (generated by `#[redis_cached]`).\n\n\
         # Errors\n\nFails if no cache is installed or Redis cannot be reached; the entry then \
         lives until its TTL expires."
    );
    let doc_put = format!(
        "Stores `{value_arg}` as the cached result of [`{ident}`] for these arguments \
         (write-through, generated by `#[redis_cached]`).\n\n\
         # Errors\n\nFails if no cache is installed, the value cannot be serialized or is too \
         large, or Redis cannot be reached."
    );
    let doc_peek = format!(
        "The cached result of [`{ident}`] for these arguments, without ever running it \
         (generated by `#[redis_cached]`): `Ok(None)` when nothing usable is cached (never \
         stored, expired, invalidated), else what a call would be served. For views a job \
         fills with `{ident}_refresh` or `{ident}_put`.\n\n# Errors\n\nFails if no cache is \
         installed or Redis cannot be reached."
    );
    let doc_refresh = format!(
        "Runs [`{ident}`] without looking up the cache and stores its result (generated by \
         `#[redis_cached]`).\n\n# Errors\n\nReturns the function's output once stored; fails if no \
         cache is installed or the result could not be stored."
    );
    let invalidate_all = plan.function_tag.then(|| {
        let doc = format!(
            "Drops every cached entry of [`{ident}`] (this `version`), in one round trip, through \
             the function's own tag (generated by `#[redis_cached]` for functions with `tags`).\n\n\
             # Errors\n\nFails if no cache is installed or Redis cannot be reached."
        );
        let tag = function_tag(plan);
        quote! {
            #[doc = #doc]
            #[allow(dead_code, clippy::needless_lifetimes)]
            #vis async fn #invalidate_all_fn #generics (#(#by_ref),*)
                -> ::core::result::Result<(), #krate::Error> #where_clause
            {
                #p::evict_tags(#resolve, ::std::vec![#tag]).await
            }
        }
    });
    quote! {
        #invalidate_all

        #[doc = #doc_key]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis fn #key_fn #generics (#(#by_ref,)* #(#key_params),*) -> ::std::string::String #where_clause {
            #p::key_string(#resolve, &#spec, #key)
        }

        #[doc = #doc_invalidate]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis async fn #invalidate_fn #generics (#(#by_ref,)* #(#key_params),*)
            -> ::core::result::Result<(), #krate::Error> #where_clause
        {
            #p::invalidate(#resolve, &#spec, #key).await
        }

        #[doc = #doc_put]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis async fn #put_fn #generics (#(#by_ref,)* #(#put_params,)* #value_arg: &#value_ty)
            -> ::core::result::Result<(), #krate::Error> #where_clause
        {
            #p::put(#resolve, &#spec, #key, #tags, #value_arg).await
        }

        #[doc = #doc_peek]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis async fn #peek_fn #generics (#(#by_ref,)* #(#put_params),*)
            -> ::core::result::Result<::core::option::Option<#output>, #krate::Error> #where_clause
        {
            #p::peek::<#shape>(#resolve, &#spec, #key, #tags).await
        }

        #[doc = #doc_refresh]
        #[allow(dead_code, clippy::needless_lifetimes)]
        #vis async fn #refresh_fn #generics (#(#receiver,)* #(#refresh_params),*)
            -> ::core::result::Result<#output, #krate::Error> #where_clause
        {
            #p::refresh(#call).await
        }
    }
}
