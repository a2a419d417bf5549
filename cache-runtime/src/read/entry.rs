//! Entries as the read path sees them: encoding with the size cap and the round-trip check,
//! decoding into a function's output, and whether recorded tag versions are still current.

use std::time::Duration;

use crate::{
    Cache, Error,
    envelope::{self, EntryMeta},
    shape::Shape,
    spec::FnSpec,
    telemetry::Event,
};

/// A random token: lock owners and generations.
pub(crate) fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// How long a generation key lives: at least as long as the entries it guards.
pub(crate) fn generation_ttl(cache: &Cache, spec: &FnSpec) -> Duration {
    spec.kept(cache).max(Duration::from_secs(3600))
}

/// Whether an entry's recorded tag versions are all still current.
pub(crate) fn tags_current(recorded: &[u64], current: &[Option<u64>]) -> bool {
    recorded.len() == current.len() && recorded.iter().zip(current).all(|(r, c)| Some(*r) == *c)
}

/// Decodes an entry into the function's output; `Err` says why it is unusable.
pub(crate) fn decode<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    bytes: &[u8],
) -> Result<(S::Output, EntryMeta), String> {
    let decoded =
        envelope::decode::<S::Value>(spec.fingerprint, bytes, cache.inner().max_value_size)
            .map_err(|e| e.to_string())?;
    let output = S::from_cached(decoded.value)
        .ok_or_else(|| "negative entry for a plain return type".to_owned())?;
    Ok((output, decoded.meta))
}

/// An entry that decodes and whose tags are current.
pub(crate) fn usable<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    bytes: &[u8],
    versions: &[Option<u64>],
) -> Option<S::Output> {
    decode::<S>(cache, spec, bytes)
        .ok()
        .filter(|(_, meta)| tags_current(&meta.tag_versions, versions))
        .map(|(o, _)| o)
}

/// Whether an entry decodes back to the value it was written from (`Err` says how not).
/// JSON: that it decodes at all (a NaN is written as `null`, which does not). Postcard ignores
/// a field `skip_serializing_if` left out, and the bytes then decode, without an error, into
/// another value (whose bytes are the same, so comparing bytes cannot tell): its entries are
/// decoded and compared with the value by their JSON forms, order-insensitive for maps and,
/// where the exact forms differ, for arrays too (a `HashSet` comes back in another order). A
/// value JSON cannot express (a map with non-string keys) is compared by its bytes re-encoded.
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(
    spec: &FnSpec,
    value: Option<&T>,
    bytes: &[u8],
    encoding: envelope::Encoding,
) -> Result<(), String> {
    let decoded =
        envelope::decode::<T>(spec.fingerprint, bytes, usize::MAX).map_err(|e| e.to_string())?;
    if encoding.codec == envelope::Codec::Json {
        return Ok(());
    }
    let json = |v: Option<&T>| v.map(serde_json::to_value).transpose();
    let same = match (json(value), json(decoded.value.as_ref())) {
        (Ok(a), Ok(b)) => a == b || a.map(sorted) == b.map(sorted),
        // Not expressible in JSON: the re-encoded bytes must match.
        _ => {
            let meta = envelope::EntryMeta::default();
            let again = |v: Option<&T>| envelope::encode_with(0, v, &meta, encoding).ok();
            matches!((again(value), again(decoded.value.as_ref())), (Some(a), Some(b)) if a == b)
        }
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "it comes back as another value in {:?} (a skipped field, an untagged enum?)",
            encoding.codec
        ))
    }
}

/// `value` with every array sorted (by its JSON text), recursively.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(sorted).collect();
            items.sort_by_cached_key(|v| v.to_string());
            Value::Array(items)
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, sorted(v))).collect()),
        other => other,
    }
}

/// Encodes `value` in the function's encoding and checks, with one decode, that the entry
/// reads back as the value: the one write path of loads and `NAME_put`. The size is the
/// callers' to check (an oversized load is still handed to its waiters).
fn encode_verified<T: serde::Serialize + serde::de::DeserializeOwned>(
    cache: &Cache,
    spec: &FnSpec,
    value: Option<&T>,
    meta: &EntryMeta,
) -> Result<Vec<u8>, Error> {
    let encoding = spec.encoding(cache);
    let bytes =
        envelope::encode_with(spec.fingerprint, value, meta, encoding).map_err(Error::Serialize)?;
    round_trips(spec, value, &bytes, encoding).map_err(|reason| {
        tracing::warn!(
            function = spec.name,
            reason,
            "value does not decode back; not cached"
        );
        Error::Encode(format!("the value does not decode back: {reason}"))
    })?;
    Ok(bytes)
}

/// Encodes an entry, within the maximum value size (`NAME_put`).
pub(crate) fn encode<T: serde::Serialize + serde::de::DeserializeOwned>(
    cache: &Cache,
    spec: &FnSpec,
    value: Option<&T>,
    meta: &EntryMeta,
) -> Result<Vec<u8>, Error> {
    let bytes = encode_verified(cache, spec, value, meta).and_then(|bytes| {
        let max = cache.inner().max_value_size;
        let size = envelope::decoded_len(&bytes);
        if size > max {
            Err(Error::ValueTooLarge { size, max })
        } else {
            Ok(bytes)
        }
    });
    if bytes.is_err() {
        cache.record(spec, Event::Uncached);
    }
    bytes
}

/// What a loaded output becomes as an entry.
pub(crate) enum Encoded {
    /// Bytes that decode back: store them and hand them to waiters.
    Entry(Vec<u8>),
    /// Bytes too large to store, that waiters can still decode.
    Oversized(Vec<u8>),
    /// Nothing usable: the value does not serialize, or does not decode back (JSON writes a NaN
    /// float as `null`, which then fails to decode).
    Unusable(Error),
}

/// Encodes a loaded value and checks that it decodes back, so no entry is stored that every
/// reader would then treat as a miss (or read as another value).
pub(crate) fn encode_checked<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    value: Option<&S::Value>,
    meta: &EntryMeta,
) -> Encoded {
    let encoded = match encode_verified(cache, spec, value, meta) {
        // Decoded back already: waiters, who asked for this value, may decode it whatever
        // its size.
        Ok(bytes) if envelope::decoded_len(&bytes) > cache.inner().max_value_size => {
            Encoded::Oversized(bytes)
        }
        Ok(bytes) => return Encoded::Entry(bytes),
        Err(err) => Encoded::Unusable(err),
    };
    cache.record(spec, Event::Uncached);
    encoded
}

/// Decodes bytes a load in this process produced (a flight's outcome): no size cap, since an
/// oversized value is handed to waiters without being stored.
pub(crate) fn decode_outcome<S: Shape>(spec: &FnSpec, bytes: &[u8]) -> Option<S::Output> {
    let decoded = envelope::decode::<S::Value>(spec.fingerprint, bytes, usize::MAX).ok()?;
    S::from_cached(decoded.value)
}
