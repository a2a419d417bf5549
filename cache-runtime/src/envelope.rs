//! The envelope: how an entry is laid out in the store.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "RC"
//! 2       1     format version (1)
//! 3       8     fingerprint of the return type's tokens and `version` (u64 LE)
//! 11      1     flags (bit 0: negative result, no payload)
//! 12      8     ttl in milliseconds (u64 LE)
//! 20      8     stale window in milliseconds (u64 LE)
//! 28      4     load duration in microseconds (u32 LE, saturating)
//! 32      2     number of tag versions n (u16 LE)
//! 34      8n    tag versions (u64 LE each)
//! 34+8n   ..    payload: serde_json
//! end-8   8     checksum: XXH3-64 of every byte before it (u64 LE)
//! ```
//!
//! Only durations are stored, never one host's timestamps: an entry's age comes from the
//! store's own remaining TTL. Anything that does not match this layout exactly is a
//! [`DecodeError`], which callers treat as a miss.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

const MAGIC: [u8; 2] = *b"RC";
/// 2 added the checksum: a truncated or altered entry (a `u64` payload `12345` cut to `1234`)
/// would otherwise decode as another value.
const FORMAT_VERSION: u8 = 2;
const CHECKSUM_LEN: usize = 8;
const HEADER_LEN: usize = 34;
const FLAG_NEGATIVE: u8 = 1;

/// What the envelope records about an entry besides its value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryMeta {
    /// How long the entry is fresh.
    pub ttl: Duration,
    /// How long after `ttl` it may still be served stale.
    pub stale: Duration,
    /// How long the loader took to produce it.
    pub load_time: Duration,
    /// Versions of the entry's tags when it was loaded.
    pub tag_versions: Vec<u64>,
}

/// A decoded entry: a value, or a cached negative result (`None`).
#[derive(Debug, PartialEq)]
pub struct Decoded<T> {
    /// `None` for a cached negative result.
    pub value: Option<T>,
    /// The header fields.
    pub meta: EntryMeta,
}

/// Why bytes under a key are not a usable entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Too short, wrong magic, or an inconsistent header.
    #[error("not a redis-cached entry (corrupt or truncated header)")]
    Corrupt,
    /// Written by another envelope format version.
    #[error("entry has envelope format version {0}, expected {FORMAT_VERSION}")]
    Format(u8),
    /// Written for another return type or `version`.
    #[error("entry was written for another return type or version")]
    Fingerprint,
    /// The payload does not deserialize into the return type.
    #[error("payload does not decode: {0}")]
    Payload(String),
    /// Larger than the configured maximum value size.
    #[error("entry is larger than the maximum value size")]
    TooLarge,
}

