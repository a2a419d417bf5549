//! The semantic rules: what makes a valid cached function. Produces the [`Plan`] that
//! [`crate::expand`] turns into tokens.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{Expr, Ident, LitStr, Member, Path, Type, visit::Visit};

use crate::{
    ast::{Function, ShapeKind},
    attr::{Options, TtlValue},
    ctxt::Ctxt,
    template::{self, Piece},
};

/// How the key's argument part is built.
pub(crate) enum KeyPlan {
    /// Every non-skipped parameter, in order.
    Derived,
    /// A template: literal text and interpolated expressions.
    Template(Vec<KeyPiece>),
}

pub(crate) enum KeyPiece {
    Literal(String),
    Value(Access),
}

/// `root.field.0...` from a template: a parameter (or `self`) and the members read from it.
pub(crate) struct Access {
    /// `None` for `self`.
    pub(crate) root: Option<Ident>,
    pub(crate) members: Vec<Member>,
}

/// The function's stable name in keys.
pub(crate) enum Name {
    /// `name = "..."`.
    Given(LitStr),
    /// `module_path!()::fn`.
    FromPath(Ident),
}

/// Everything [`crate::expand`] needs, checked.
pub(crate) struct Plan {
    pub(crate) krate: Path,
    pub(crate) name: Name,
    pub(crate) version: u32,
    pub(crate) fingerprint: u64,
    pub(crate) ttl: Option<TtlValue>,
    pub(crate) none_ttl: Option<TtlValue>,
    pub(crate) cache_none: bool,
    pub(crate) jitter: f64,
    pub(crate) cache: Option<Expr>,
    pub(crate) key: KeyPlan,
    /// Indexes of the parameters the key uses (the helpers' key arguments).
    pub(crate) key_params: Vec<usize>,
    pub(crate) output: Type,
    pub(crate) value_ty: Type,
    /// `stale` as a `Duration` expression.
    pub(crate) stale: Option<TtlValue>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) lock: bool,
    pub(crate) lock_ttl: Option<TtlValue>,
    pub(crate) lock_wait: Option<TtlValue>,
    pub(crate) max_load: Option<TtlValue>,
    /// `l1 = true`, with its options.
    pub(crate) l1: Option<FirstLevelPlan>,
    /// `compress = "..."` with `compress_over`; `None` uses the cache's setting.
    pub(crate) compress: Option<(crate::attr::Compress, Option<u64>)>,
    /// `codec = "..."`; `None` uses the cache's.
    pub(crate) codec: Option<crate::attr::CodecName>,
    /// Refreshes run in a spawned task: every argument (and the receiver) is owned.
    pub(crate) background: bool,
    /// Whether waiters may share the loader's error (subject to the compile-time probe).
    pub(crate) share_errors: bool,
    /// Tag templates, each a `format!` string and its arguments.
    pub(crate) tags: Vec<TagPlan>,
    /// Indexes of the parameters the tags use (`NAME_put` takes them).
    pub(crate) tag_params: Vec<usize>,
    /// With any `tags` option, entries also carry the function's own tag, which
    /// `NAME_invalidate_all` invalidates.
    pub(crate) function_tag: bool,
}

/// "`option` has no effect" at each option that was set, with `why` after it.
fn no_effect<const N: usize>(cx: &mut Ctxt, set: [(&str, Option<Span>); N], why: &str) {
    for (option, span) in set {
        if let Some(span) = span {
            cx.syn_error(syn::Error::new(
                span,
                format!("`{option}` has no effect{why}"),
            ));
        }
    }
}

/// `l1 = true`: the first level's options, and where `l1` was written (the value type's
/// `Clone` requirement is reported there).
pub(crate) struct FirstLevelPlan {
    pub(crate) ttl: Option<TtlValue>,
    pub(crate) outage: Option<TtlValue>,
    pub(crate) span: Span,
}

/// One tag: rendered with `format!(format, args...)` (each value with `Display`).
pub(crate) struct TagPlan {
    pub(crate) format: String,
    pub(crate) args: Vec<Access>,
}

