//! The envelope: how an entry is laid out in the store.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "RC"
//! 2       1     format version (1)
//! 3       8     fingerprint of the return type's tokens and `version` (u64 LE)
//! 11      1     flags (bit 0: negative result, no payload; bits 1-2: payload compression,
//!               0 none, 1 LZ4 block, 2 zstd frame; bits 3-4: payload codec, 0 JSON,
//!               1 postcard)
//! 12      8     ttl in milliseconds (u64 LE)
//! 20      8     stale window in milliseconds (u64 LE)
//! 28      4     load duration in microseconds (u32 LE, saturating)
//! 32      2     number of tag versions n (u16 LE)
//! 34      8n    tag versions (u64 LE each)
//! 34+8n   ..    payload: the value in its codec, or when compressed its length (u32 LE) and
//!               then the compressed bytes
//! end-8   8     checksum: XXH3-64 of every byte before it (u64 LE)
//! ```
//!
//! Readers decode every compression setting, whatever their own, so a fleet can change it
//! without a miss storm. A compressed payload declares its length before anything is
//! allocated for it: over the reader's size limit, it is [`DecodeError::TooLarge`] (a
//! decompression bomb is a miss, never gigabytes of memory).
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
const COMPRESSION_SHIFT: u8 = 1;
const COMPRESSION_MASK: u8 = 0b110;
const CODEC_SHIFT: u8 = 3;
const CODEC_MASK: u8 = 0b1_1000;

/// How values are serialized in entries.
///
/// JSON (the default) is self-describing: a struct whose fields were reordered, renamed with
/// `#[serde(alias)]` or given defaults still decodes, and `#[serde(untagged)]`,
/// `#[serde(flatten)]` and `serde_json::Value` work. [`Codec::Postcard`] is about half the size
/// and decodes up to 2x faster, but is not self-describing: every change to the value's fields
/// (order, type, added or removed) needs a `version` bump, or old entries may decode into wrong
/// values without an error; and `untagged`, `flatten`, `skip_serializing_if`, internally
/// tagged enums and `serde_json::Value` cannot be carried (the cache decodes every postcard
/// entry back when writing it and does not store a value that comes back different).
///
/// ```
/// use cache_runtime::envelope::{Codec, Compression, Encoding, decode, encode_with, EntryMeta};
///
/// let encoding = Encoding { codec: Codec::Postcard, compression: Compression::Off };
/// let bytes = encode_with(7, Some(&(1u64, "one".to_owned())), &EntryMeta::default(), encoding)
///     .unwrap();
/// let back = decode::<(u64, String)>(7, &bytes, 1024).unwrap();
/// assert_eq!(back.value, Some((1, "one".to_owned())));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// `serde_json`.
    #[default]
    Json,
    /// `postcard`: compact and fast, not self-describing (see above).
    Postcard,
}

/// How an entry's value is written: its codec and its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The serialization.
    pub codec: Codec,
    /// The compression of the serialized value.
    pub compression: Compression,
}

impl Codec {
    fn code(self) -> u8 {
        match self {
            Codec::Json => 0,
            Codec::Postcard => 1,
        }
    }

    fn write<T: Serialize + ?Sized>(self, out: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
        match self {
            Codec::Json => serde_json::to_writer(out, value).map_err(EncodeError::Json),
            Codec::Postcard => postcard::to_io(value, out)
                .map(drop)
                .map_err(|e| EncodeError::Other(e.to_string())),
        }
    }
}

/// Why a value could not be serialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// JSON refused it (a map with non-string keys, a failing `Serialize`).
    #[error(transparent)]
    Json(serde_json::Error),
    /// Another codec refused it (postcard: an `untagged` or `flatten` type, a sequence of
    /// unknown length).
    #[error("{0}")]
    Other(String),
}

fn read<T: DeserializeOwned>(code: u8, payload: &[u8]) -> Result<T, DecodeError> {
    let payload_error = |e: &dyn std::fmt::Display| DecodeError::Payload(e.to_string());
    match code {
        0 => serde_json::from_slice(payload).map_err(|e| payload_error(&e)),
        1 => match postcard::take_from_bytes::<T>(payload) {
            // Every byte must be the value's: trailing bytes mean it was another value.
            Ok((value, [])) => Ok(value),
            Ok(_) => Err(DecodeError::Payload(
                "trailing bytes after the value".into(),
            )),
            Err(e) => Err(payload_error(&e)),
        },
        _ => Err(DecodeError::Corrupt),
    }
}

