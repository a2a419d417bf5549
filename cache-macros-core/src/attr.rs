//! Parses the options of `#[redis_cached(...)]` into [`Options`], keeping every value's span.

use std::time::Duration;

use proc_macro2::Span;
use syn::{
    Expr, Ident, LitBool, LitFloat, LitInt, LitStr, Path, Token,
    ext::IdentExt,
    parse::{Parse, ParseStream},
};

use crate::{ctxt::Ctxt, duration};

const VALID: &str = "`ttl`, `name`, `key`, `tags`, `version`, `cache_none`, `none_ttl`, `jitter`, \
                     `stale`, `early_refresh`, `lock`, `lock_ttl`, `lock_wait`, `max_load`, `l1`, `l1_ttl`, \
                     `l1_outage`, `compress`, `compress_over`, `codec`, `cache`, `crate`";

/// Options that later versions add; named so the error says what is missing rather than
/// calling a documented option unknown.
const PLANNED: &[&str] = &[];

/// What `codec = "..."` accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecName {
    Json,
    Postcard,
}

/// What `compress = "..."` accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compress {
    Off,
    Lz4,
    Zstd,
}

/// A TTL-like option: a literal duration, or a constant expression (`u64` seconds or `Duration`).
pub(crate) enum TtlValue {
    Literal(Duration, Span),
    Expr(Box<Expr>),
}

/// An option value with the span of its name, for "duplicate" and "no effect" errors.
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) ttl: Option<Spanned<TtlValue>>,
    pub(crate) name: Option<Spanned<LitStr>>,
    pub(crate) key: Option<Spanned<LitStr>>,
    pub(crate) tags: Option<Spanned<Vec<LitStr>>>,
    pub(crate) version: Option<Spanned<u32>>,
    pub(crate) cache_none: Option<Spanned<bool>>,
    pub(crate) none_ttl: Option<Spanned<TtlValue>>,
    pub(crate) jitter: Option<Spanned<f64>>,
    pub(crate) stale: Option<Spanned<TtlValue>>,
    pub(crate) early_refresh: Option<Spanned<f64>>,
    pub(crate) lock: Option<Spanned<bool>>,
    pub(crate) lock_ttl: Option<Spanned<TtlValue>>,
    pub(crate) lock_wait: Option<Spanned<TtlValue>>,
    pub(crate) max_load: Option<Spanned<TtlValue>>,
    pub(crate) l1: Option<Spanned<bool>>,
    pub(crate) l1_ttl: Option<Spanned<TtlValue>>,
    pub(crate) l1_outage: Option<Spanned<TtlValue>>,
    pub(crate) compress: Option<Spanned<Compress>>,
    pub(crate) compress_over: Option<Spanned<u64>>,
    pub(crate) codec: Option<Spanned<CodecName>>,
    pub(crate) cache: Option<Spanned<Expr>>,
    pub(crate) krate: Option<Spanned<Path>>,
}

/// Stores an option once; a second occurrence is an error at its name.
fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<Spanned<T>>, name: &Ident, value: T) {
    if slot.is_some() {
        cx.error_spanned_by(name, format!("duplicate option `{name}`"));
    } else {
        *slot = Some(Spanned {
            value,
            span: name.span(),
        });
    }
}

