//! How a function's return type maps onto what is cached.
//!
//! `T` caches every value; `Result<T, E>` caches only `Ok`; `Option<T>` and
//! `Result<Option<T>, E>` cache `None` as a negative result (with its own TTL). The macro picks
//! the shape from the return type's syntax and names it with `_` placeholders, so type aliases
//! such as `anyhow::Result<T>` work.

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};

/// What a loader output means for the cache.
pub enum Cacheable<'a, V> {
    /// Store this value.
    Value(&'a V),
    /// Store a negative result.
    Negative,
    /// Do not store (an `Err`).
    Skip,
}

/// A return-type shape. Implemented by the marker types below; not for users to implement.
pub trait Shape {
    /// The function's return type.
    type Output;
    /// The type that is serialized into the entry.
    type Value: Serialize + DeserializeOwned;

    /// What to store for a loader output.
    fn cacheable(output: &Self::Output) -> Cacheable<'_, Self::Value>;

    /// The output for a cached entry (`None` is a negative entry); `None` if this shape has
    /// no way to express it (a negative entry under a plain `T`), which makes it a miss.
    fn from_cached(value: Option<Self::Value>) -> Option<Self::Output>;
}

/// `T`: every value is cached.
pub struct Plain<T>(PhantomData<T>);
/// `Option<T>`: `None` is cached as a negative result.
pub struct Opt<T>(PhantomData<T>);
/// `Result<T, E>`: only `Ok` is cached.
pub struct Res<T, E>(PhantomData<(T, E)>);
/// `Result<Option<T>, E>`: `Ok(None)` is cached as a negative result, `Err` is not cached.
pub struct ResOpt<T, E>(PhantomData<(T, E)>);

impl<T: Serialize + DeserializeOwned> Shape for Plain<T> {
    type Output = T;
    type Value = T;

    fn cacheable(output: &T) -> Cacheable<'_, T> {
        Cacheable::Value(output)
    }

    fn from_cached(value: Option<T>) -> Option<T> {
        value
    }
}

impl<T: Serialize + DeserializeOwned> Shape for Opt<T> {
    type Output = Option<T>;
    type Value = T;

    fn cacheable(output: &Option<T>) -> Cacheable<'_, T> {
        output
            .as_ref()
            .map_or(Cacheable::Negative, Cacheable::Value)
    }

    fn from_cached(value: Option<T>) -> Option<Option<T>> {
        Some(value)
    }
}

impl<T: Serialize + DeserializeOwned, E> Shape for Res<T, E> {
    type Output = Result<T, E>;
    type Value = T;

    fn cacheable(output: &Result<T, E>) -> Cacheable<'_, T> {
        output.as_ref().map_or(Cacheable::Skip, Cacheable::Value)
    }

    fn from_cached(value: Option<T>) -> Option<Result<T, E>> {
        value.map(Ok)
    }
}

impl<T: Serialize + DeserializeOwned, E> Shape for ResOpt<T, E> {
    type Output = Result<Option<T>, E>;
    type Value = T;

    fn cacheable(output: &Result<Option<T>, E>) -> Cacheable<'_, T> {
        match output {
            Ok(Some(v)) => Cacheable::Value(v),
            Ok(None) => Cacheable::Negative,
            Err(_) => Cacheable::Skip,
        }
    }

    fn from_cached(value: Option<T>) -> Option<Result<Option<T>, E>> {
        Some(Ok(value))
    }
}

/// Compile-time guard for plain return types: a type the macro read as plain must not be a
/// `Result` or `Option` hidden behind an alias with another name, or errors and `None`s would
/// be cached as values. Generated code calls `(&&ShapeProbe::<R>::new()).probe()`; autoref
/// picks the most specific impl, and [`require_plain`] rejects all but [`IsPlain`].
pub struct ShapeProbe<R>(PhantomData<R>);

impl<R> ShapeProbe<R> {
    /// A probe for the return type `R`.
    pub fn new() -> Self {
        ShapeProbe(PhantomData)
    }
}

impl<R> Default for ShapeProbe<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Probe result: the return type is a `Result` behind an alias.
pub struct ResultBehindAlias;
/// Probe result: the return type is an `Option` behind an alias.
pub struct OptionBehindAlias;
/// Probe result: the return type is neither `Result` nor `Option`.
pub struct IsPlain;

