//! The key encoder: two JSON values key equally exactly when they are equal (no collision, no
//! split of equal arguments). The input is two JSON documents separated by a NUL byte.
#![no_main]

use cache_runtime::key::KeyBuilder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<serde_json::Value>(&data[..split]),
        serde_json::from_slice::<serde_json::Value>(&data[split + 1..]),
    ) else {
        return;
    };
    let key = |v: &serde_json::Value| {
        let mut builder = KeyBuilder::new();
        builder.arg(v);
        builder.finish().map(|k| k.as_str().to_owned())
    };
    if let (Ok(ka), Ok(kb)) = (key(&a), key(&b)) {
        assert_eq!(ka == kb, a == b, "{a} and {b} key as {ka} and {kb}");
    }
});