impl Options {
    /// Parses the attribute arguments, collecting every error into `cx`.
    pub(crate) fn parse(cx: &mut Ctxt, input: ParseStream) -> syn::Result<Options> {
        let mut options = Options::default();
        while !input.is_empty() {
            let name = Ident::parse_any(input)?;
            input.parse::<Token![=]>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected `=` after `{name}`, as in `{name} = ...`"),
                )
            })?;
            let key = name.to_string();
            match key.as_str() {
                "ttl" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.ttl, &name, v);
                }
                "none_ttl" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.none_ttl, &name, v);
                }
                "name" => {
                    let v: LitStr =
                        parse_expecting(input, "a string, as in `name = \"users::get\"`")?;
                    set_once(cx, &mut options.name, &name, v);
                }
                "key" => {
                    let v: LitStr =
                        parse_expecting(input, "a string template, as in `key = \"user:{id}\"`")?;
                    set_once(cx, &mut options.key, &name, v);
                }
                "tags" => {
                    let v = parse_tags(input)?;
                    set_once(cx, &mut options.tags, &name, v);
                }
                "version" => {
                    let lit: LitInt = parse_expecting(input, "an integer, as in `version = 2`")?;
                    match lit.base10_parse::<u32>() {
                        Ok(v) => set_once(cx, &mut options.version, &name, v),
                        Err(_) => cx.error_spanned_by(&lit, "`version` must fit in a u32"),
                    }
                }
                "cache_none" => {
                    let v: LitBool = parse_expecting(input, "`true` or `false`")?;
                    set_once(cx, &mut options.cache_none, &name, v.value);
                }
                "jitter" => {
                    let v = parse_fraction(cx, input)?;
                    set_once(cx, &mut options.jitter, &name, v);
                }
                "stale" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.stale, &name, v);
                }
                "lock_ttl" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.lock_ttl, &name, v);
                }
                "lock_wait" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.lock_wait, &name, v);
                }
                "max_load" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.max_load, &name, v);
                }
                "lock" => {
                    let v: LitBool = parse_expecting(input, "`true` or `false`")?;
                    set_once(cx, &mut options.lock, &name, v.value);
                }
                "l1" => {
                    let v: LitBool = parse_expecting(input, "`true` or `false`")?;
                    set_once(cx, &mut options.l1, &name, v.value);
                }
                "l1_ttl" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.l1_ttl, &name, v);
                }
                "l1_outage" => {
                    let v = parse_ttl(cx, input)?;
                    set_once(cx, &mut options.l1_outage, &name, v);
                }
                "l1_capacity" | "l1_max_entries" | "l1_liveness" => {
                    let _: Expr = input.parse()?;
                    cx.error_spanned_by(
                        &name,
                        format!(
                            "`{name}` is one budget for all functions: set it on the cache, \
                             with `Cache::builder().{name}(...)`"
                        ),
                    );
                }
                "compress" => {
                    let lit: LitStr =
                        parse_expecting(input, "a string: `\"lz4\"`, `\"zstd\"` or `\"off\"`")?;
                    let v = match lit.value().as_str() {
                        "lz4" => Some(Compress::Lz4),
                        "zstd" => Some(Compress::Zstd),
                        "off" => Some(Compress::Off),
                        _ => {
                            cx.error_spanned_by(
                                &lit,
                                "expected `\"lz4\"`, `\"zstd\"` or `\"off\"`",
                            );
                            None
                        }
                    };
                    // An unknown algorithm is reported once, not again at `compress_over`.
                    set_once(cx, &mut options.compress, &name, v.unwrap_or(Compress::Lz4));
                }
                "codec" => {
                    let lit: LitStr =
                        parse_expecting(input, "a string: `\"json\"` or `\"postcard\"`")?;
                    match lit.value().as_str() {
                        "json" => set_once(cx, &mut options.codec, &name, CodecName::Json),
                        "postcard" => set_once(cx, &mut options.codec, &name, CodecName::Postcard),
                        _ => cx.error_spanned_by(&lit, "expected `\"json\"` or `\"postcard\"`"),
                    }
                }
                "compress_over" => {
                    let lit: LitInt =
                        parse_expecting(input, "a size in bytes, as in `compress_over = 4096`")?;
                    match lit.base10_parse::<u32>() {
                        Ok(v) => set_once(cx, &mut options.compress_over, &name, u64::from(v)),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            "`compress_over` is a size in bytes that fits in a u32",
                        ),
                    }
                }
                "early_refresh" => {
                    let v = parse_beta(cx, input)?;
                    set_once(cx, &mut options.early_refresh, &name, v);
                }
                "cache" => {
                    let v: Expr = input.parse()?;
                    set_once(cx, &mut options.cache, &name, v);
                }
                "crate" => {
                    let v = Path::parse_mod_style(input)?;
                    set_once(cx, &mut options.krate, &name, v);
                }
                other if PLANNED.contains(&other) => {
                    // Consume the value so the rest of the attribute still parses.
                    let _: Expr = input.parse()?;
                    cx.error_spanned_by(
                        &name,
                        format!("`{other}` is not supported by this version of redis-cached yet"),
                    );
                }
                _ => {
                    let _: Expr = input.parse()?;
                    cx.error_spanned_by(
                        &name,
                        format!("unknown option `{name}`; expected one of: {VALID}"),
                    );
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(options)
    }
}