/// Autoref level for `Result`.
pub trait ProbeResult {
    /// See [`ShapeProbe`].
    fn probe(&self) -> ResultBehindAlias {
        ResultBehindAlias
    }
}
impl<T, E> ProbeResult for &ShapeProbe<Result<T, E>> {}

/// Autoref level for `Option`.
pub trait ProbeOption {
    /// See [`ShapeProbe`].
    fn probe(&self) -> OptionBehindAlias {
        OptionBehindAlias
    }
}
impl<T> ProbeOption for &ShapeProbe<Option<T>> {}

/// Fallback level.
pub trait ProbePlain {
    /// See [`ShapeProbe`].
    fn probe(&self) -> IsPlain {
        IsPlain
    }
}
impl<R> ProbePlain for ShapeProbe<R> {}

/// Implemented only by [`IsPlain`].
#[diagnostic::on_unimplemented(
    message = "the return type is a `Result` or `Option` behind a type alias that #[redis_cached] cannot see through",
    label = "write the return type as `Result<T, E>` or `Option<T>` (or name the alias `...Result`), so that errors and `None` are not cached as values"
)]
pub trait PlainShape {}
impl PlainShape for IsPlain {}

/// Fails to compile unless the probed return type is plain.
pub fn require_plain<P: PlainShape>(_probe: P) {}

/// A leader's error as handed to waiters.
pub(crate) type SharedError = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// What waiters of a failed load get, chosen at compile time from the error type:
///
/// 1. `E: Clone + Send + Sync + 'static`: the leader's error itself;
/// 2. else `E: From<redis_cached::Error>`: `E::from(Error::LoadFailed)`, so one source call
///    answers every waiter;
/// 3. else nothing to give: each waiter runs its own load at once, concurrently.
pub struct ErrorSharing<R> {
    pub(crate) pack: Option<fn(&R) -> Option<SharedError>>,
    pub(crate) unpack: Option<fn(&(dyn std::any::Any + Send + Sync)) -> Option<R>>,
    pub(crate) load_failed: Option<fn(crate::error::Error) -> R>,
}

/// Probe for [`ErrorSharing`]: `(&&&ErrorProbe::<R>::new()).sharing()` picks the first level
/// that applies to `R` (autoref specialization: the impl on `&&ErrorProbe` is tried first).
pub struct ErrorProbe<R>(PhantomData<R>);

impl<R> ErrorProbe<R> {
    /// A probe for the return type `R`.
    pub fn new() -> Self {
        ErrorProbe(PhantomData)
    }
}

impl<R> Default for ErrorProbe<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Autoref level for `Result<T, E: Clone>`.
pub trait ProbeSharedError<R> {
    /// See [`ErrorProbe`].
    fn sharing(&self) -> Option<ErrorSharing<R>>;
}

impl<T, E: Clone + Send + Sync + 'static> ProbeSharedError<Result<T, E>>
    for &&ErrorProbe<Result<T, E>>
{
    fn sharing(&self) -> Option<ErrorSharing<Result<T, E>>> {
        Some(ErrorSharing {
            pack: Some(|r| {
                r.as_ref()
                    .err()
                    .map(|e| std::sync::Arc::new(e.clone()) as _)
            }),
            unpack: Some(|shared| shared.downcast_ref::<E>().map(|e| Err(e.clone()))),
            load_failed: None,
        })
    }
}

/// Autoref level for `Result<T, E: From<redis_cached::Error>>`.
pub trait ProbeConvertedError<R> {
    /// See [`ErrorProbe`].
    fn sharing(&self) -> Option<ErrorSharing<R>>;
}

impl<T, E: From<crate::error::Error>> ProbeConvertedError<Result<T, E>>
    for &ErrorProbe<Result<T, E>>
{
    fn sharing(&self) -> Option<ErrorSharing<Result<T, E>>> {
        Some(ErrorSharing {
            pack: None,
            unpack: None,
            load_failed: Some(|err| Err(E::from(err))),
        })
    }
}

/// Fallback level: nothing to share; waiters load by themselves.
pub trait ProbeUnsharedError<R> {
    /// See [`ErrorProbe`].
    fn sharing(&self) -> Option<ErrorSharing<R>> {
        None
    }
}

impl<R> ProbeUnsharedError<R> for ErrorProbe<R> {}