pub(crate) fn check(cx: &mut Ctxt, options: Options, func: &Function) -> Option<Plan> {
    let sig = &func.item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "#[redis_cached] needs an `async fn`");
    }
    let output = match &func.output {
        None => {
            cx.error_spanned_by(
                &sig.ident,
                "a cached function must return a value: add a return type such as `-> Result<T, E>`",
            );
            None
        }
        Some(ty) => {
            if let Some(span) = find_impl_trait(ty) {
                cx.syn_error(syn::Error::new(
                    span,
                    "a cached function must return a concrete type that implements `Serialize` and \
                     `DeserializeOwned`, not `impl Trait`",
                ));
            }
            Some((**ty).clone())
        }
    };

    if let Some(receiver) = func.receiver
        && options.name.is_none()
        && options.key.is_none()
    {
        cx.syn_error(syn::Error::new(
            receiver,
            "a cached method needs `name = \"...\"` or `key = \"...\"`: the macro cannot see the \
             `Self` type, so two impls in one module would share keys (and `self` is never part \
             of the key unless a `key` template names it)",
        ));
    }

    if let Some(name) = &options.name {
        let text = name.value.value();
        if text.trim().is_empty() || text.contains(['{', '}']) || text.contains(char::is_whitespace)
        {
            cx.error_spanned_by(
                &name.value,
                "`name` must be non-empty and contain no braces or whitespace",
            );
        }
    }

    let negatives = matches!(func.shape, ShapeKind::Opt | ShapeKind::ResOpt);
    if !negatives {
        no_effect(
            cx,
            [
                ("cache_none", options.cache_none.as_ref().map(|s| s.span)),
                (
                    "none_ttl",
                    options.none_ttl.as_ref().map(|s| s.value.span()),
                ),
            ],
            ": the return type has no `None` (it applies to `Option<T>` and `Result<Option<T>, E>`)",
        );
    }
    let cache_none = options.cache_none.as_ref().is_none_or(|s| s.value);
    if !cache_none {
        let none_ttl = options.none_ttl.as_ref().map(|t| t.value.span());
        no_effect(cx, [("none_ttl", none_ttl)], " with `cache_none = false`");
    }

    let lock = options.lock.as_ref().is_none_or(|l| l.value);
    if !lock {
        no_effect(
            cx,
            [
                (
                    "lock_ttl",
                    options.lock_ttl.as_ref().map(|t| t.value.span()),
                ),
                (
                    "lock_wait",
                    options.lock_wait.as_ref().map(|t| t.value.span()),
                ),
            ],
            " with `lock = false`",
        );
    }

    let l1 = options.l1.as_ref().filter(|l1| l1.value).map(|l1| l1.span);
    if l1.is_none() {
        no_effect(
            cx,
            [
                ("l1_ttl", options.l1_ttl.as_ref().map(|t| t.span)),
                ("l1_outage", options.l1_outage.as_ref().map(|t| t.span)),
            ],
            " without `l1 = true`",
        );
    }

    let compressing = options
        .compress
        .as_ref()
        .is_some_and(|c| c.value != crate::attr::Compress::Off);
    if !compressing {
        no_effect(
            cx,
            [(
                "compress_over",
                options.compress_over.as_ref().map(|o| o.span),
            )],
            " without `compress = \"lz4\"` or `\"zstd\"`",
        );
    }

    let (tags, tag_params) = match &options.tags {
        Some(tags) => plan_tags(cx, &tags.value, func),
        None => (Vec::new(), Vec::new()),
    };

    let (key, key_params) = match &options.key {
        None => (
            KeyPlan::Derived,
            (0..func.params.len())
                .filter(|&i| !func.params[i].skip)
                .collect(),
        ),
        Some(key) => plan_template(cx, &key.value, func),
    };

    if l1.is_some()
        && let Some(tags) = &options.tags
    {
        let key = options.key.as_ref().map(|k| &k.value);
        first_level_tags(cx, &tags.value, func, key);
    }

    let output = output?;
    if cx.has_errors() {
        return None;
    }
    let version = options.version.as_ref().map_or(1, |v| v.value);
    let krate = options
        .krate
        .map_or_else(|| syn::parse_quote!(::redis_cached), |k| k.value);
    let ident = &sig.ident;
    let name = match options.name {
        Some(name) => Name::Given(name.value),
        None => Name::FromPath(ident.clone()),
    };
    let refreshes = options.stale.is_some() || options.early_refresh.is_some();
    let background = refreshes && owns_arguments(func);
    let share_errors = func.type_params.is_empty() && crate::ast::borrows_nothing(&output);
    Some(Plan {
        stale: options.stale.map(|t| t.value),
        early_refresh: options.early_refresh.map(|e| e.value),
        lock,
        lock_ttl: options.lock_ttl.map(|t| t.value),
        lock_wait: options.lock_wait.map(|t| t.value),
        max_load: options.max_load.map(|t| t.value),
        l1: l1.map(|span| FirstLevelPlan {
            ttl: options.l1_ttl.map(|t| t.value),
            outage: options.l1_outage.map(|t| t.value),
            span,
        }),
        codec: options.codec.map(|c| c.value),
        compress: options
            .compress
            .map(|c| (c.value, options.compress_over.as_ref().map(|o| o.value))),
        background,
        share_errors,
        function_tag: options.tags.is_some(),
        tags,
        tag_params,
        name,
        version,
        fingerprint: fingerprint(&output, version),
        ttl: options.ttl.map(|t| t.value),
        none_ttl: options.none_ttl.map(|t| t.value),
        cache_none,
        jitter: options.jitter.map_or(0.0, |j| j.value),
        cache: options.cache.map(|c| c.value),
        key,
        key_params,
        krate,
        value_ty: func.value_ty.clone().unwrap_or_else(|| output.clone()),
        output,
    })
}