/// How payloads at or above a size threshold are compressed.
///
/// ```
/// use cache_runtime::envelope::{Codec, Compression, Encoding, decode, encode_with, EntryMeta};
///
/// let document = "a long, repetitive document ".repeat(100);
/// let policy = Compression::Lz4 { over: 1024 };
/// let encoding = Encoding { codec: Codec::Json, compression: policy };
/// let bytes = encode_with(7, Some(&document), &EntryMeta::default(), encoding).unwrap();
/// assert!(bytes.len() < document.len() / 2);
/// let back = decode::<String>(7, &bytes, 1 << 20).unwrap();
/// assert_eq!(back.value.as_deref(), Some(document.as_str()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Payloads are stored as JSON.
    Off,
    /// LZ4 (block format, `lz4_flex`) for payloads of `over` bytes of JSON or more.
    Lz4 {
        /// The smallest payload compressed, in bytes of JSON.
        over: usize,
    },
    /// zstd (level 1) for payloads of `over` bytes of JSON or more.
    Zstd {
        /// The smallest payload compressed, in bytes of JSON.
        over: usize,
    },
}

impl Compression {
    /// The default threshold: payloads of 1 KiB of JSON or more are compressed.
    pub const DEFAULT_OVER: usize = 1024;
    /// The default: LZ4 from 1 KiB of JSON (chosen by measurement, `docs/benchmarks.md`).
    pub const DEFAULT: Compression = Compression::Lz4 {
        over: Self::DEFAULT_OVER,
    };

    fn code(self) -> u8 {
        match self {
            Compression::Off => 0,
            Compression::Lz4 { .. } => 1,
            Compression::Zstd { .. } => 2,
        }
    }

    fn threshold(self) -> usize {
        match self {
            Compression::Off => usize::MAX,
            Compression::Lz4 { over } | Compression::Zstd { over } => over,
        }
    }

    fn compress(self, json: &[u8]) -> Option<Vec<u8>> {
        match self {
            Compression::Off => None,
            Compression::Lz4 { .. } => Some(lz4_flex::block::compress(json)),
            Compression::Zstd { .. } => ZSTD
                .try_with(|zstd| {
                    let mut zstd = zstd.borrow_mut();
                    let compressor = match &mut zstd.0 {
                        Some(compressor) => compressor,
                        slot => slot.insert(zstd::bulk::Compressor::new(1).ok()?),
                    };
                    compressor.compress(json).ok()
                })
                .ok()
                .flatten(),
        }
    }
}

thread_local! {
    /// zstd's contexts, made once per thread: making one per call cost more than the
    /// decompression of a 10 KB payload.
    static ZSTD: std::cell::RefCell<(
        Option<zstd::bulk::Compressor<'static>>,
        Option<zstd::bulk::Decompressor<'static>>,
    )> = const { std::cell::RefCell::new((None, None)) };
}

/// Decompresses a payload of `code` that declares `len` bytes (checked against the limit by
/// the caller); anything else than exactly `len` bytes is corrupt.
fn decompress(code: u8, data: &[u8], len: usize) -> Result<Vec<u8>, DecodeError> {
    let out = match code {
        1 => {
            let mut out = vec![0u8; len];
            let written = lz4_flex::block::decompress_into(data, &mut out)
                .map_err(|_| DecodeError::Corrupt)?;
            out.truncate(written);
            out
        }
        2 => ZSTD
            .try_with(|zstd| {
                let mut zstd = zstd.borrow_mut();
                let decompressor = match &mut zstd.1 {
                    Some(decompressor) => decompressor,
                    slot => slot.insert(zstd::bulk::Decompressor::new().ok()?),
                };
                decompressor.decompress(data, len).ok()
            })
            .ok()
            .flatten()
            .ok_or(DecodeError::Corrupt)?,
        _ => return Err(DecodeError::Corrupt),
    };
    if out.len() != len {
        return Err(DecodeError::Corrupt);
    }
    Ok(out)
}

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

/// Serializes a value (or a negative result) into an envelope, as uncompressed JSON.
pub fn encode<T: Serialize + ?Sized>(
    fingerprint: u64,
    value: Option<&T>,
    meta: &EntryMeta,
) -> Result<Vec<u8>, EncodeError> {
    let encoding = Encoding {
        codec: Codec::Json,
        compression: Compression::Off,
    };
    encode_with(fingerprint, value, meta, encoding)
}

