//! The envelope decoder on arbitrary bytes: an error or a value, never a panic or an
//! allocation past the limit. The first byte picks whether the input gets a valid magic,
//! format and fingerprint and a fixed-up checksum, so the flags, tag versions and payload
//! decoders (JSON, postcard, LZ4, zstd) are reached, not only the header checks.
#![no_main]

use cache_runtime::envelope::decode;
use libfuzzer_sys::fuzz_target;

const FINGERPRINT: u64 = 42;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 2 == 2 && bytes.len() >= 11 {
        bytes[..2].copy_from_slice(b"RC");
        bytes[2] = 2;
        bytes[3..11].copy_from_slice(&FINGERPRINT.to_le_bytes());
    }
    if mode & 1 == 1 && bytes.len() >= 8 {
        let body = bytes.len() - 8;
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
    }
    let _ = decode::<serde_json::Value>(FINGERPRINT, &bytes, 1 << 20);
    let _ = decode::<Vec<(u64, String)>>(FINGERPRINT, &bytes, 1 << 20);
});