/// Whether the body can be moved into a spawned task: no borrowed receiver, and every parameter
/// of a type that borrows nothing (`Send` is then required of the body, checked by the compiler).
fn owns_arguments(func: &Function) -> bool {
    (func.receiver.is_none() || func.owned_receiver.is_some())
        && func.params.iter().all(|p| p.owned)
}

/// Resolves `{root.field...}` to an expression, recording which parameter it uses.
/// Skipped parameters may appear in tags (rendered with `Display`) but not in keys.
fn placeholder(
    cx: &mut Ctxt,
    lit: &LitStr,
    func: &Function,
    root: &str,
    fields: &[String],
    allow_skipped: bool,
    used: &mut Vec<usize>,
) -> Access {
    let root_ident = if root == "self" {
        if func.receiver.is_none() {
            cx.error_spanned_by(
                lit,
                "`{self...}` in a template needs a method with a `self` receiver",
            );
        }
        None
    } else {
        match func
            .params
            .iter()
            .position(|p| p.bindings.iter().any(|b| b == root))
        {
            Some(i) if func.params[i].skip && !allow_skipped => {
                cx.error_spanned_by(
                    lit,
                    format!("`{root}` is marked `#[cache(skip)]` and cannot appear in the key"),
                );
            }
            Some(i) => {
                if !used.contains(&i) {
                    used.push(i);
                }
            }
            None => {
                let names: Vec<String> = func
                    .params
                    .iter()
                    .filter(|p| allow_skipped || !p.skip)
                    .flat_map(|p| p.bindings.iter().map(|b| format!("`{b}`")))
                    .collect();
                cx.error_spanned_by(
                    lit,
                    format!(
                        "template names `{root}`, which is not a parameter; expected one of: {}",
                        if names.is_empty() {
                            "(no parameters)".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
        }
        // `template::split` admitted only identifiers.
        match syn::parse_str::<Ident>(root) {
            Ok(mut ident) => {
                ident.set_span(lit.span());
                Some(ident)
            }
            Err(_) => {
                cx.error_spanned_by(lit, format!("`{root}` is not an identifier"));
                None
            }
        }
    };
    // `template::split` admitted only identifiers and `u32` indexes.
    let members = fields.iter().filter_map(|f| match f.parse::<u32>() {
        Ok(index) => Some(Member::Unnamed(syn::Index {
            index,
            span: lit.span(),
        })),
        Err(_) => syn::parse_str::<Ident>(f).ok().map(|mut ident| {
            ident.set_span(lit.span());
            Member::Named(ident)
        }),
    });
    Access {
        root: root_ident,
        members: members.collect(),
    }
}

/// Resolves a key template against the parameters.
fn plan_template(cx: &mut Ctxt, lit: &LitStr, func: &Function) -> (KeyPlan, Vec<usize>) {
    let pieces = match template::parse(&lit.value()) {
        Ok(pieces) => pieces,
        Err(msg) => {
            cx.error_spanned_by(lit, msg);
            return (KeyPlan::Template(Vec::new()), Vec::new());
        }
    };
    let mut used = Vec::new();
    let planned = pieces
        .into_iter()
        .map(|piece| match piece {
            Piece::Literal(text) => KeyPiece::Literal(text),
            Piece::Value { root, fields } => {
                KeyPiece::Value(placeholder(cx, lit, func, &root, &fields, false, &mut used))
            }
        })
        .collect();
    used.sort_unstable();
    (KeyPlan::Template(planned), used)
}

/// Resolves tag templates: each becomes a `format!` call.
/// With `l1 = true`, a tag may only use values that are part of the key: a first-level hit is
/// found by the key alone, so it cannot tell apart calls that differ only in a tag. A tag's
/// `{root.field}` is covered when the key holds the whole argument `root` (a derived key holds
/// every argument not skipped) or `{root}`, `{root.field}` or a prefix of it (a key template).
fn first_level_tags(cx: &mut Ctxt, tags: &[LitStr], func: &Function, key: Option<&LitStr>) {
    let covered: Vec<(String, Vec<String>)> = match key {
        Some(key) => match template::parse(&key.value()) {
            Ok(pieces) => pieces
                .into_iter()
                .filter_map(|piece| match piece {
                    Piece::Value { root, fields } => Some((root, fields)),
                    Piece::Literal(_) => None,
                })
                .collect(),
            // Reported by `plan_template`.
            Err(_) => return,
        },
        None => func
            .params
            .iter()
            .filter(|p| !p.skip)
            .flat_map(|p| p.bindings.iter().map(|b| (b.to_string(), Vec::new())))
            .collect(),
    };
    for lit in tags {
        // Errors in the template itself are reported by `plan_tags`.
        let Ok(pieces) = template::split(&lit.value()) else {
            continue;
        };
        for piece in pieces {
            let Piece::Value { root, fields } = piece else {
                continue;
            };
            let in_key = covered
                .iter()
                .any(|(r, f)| *r == root && fields.starts_with(f));
            if !in_key {
                let path = std::iter::once(root.as_str())
                    .chain(fields.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(".");
                cx.error_spanned_by(
                    lit,
                    format!(
                        "with `l1 = true`, tags may only use values that are part of the key, and \
                         `{path}` is not: a first-level hit is found by its key alone, so it could \
                         not tell apart calls that differ only in this tag"
                    ),
                );
                break;
            }
        }
    }
}

pub(crate) fn plan_tags(
    cx: &mut Ctxt,
    tags: &[LitStr],
    func: &Function,
) -> (Vec<TagPlan>, Vec<usize>) {
    let mut used = Vec::new();
    let mut planned = Vec::new();
    for lit in tags {
        let pieces = match template::split(&lit.value()) {
            Ok(pieces) => pieces,
            Err(msg) => {
                cx.error_spanned_by(lit, msg.replace("key template", "tag template"));
                continue;
            }
        };
        let mut format = String::new();
        let mut args = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Literal(text) => format.push_str(&text),
                Piece::Value { root, fields } => {
                    format.push_str("{}");
                    args.push(placeholder(cx, lit, func, &root, &fields, true, &mut used));
                }
            }
        }
        planned.push(TagPlan { format, args });
    }
    used.sort_unstable();
    (planned, used)
}

/// FNV-1a over the return type's tokens and `version`: a changed type or version is a miss.
fn fingerprint(output: &Type, version: u32) -> u64 {
    let text = format!("{}|v{version}", output.to_token_stream());
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn find_impl_trait(ty: &Type) -> Option<Span> {
    struct Finder(Option<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(syn::spanned::Spanned::span(t));
        }
    }
    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}