/// Serializes a value (or a negative result) into an envelope in `encoding`'s codec, its
/// payload compressed when that makes it smaller.
pub fn encode_with<T: Serialize + ?Sized>(
    fingerprint: u64,
    value: Option<&T>,
    meta: &EntryMeta,
    encoding: Encoding,
) -> Result<Vec<u8>, EncodeError> {
    let Encoding { codec, compression } = encoding;
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
        out[11] |= codec.code() << CODEC_SHIFT;
        let payload_at = out.len();
        codec.write(&mut out, value)?;
        let json = &out[payload_at..];
        if json.len() >= compression.threshold()
            && let Ok(len) = u32::try_from(json.len())
            && let Some(packed) = compression.compress(json)
            && packed.len() + 4 < json.len()
        {
            out.truncate(payload_at);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&packed);
            out[11] |= compression.code() << COMPRESSION_SHIFT;
        }
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// The size an entry counts for against a size limit: its stored size, or, with a compressed
/// payload, the size of its JSON once decompressed plus the rest of the entry (what a reader
/// holds). Writers check this against the same limit readers decode under, so no entry is
/// stored that every reader would refuse.
pub fn decoded_len(bytes: &[u8]) -> usize {
    let compressed = bytes
        .get(11)
        .is_some_and(|flags| flags & COMPRESSION_MASK != 0);
    let tags = bytes
        .get(32..34)
        .map_or(0, |t| u16::from_le_bytes([t[0], t[1]]) as usize);
    let payload_at = HEADER_LEN + 8 * tags;
    match bytes.get(payload_at..payload_at + 4) {
        Some(len) if compressed => {
            let json = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            (payload_at + CHECKSUM_LEN).saturating_add(json)
        }
        _ => bytes.len(),
    }
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
    if flags & !(FLAG_NEGATIVE | COMPRESSION_MASK | CODEC_MASK) != 0 {
        return Err(DecodeError::Corrupt);
    }
    let compression = (flags & COMPRESSION_MASK) >> COMPRESSION_SHIFT;
    let codec = (flags & CODEC_MASK) >> CODEC_SHIFT;
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
        if !payload.is_empty() || compression != 0 || codec != 0 {
            return Err(DecodeError::Corrupt);
        }
        None
    } else if compression == 0 {
        Some(read(codec, payload)?)
    } else {
        let (len, packed) = payload.split_at_checked(4).ok_or(DecodeError::Corrupt)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > max_size.saturating_sub(payload_at + CHECKSUM_LEN) {
            return Err(DecodeError::TooLarge);
        }
        let unpacked = decompress(compression, packed, len)?;
        Some(read(codec, &unpacked)?)
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

    fn encode_json<T: Serialize + ?Sized>(
        fingerprint: u64,
        value: Option<&T>,
        meta: &EntryMeta,
        compression: Compression,
    ) -> Result<Vec<u8>, EncodeError> {
        let codec = Codec::Json;
        encode_with(fingerprint, value, meta, Encoding { codec, compression })
    }

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
    fn every_compression_round_trips_and_reads_whatever_it_was_written_with() {
        let document: Vec<String> = (0..200).map(|i| format!("record {i} of a list")).collect();
        let plain = encode(42, Some(&document), &meta()).expect("encode");
        for policy in [
            Compression::Off,
            Compression::Lz4 { over: 1024 },
            Compression::Zstd { over: 1024 },
            Compression::Lz4 { over: 1 << 30 },
        ] {
            let bytes = encode_json(42, Some(&document), &meta(), policy).expect("encode");
            let compressed = matches!(
                policy,
                Compression::Lz4 { over: 1024 } | Compression::Zstd { .. }
            );
            assert_eq!(bytes.len() * 2 < plain.len(), compressed, "{policy:?}");
            let d: Decoded<Vec<String>> = decode(42, &bytes, 1 << 20).expect("decode");
            assert_eq!(d.value.as_ref(), Some(&document), "{policy:?}");
            // Counted at its decoded size: the limit that lets a reader decode it.
            assert_eq!(decoded_len(&bytes), plain.len(), "{policy:?}");
            assert!(decode::<Vec<String>>(42, &bytes, plain.len()).is_ok());
            assert_eq!(
                decode::<Vec<String>>(42, &bytes, plain.len() - 1),
                Err(DecodeError::TooLarge)
            );
            assert_eq!(d.meta, meta());
        }
        // Small payloads stay JSON: nothing to gain.
        let small =
            encode_json(42, Some(&1u8), &meta(), Compression::Lz4 { over: 0 }).expect("encode");
        assert_eq!(small, encode(42, Some(&1u8), &meta()).expect("encode"));
    }

    #[test]
    fn a_decompression_bomb_is_too_large_before_anything_is_allocated() {
        let zeros = vec![0u8; 4 << 20];
        let bytes =
            encode_json(42, Some(&zeros), &meta(), Compression::Zstd { over: 1 }).expect("encode");
        assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
        // Stored small, declared 4 MiB of JSON and more: over a 1 MiB limit.
        assert_eq!(
            decode::<Vec<u8>>(42, &bytes, 1 << 20),
            Err(DecodeError::TooLarge)
        );
        // A declared length that lies (forged, checksum recomputed) is corrupt, not a panic.
        let mut forged = encode_json(
            42,
            Some(&"x".repeat(5000)),
            &meta(),
            Compression::Lz4 { over: 1 },
        )
        .expect("encode");
        let at = HEADER_LEN + 8 * 2;
        forged[at..at + 4].copy_from_slice(&9_000u32.to_le_bytes());
        let body = forged.len() - CHECKSUM_LEN;
        let checksum = xxhash_rust::xxh3::xxh3_64(&forged[..body]);
        forged[body..].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(
            decode::<String>(42, &forged, 1 << 20),
            Err(DecodeError::Corrupt)
        );
    }

    #[test]
    fn every_codec_round_trips_compressed_or_not_and_names_itself() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Row {
            id: u64,
            name: String,
            tags: Vec<String>,
        }
        let rows: Vec<Row> = (0..100)
            .map(|id| Row {
                id,
                name: format!("row {id}"),
                tags: vec!["a".into(), "b".into()],
            })
            .collect();
        for codec in [Codec::Json, Codec::Postcard] {
            for compression in [Compression::Off, Compression::Lz4 { over: 64 }] {
                let encoding = Encoding { codec, compression };
                let bytes = encode_with(42, Some(&rows), &meta(), encoding).expect("encode");
                let d: Decoded<Vec<Row>> = decode(42, &bytes, 1 << 20).expect("decode");
                assert_eq!(d.value.as_ref(), Some(&rows), "{encoding:?}");
            }
        }
        let json = encode(42, Some(&rows), &meta()).expect("json");
        let encoding = Encoding {
            codec: Codec::Postcard,
            compression: Compression::Off,
        };
        let postcard = encode_with(42, Some(&rows), &meta(), encoding).expect("postcard");
        assert!(
            postcard.len() * 2 < json.len(),
            "{} vs {}",
            postcard.len(),
            json.len()
        );
        // A postcard payload read as another type of the same fingerprint is an error, not a
        // value: trailing bytes are refused.
        assert!(decode::<u8>(42, &postcard, 1 << 20).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2_000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// The decoder on arbitrary bytes, and on valid entries of every encoding with bytes
        /// changed (the checksum recomputed, so the payload decoders are reached): an error or
        /// a value, never a panic, and never past the size limit. `fuzz/` runs the same for
        /// as long as you let it.
        #[test]
        fn the_decoder_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..4),
            setting in 0usize..6,
        ) {
            let _ = decode::<serde_json::Value>(42, &bytes, 1 << 16);
            let codec = if setting < 3 { Codec::Json } else { Codec::Postcard };
            let compression = match setting % 3 {
                0 => Compression::Off,
                1 => Compression::Lz4 { over: 16 },
                _ => Compression::Zstd { over: 16 },
            };
            let value: Vec<(u64, String)> = (0..40).map(|i| (i, format!("v{i}"))).collect();
            let mut entry = encode_with(42, Some(&value), &meta(), Encoding { codec, compression })
                .expect("encode");
            for (at, byte) in flips {
                let len = entry.len() - CHECKSUM_LEN;
                entry[at % len] ^= byte | 1;
            }
            let body = entry.len() - CHECKSUM_LEN;
            let checksum = xxhash_rust::xxh3::xxh3_64(&entry[..body]);
            entry[body..].copy_from_slice(&checksum.to_le_bytes());
            let _ = decode::<Vec<(u64, String)>>(42, &entry, 1 << 16);
            let _ = decode::<serde_json::Value>(42, &entry, 1 << 16);
        }
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
