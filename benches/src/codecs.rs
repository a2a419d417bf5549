//! Binary codecs against JSON, in process: bytes and decode time of the bench\'s `User` and of
//! the 100-record list, for each format the library could offer.

use std::time::Instant;

use serde::{Serialize, de::DeserializeOwned};

use crate::payloads::{Payload, payloads};
use redis_cached_benches::{User, user};

pub struct CodecRow {
    pub payload: &'static str,
    pub codec: &'static str,
    pub bytes: usize,
    pub decode_ns: f64,
    pub encode_ns: f64,
}

fn median<F: FnMut()>(mut f: F, rounds: usize) -> f64 {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..100 {
            f();
        }
        times.push(started.elapsed().as_nanos() as f64 / 100.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[rounds / 2]
}

fn measure<T: Serialize + DeserializeOwned>(payload: &'static str, value: &T) -> Vec<CodecRow> {
    let mut rows = Vec::new();
    let mut row = |codec: &'static str,
                   bytes: Vec<u8>,
                   encode: &mut dyn FnMut() -> Vec<u8>,
                   decode: &mut dyn FnMut(&[u8]) -> bool| {
        assert!(decode(&bytes), "{codec} round trip");
        let encode_ns = median(|| drop(std::hint::black_box(encode())), 51);
        let decode_ns = median(|| assert!(std::hint::black_box(decode(&bytes))), 51);
        rows.push(CodecRow {
            payload,
            codec,
            bytes: bytes.len(),
            decode_ns,
            encode_ns,
        });
    };
    row(
        "JSON (serde_json)",
        serde_json::to_vec(value).unwrap(),
        &mut || serde_json::to_vec(value).unwrap(),
        &mut |b| serde_json::from_slice::<T>(b).is_ok(),
    );
    row(
        "MessagePack (rmp-serde, named fields)",
        rmp_serde::to_vec_named(value).unwrap(),
        &mut || rmp_serde::to_vec_named(value).unwrap(),
        &mut |b| rmp_serde::from_slice::<T>(b).is_ok(),
    );
    row(
        "MessagePack (rmp-serde, arrays)",
        rmp_serde::to_vec(value).unwrap(),
        &mut || rmp_serde::to_vec(value).unwrap(),
        &mut |b| rmp_serde::from_slice::<T>(b).is_ok(),
    );
    row(
        "postcard",
        postcard::to_stdvec(value).unwrap(),
        &mut || postcard::to_stdvec(value).unwrap(),
        &mut |b| postcard::from_bytes::<T>(b).is_ok(),
    );
    row(
        "bitcode (serde)",
        bitcode::serialize(value).unwrap(),
        &mut || bitcode::serialize(value).unwrap(),
        &mut |b| bitcode::deserialize::<T>(b).is_ok(),
    );
    rows
}

pub fn table() -> Vec<CodecRow> {
    let one: User = user(1);
    let mut rows = measure("User (bench value)", &one);
    let list = payloads()
        .into_iter()
        .find_map(|(_, p)| match p {
            Payload::Records(records) => Some(records),
            _ => None,
        })
        .expect("records");
    rows.extend(measure("100-record list", &list));
    rows
}