/// Serializes a value (or a negative result) into an envelope.
pub fn encode<T: Serialize + ?Sized>(
    fingerprint: u64,
    value: Option<&T>,
    meta: &EntryMeta,
) -> Result<Vec<u8>, serde_json::Error> {
    let tags = meta.tag_versions.len().min(u16::MAX as usize);
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * tags + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.push(if value.is_none() { FLAG_NEGATIVE } else { 0 });
    out.extend_from_slice(&millis(meta.ttl).to_le_bytes());
    out.extend_from_slice(&millis(meta.stale).to_le_bytes());
    let load_us = u32::try_from(meta.load_time.as_micros()).unwrap_or(u32::MAX);
    out.extend_from_slice(&load_us.to_le_bytes());
    out.extend_from_slice(&(tags as u16).to_le_bytes());
    for version in &meta.tag_versions[..tags] {
        out.extend_from_slice(&version.to_le_bytes());
    }
    if let Some(value) = value {
        serde_json::to_writer(&mut out, value)?;
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Decodes an envelope written for `fingerprint`.
pub fn decode<T: DeserializeOwned>(
    fingerprint: u64,
    bytes: &[u8],
    max_size: usize,
) -> Result<Decoded<T>, DecodeError> {
    if bytes.len() > max_size {
        return Err(DecodeError::TooLarge);
    }
    let body_len = bytes
        .len()
        .checked_sub(CHECKSUM_LEN)
        .ok_or(DecodeError::Corrupt)?;
    let (body, checksum) = bytes.split_at(body_len);
    if body
        .get(..3)
        .is_some_and(|h| h[..2] == MAGIC && h[2] != FORMAT_VERSION)
    {
        return Err(DecodeError::Format(body[2]));
    }
    if xxhash_rust::xxh3::xxh3_64(body) != u64_at(checksum, 0) {
        return Err(DecodeError::Corrupt);
    }
    let bytes = body;
    let header = bytes.get(..HEADER_LEN).ok_or(DecodeError::Corrupt)?;
    if header[..2] != MAGIC {
        return Err(DecodeError::Corrupt);
    }
    if header[2] != FORMAT_VERSION {
        return Err(DecodeError::Format(header[2]));
    }
    if u64_at(header, 3) != fingerprint {
        return Err(DecodeError::Fingerprint);
    }
    let flags = header[11];
    if flags & !FLAG_NEGATIVE != 0 {
        return Err(DecodeError::Corrupt);
    }
    let tags = u16::from_le_bytes([header[32], header[33]]) as usize;
    let payload_at = HEADER_LEN + 8 * tags;
    let tag_bytes = bytes
        .get(HEADER_LEN..payload_at)
        .ok_or(DecodeError::Corrupt)?;
    let meta = EntryMeta {
        ttl: Duration::from_millis(u64_at(header, 12)),
        stale: Duration::from_millis(u64_at(header, 20)),
        load_time: Duration::from_micros(u64::from(u32::from_le_bytes([
            header[28], header[29], header[30], header[31],
        ]))),
        tag_versions: tag_bytes.chunks_exact(8).map(|c| u64_at(c, 0)).collect(),
    };
    let payload = &bytes[payload_at..];
    let value = if flags & FLAG_NEGATIVE != 0 {
        if !payload.is_empty() {
            return Err(DecodeError::Corrupt);
        }
        None
    } else {
        Some(serde_json::from_slice(payload).map_err(|e| DecodeError::Payload(e.to_string()))?)
    };
    Ok(Decoded { value, meta })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> EntryMeta {
        EntryMeta {
            ttl: Duration::from_secs(60),
            stale: Duration::from_secs(5),
            load_time: Duration::from_micros(1234),
            tag_versions: vec![7, 9],
        }
    }

    #[test]
    fn round_trips_values_and_negatives() {
        let bytes = encode(42, Some(&vec![1u8, 2, 3]), &meta()).expect("encode");
        let d: Decoded<Vec<u8>> = decode(42, &bytes, usize::MAX).expect("decode");
        assert_eq!(d.value, Some(vec![1, 2, 3]));
        assert_eq!(d.meta, meta());
        let bytes = encode::<u8>(42, None, &meta()).expect("encode");
        let d: Decoded<u8> = decode(42, &bytes, usize::MAX).expect("decode");
        assert_eq!(d.value, None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(42, Some(&"hello".to_string()), &meta()).expect("encode");
        for len in 0..bytes.len() {
            assert!(
                decode::<String>(42, &bytes[..len], usize::MAX).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn foreign_fingerprint_format_and_size_are_rejected() {
        let mut bytes = encode(42, Some(&1u32), &meta()).expect("encode");
        assert_eq!(
            decode::<u32>(43, &bytes, usize::MAX),
            Err(DecodeError::Fingerprint)
        );
        assert_eq!(decode::<u32>(42, &bytes, 10), Err(DecodeError::TooLarge));
        bytes[2] = 9;
        assert_eq!(
            decode::<u32>(42, &bytes, usize::MAX),
            Err(DecodeError::Format(9))
        );
        let mut altered = encode(42, Some(&12345u64), &meta()).expect("encode");
        let digit = altered.len() - CHECKSUM_LEN - 1;
        altered[digit] = b'6';
        assert_eq!(
            decode::<u64>(42, &altered, usize::MAX),
            Err(DecodeError::Corrupt),
            "a changed digit is caught"
        );
        assert_eq!(
            decode::<u32>(42, b"garbage", usize::MAX),
            Err(DecodeError::Corrupt)
        );
    }
}