fn parse_expecting<T: Parse>(input: ParseStream, what: &str) -> syn::Result<T> {
    let span = input.span();
    input
        .parse()
        .map_err(|_| syn::Error::new(span, format!("expected {what}")))
}

fn parse_ttl(cx: &mut Ctxt, input: ParseStream) -> syn::Result<TtlValue> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Ok(match duration::parse(&lit.value()) {
            Ok(d) if d.is_zero() => {
                cx.error_spanned_by(&lit, "a TTL must be greater than zero");
                TtlValue::Literal(Duration::from_secs(1), lit.span())
            }
            Ok(d) => TtlValue::Literal(d, lit.span()),
            Err(msg) => {
                cx.error_spanned_by(&lit, msg);
                TtlValue::Literal(Duration::from_secs(1), lit.span())
            }
        });
    }
    if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        return Ok(match lit.base10_parse::<u64>() {
            Ok(0) => {
                cx.error_spanned_by(&lit, "a TTL must be greater than zero");
                TtlValue::Literal(Duration::from_secs(1), lit.span())
            }
            Ok(secs) => TtlValue::Literal(Duration::from_secs(secs), lit.span()),
            Err(_) => {
                cx.error_spanned_by(&lit, "expected whole seconds, as in `ttl = 3600`");
                TtlValue::Literal(Duration::from_secs(1), lit.span())
            }
        });
    }
    let expr: Expr = input.parse()?;
    if matches!(expr, Expr::Lit(_)) {
        cx.error_spanned_by(
            &expr,
            "expected whole seconds (`3600`), a duration string (`\"1h\"`) or a constant",
        );
    }
    Ok(TtlValue::Expr(Box::new(expr)))
}

/// A number (`0.1`, `1`), with its span.
fn parse_number(input: ParseStream, expected: &str) -> syn::Result<(f64, proc_macro2::Span)> {
    let span = input.span();
    let value = if input.peek(LitFloat) {
        input.parse::<LitFloat>()?.base10_parse::<f64>()?
    } else if input.peek(LitInt) {
        input.parse::<LitInt>()?.base10_parse::<f64>()?
    } else {
        return Err(syn::Error::new(span, expected));
    };
    Ok((value, span))
}

fn parse_fraction(cx: &mut Ctxt, input: ParseStream) -> syn::Result<f64> {
    let (value, span) = parse_number(
        input,
        "expected a fraction between 0 and 1, as in `jitter = 0.1`",
    )?;
    if !(0.0..=1.0).contains(&value) {
        cx.syn_error(syn::Error::new(
            span,
            "`jitter` must be between 0 and 1 (a fraction of the TTL)",
        ));
    }
    Ok(value)
}

/// `["user:{id}", "org:{org.id}"]`.
pub(crate) fn parse_tags(input: ParseStream) -> syn::Result<Vec<LitStr>> {
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(
            "expected a list of tag templates, as in `tags = [\"user:{id}\", \"org:{org_id}\"]`",
        ));
    }
    let content;
    let bracket = syn::bracketed!(content in input);
    let tags = syn::punctuated::Punctuated::<LitStr, Token![,]>::parse_terminated(&content)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected tag templates, as in `tags = [\"user:{id}\", \"org:{org_id}\"]`",
            )
        })?;
    let _ = bracket;
    Ok(tags.into_iter().collect())
}

fn parse_beta(cx: &mut Ctxt, input: ParseStream) -> syn::Result<f64> {
    let (value, span) = parse_number(
        input,
        "expected the XFetch beta, a number such as `early_refresh = 1.0`",
    )?;
    if !(value > 0.0 && value.is_finite()) {
        cx.syn_error(syn::Error::new(
            span,
            "`early_refresh` (the XFetch beta) must be greater than 0 (1.0 is the usual choice; larger refreshes earlier)",
        ));
    }
    Ok(value)
}

impl TtlValue {
    pub(crate) fn span(&self) -> Span {
        match self {
            TtlValue::Literal(_, span) => *span,
            TtlValue::Expr(e) => syn::spanned::Spanned::span(&**e),
        }
    }
}
