//! The runtime halves of the generated helpers (`NAME_put`, `NAME_invalidate`, `NAME_key`) and
//! of tag invalidation.

use std::time::Duration;

use serde::Serialize;

use crate::{
    Cache, Error,
    envelope::EntryMeta,
    key::{self, ArgsKey},
    read::{Keys, drop_entry, encode, put_entry, usable},
    shape::Shape,
    spec::FnSpec,
    telemetry::Event,
};

/// `NAME_put`: stores a known value under the function's key (write-through), with its tags'
/// current versions. Starts a new generation, so loads that began earlier cannot overwrite it.
pub async fn put<T: Serialize + serde::de::DeserializeOwned>(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    tags: Vec<String>,
    value: &T,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let keys = Keys::new(&cache, spec, &args?, &tags);
    let ttl = spec.jittered(spec.ttl(&cache));
    let kept = ttl.saturating_add(spec.stale);
    let store = async {
        let tag_versions = cache.conn().capture_tags(&keys.tags, kept).await?;
        let meta = EntryMeta {
            ttl,
            stale: spec.stale,
            load_time: Duration::ZERO,
            tag_versions,
        };
        let bytes = encode(&cache, spec, Some(value), &meta)?;
        put_entry(&cache, spec, &keys, &bytes, kept).await
    };
    let stored = cache.changing_entry(&keys.entry, store).await;
    // Applied, if only on the master (`NotReplicated`): loads in flight must not hand out the
    // value from before it.
    if matches!(stored, Ok(()) | Err(Error::NotReplicated { .. })) {
        cache.inner().flights.detach(&keys.entry);
        cache.record(spec, Event::Stored);
    }
    stored
}

/// `NAME_peek`: the output a call would be served from the cache (the stored entry, stale
/// ones included, if it decodes and its tags are current), without ever loading: `None` when
/// there is none. Reads the store, not the first level.
pub async fn peek<S: Shape>(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
    tags: Vec<String>,
) -> Result<Option<S::Output>, Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let keys = Keys::new(&cache, spec, &args?, &tags);
    let read = cache.conn().read(&keys.entry, &keys.tags, false).await?;
    Ok(read
        .current
        .and_then(|bytes| usable::<S>(&cache, spec, &bytes, &read.tag_versions)))
}

/// `NAME_invalidate`: drops the function's entry for these arguments. Loads of it that are in
/// flight (here or in other processes) can no longer store their result. The lock is left to
/// its owner, whose fill is refused and releases it.
pub async fn invalidate(
    cache: Option<Cache>,
    spec: &FnSpec,
    args: Result<ArgsKey, Error>,
) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    let keys = Keys::new(&cache, spec, &args?, &[]);
    // Callers arriving from now on must not join a load that began before this.
    cache.inner().flights.detach(&keys.entry);
    cache
        .changing_entry(&keys.entry, drop_entry(&cache, spec, &keys))
        .await
}

/// Invalidates tags on `cache`: every entry that carries one of them misses from now on.
pub(crate) async fn invalidate_tags<I>(cache: &Cache, tags: I) -> Result<(), Error>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let keys: Vec<String> = tags
        .into_iter()
        .map(|t| key::tag_key(cache.namespace(), t.as_ref()))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    cache.inner().flights.detach_all();
    cache
        .changing_tags(&keys, cache.conn().delete_tags(&keys))
        .await
}

/// Free-function form of [`Cache::invalidate_tags`] for generated update-path code.
pub async fn evict_tags(cache: Option<Cache>, tags: Vec<String>) -> Result<(), Error> {
    let cache = cache.ok_or(Error::NotInstalled)?;
    invalidate_tags(&cache, tags).await
}

/// Converts a failed invalidation into an update function's error type.
#[diagnostic::on_unimplemented(
    message = "#[cache_evict] cannot report a failed invalidation as `{Self}`",
    label = "implement `From<redis_cached::Error>` for `{Self}`, or pass `on_error = handler` to #[cache_evict]"
)]
pub trait FromCacheError {
    /// The error to return.
    fn from_cache_error(err: Error) -> Self;
}

impl<E: From<Error>> FromCacheError for E {
    fn from_cache_error(err: Error) -> Self {
        E::from(err)
    }
}

/// `Err` of a `#[cache_evict]` function whose invalidation failed.
pub fn into_error<E: FromCacheError>(err: Error) -> E {
    E::from_cache_error(err)
}

/// `NAME_key`: the full key for these arguments. Without a cache the namespace is `cache`
/// (the builder's default); when the arguments do not encode, the key says so and is never
/// written.
pub fn key_string(cache: Option<Cache>, spec: &FnSpec, args: Result<ArgsKey, Error>) -> String {
    let namespace = cache.as_ref().map_or("cache", |c| c.namespace());
    match args {
        Ok(args) => key::entry_key(namespace, spec.name, spec.version, &args),
        Err(err) => format!(
            "{namespace}:{}:v{}:!unencodable({err})",
            spec.name, spec.version
        ),
    }
}
