//! Reads the annotated function: receiver, parameters (and their `#[cache(...)]` markers),
//! generics and the shape of the return type.

use proc_macro2::Span;
use syn::{
    FnArg, GenericArgument, GenericParam, Ident, ItemFn, Pat, PathArguments, ReturnType, Type,
    spanned::Spanned, visit::Visit,
};

use crate::ctxt::Ctxt;

/// One parameter other than the receiver.
pub(crate) struct Param {
    /// The pattern as written (`id`, `mut id`, `(a, b)`, `Point { x, .. }`).
    pub(crate) pat: Box<Pat>,
    pub(crate) ty: Box<Type>,
    /// The names the pattern binds, in order; a key covers exactly these.
    pub(crate) bindings: Vec<Ident>,
    /// `#[cache(skip)]`.
    pub(crate) skip: bool,
    /// The type is `impl Trait`.
    pub(crate) impl_trait: bool,
    /// The type borrows nothing (no `&`, no lifetime, no `impl Trait`).
    pub(crate) owned: bool,
}

/// How the return type maps onto what is cached (see `cache_runtime::shape`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShapeKind {
    Plain,
    Opt,
    Res,
    ResOpt,
}

pub(crate) struct Function {
    /// The function with the `#[cache(...)]` markers removed, otherwise as written.
    pub(crate) item: ItemFn,
    pub(crate) receiver: Option<Span>,
    /// `self: Arc<Self>` and the like: a receiver type that borrows nothing.
    pub(crate) owned_receiver: Option<Type>,
    pub(crate) params: Vec<Param>,
    pub(crate) output: Option<Box<Type>>,
    pub(crate) shape: ShapeKind,
    /// The type a cached value has (`T` of `Result<Option<T>, E>` and so on).
    pub(crate) value_ty: Option<Type>,
    /// Type parameters, which keys must tell apart.
    pub(crate) type_params: Vec<Ident>,
    /// Const parameters, whose values are part of the key.
    pub(crate) const_params: Vec<Ident>,
}

impl Function {
    pub(crate) fn read(cx: &mut Ctxt, mut item: ItemFn) -> Function {
        let mut receiver = None;
        let mut owned_receiver = None;
        let mut params = Vec::new();
        for input in &mut item.sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    receiver = Some(r.span());
                    if r.colon_token.is_some() && r.reference.is_none() && borrows_nothing(&r.ty) {
                        owned_receiver = Some((*r.ty).clone());
                    }
                }
                FnArg::Typed(pt) => {
                    let skip = take_cache_markers(cx, &mut pt.attrs);
                    let mut bindings = Bindings::default();
                    bindings.visit_pat(&pt.pat);
                    params.push(Param {
                        pat: pt.pat.clone(),
                        ty: pt.ty.clone(),
                        bindings: bindings.0,
                        skip,
                        impl_trait: matches!(&*pt.ty, Type::ImplTrait(_)),
                        owned: borrows_nothing(&pt.ty),
                    });
                }
            }
        }
        let output = match &item.sig.output {
            ReturnType::Type(_, ty) => Some(ty.clone()),
            ReturnType::Default => None,
        };
        let (shape, value_ty) = match output.as_deref() {
            Some(ty) => classify(ty),
            None => (ShapeKind::Plain, None),
        };
        let mut type_params = Vec::new();
        let mut const_params = Vec::new();
        for param in &item.sig.generics.params {
            match param {
                GenericParam::Type(t) => type_params.push(t.ident.clone()),
                GenericParam::Const(c) => const_params.push(c.ident.clone()),
                GenericParam::Lifetime(_) => {}
            }
        }
        Function {
            item,
            receiver,
            owned_receiver,
            params,
            output,
            shape,
            value_ty,
            type_params,
            const_params,
        }
    }

    pub(crate) fn has_impl_trait_params(&self) -> bool {
        self.params.iter().any(|p| p.impl_trait)
    }
}

/// Whether a type contains no reference, lifetime or `impl Trait` (so it can be moved into a
/// spawned task if it is also `Clone + Send + Sync`).
pub(crate) fn borrows_nothing(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, _: &'ast syn::TypeReference) {
            self.0 = true;
        }
        fn visit_lifetime(&mut self, _: &'ast syn::Lifetime) {
            self.0 = true;
        }
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    !finder.0
}

/// Removes `#[cache(...)]` from a parameter (it is not a real attribute) and reads it.
fn take_cache_markers(cx: &mut Ctxt, attrs: &mut Vec<syn::Attribute>) -> bool {
    let mut skip = false;
    attrs.retain(|attr| {
        if !attr.path().is_ident("cache") {
            return true;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                if skip {
                    return Err(meta.error("duplicate `skip`"));
                }
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown parameter option; expected `skip`, as in `#[cache(skip)]`"))
            }
        });
        if let Err(err) = parsed {
            cx.syn_error(err);
        }
        false
    });
    skip
}

#[derive(Default)]
struct Bindings(Vec<Ident>);

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
        self.0.push(pat.ident.clone());
        syn::visit::visit_pat_ident(self, pat);
    }
}

/// The last path segment of a type and its generic arguments, if it is a plain path.
fn last_segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let seg = tp.path.segments.last()?;
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((seg.ident.to_string(), args))
}

/// Reads the shape from the syntax: a last path segment named `Result` or ending in `Result`
/// with type arguments (so `io::Result<T>`, `anyhow::Result<T>` and `AppResult<T>` work),
/// `Option<T>`, else plain. Generated code checks at compile time that a plain type is not a
/// `Result` or `Option` behind an alias with another name.
fn classify(ty: &Type) -> (ShapeKind, Option<Type>) {
    match last_segment(ty) {
        Some((name, args)) if name.ends_with("Result") && !args.is_empty() => {
            let ok = args[0];
            match last_segment(ok) {
                Some((inner, inner_args)) if inner == "Option" && inner_args.len() == 1 => {
                    (ShapeKind::ResOpt, Some(inner_args[0].clone()))
                }
                _ => (ShapeKind::Res, Some(ok.clone())),
            }
        }
        Some((name, args)) if name == "Option" && args.len() == 1 => {
            (ShapeKind::Opt, Some(args[0].clone()))
        }
        _ => (ShapeKind::Plain, Some(ty.clone())),
    }
}
