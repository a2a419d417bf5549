//! Keys are a function of the values: distinct argument tuples give distinct keys and equal
//! ones equal keys, for adversarial strings, nested options, maps and sets in any order.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use redis_cached::redis_cached;

#[redis_cached(name = "keys::two")]
async fn two(a: String, b: String) -> u8 {
    let _ = (a, b);
    0
}

#[redis_cached(name = "keys::nested")]
async fn nested(a: Option<Option<String>>, b: Vec<String>, c: (String, u8)) -> u8 {
    let _ = (a, b, c);
    0
}

#[redis_cached(key = "t:{a}/{b}", name = "keys::template")]
async fn template(a: String, b: String) -> u8 {
    let _ = (a, b);
    0
}

#[redis_cached(name = "keys::map")]
async fn map(m: HashMap<String, u32>, s: HashSet<String>) -> u8 {
    let _ = (m, s);
    0
}

/// Strings built from the characters that break naive key schemes.
fn adversarial() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(":".to_string()),
            Just(",".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("/".to_string()),
            Just("=".to_string()),
            Just("~".to_string()),
            Just("+".to_string()),
            Just("\\\"".to_string()),
            Just(" ".to_string()),
            Just("é".to_string()),
            Just("日本".to_string()),
            Just("\u{0}".to_string()),
            "[a-c0-2]{0,3}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

/// The part of a key inside the hash tag braces: it must be the whole rest of the key.
fn hash_tag(key: &str) -> &str {
    let open = key.find('{').expect("key has a hash tag");
    let close = key[open..].find('}').expect("hash tag closes") + open;
    assert_eq!(close, key.len() - 1, "no brace inside the tag: {key}");
    &key[open + 1..close]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn derived_keys_are_injective(a1 in adversarial(), b1 in adversarial(), a2 in adversarial(), b2 in adversarial()) {
        let k1 = two_key(a1.clone(), b1.clone());
        let k2 = two_key(a2.clone(), b2.clone());
        prop_assert_eq!((a1, b1) == (a2, b2), k1 == k2, "{} vs {}", k1, k2);
        prop_assert!(!hash_tag(&k1).is_empty());
    }

    #[test]
    fn template_keys_are_injective(a1 in adversarial(), b1 in adversarial(), a2 in adversarial(), b2 in adversarial()) {
        let k1 = template_key(a1.clone(), b1.clone());
        let k2 = template_key(a2.clone(), b2.clone());
        prop_assert_eq!((a1, b1) == (a2, b2), k1 == k2, "{} vs {}", k1, k2);
        hash_tag(&k1);
    }

    #[test]
    fn nested_values_are_injective(
        a1 in prop::option::of(prop::option::of(adversarial())),
        a2 in prop::option::of(prop::option::of(adversarial())),
        b1 in prop::collection::vec(adversarial(), 0..3),
        b2 in prop::collection::vec(adversarial(), 0..3),
        c1 in (adversarial(), 0u8..3),
        c2 in (adversarial(), 0u8..3),
    ) {
        let k1 = nested_key(a1.clone(), b1.clone(), c1.clone());
        let k2 = nested_key(a2.clone(), b2.clone(), c2.clone());
        prop_assert_eq!((a1, b1, c1) == (a2, b2, c2), k1 == k2, "{} vs {}", k1, k2);
    }

    #[test]
    fn maps_and_sets_key_the_same_in_any_order(entries in prop::collection::btree_map(adversarial(), 0u32..5, 0..12)) {
        let forward: HashMap<String, u32> = entries.clone().into_iter().collect();
        let mut backward = HashMap::with_capacity(64);
        for (k, v) in entries.iter().rev() {
            backward.insert(k.clone(), *v);
        }
        let set1: HashSet<String> = entries.keys().cloned().collect();
        let set2: HashSet<String> = entries.keys().rev().cloned().collect();
        prop_assert_eq!(map_key(forward, set1), map_key(backward, set2));
    }
}

#[redis_cached(name = "keys::json")]
async fn json(value: serde_json::Value) -> u8 {
    let _ = value;
    0
}

/// An argument that is one of several types at run time.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Flag(bool),
    Float(f64),
    Int(i64),
    Nothing,
}

#[redis_cached(name = "keys::loose")]
async fn loose(value: Loose) -> u8 {
    let _ = value;
    0
}

/// Strings that look like other tokens, and other tokens.
fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become Null
        prop_oneof![
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("NaN".to_owned()),
            Just("inf".to_owned()),
            Just("1".to_owned()),
            Just("1.0".to_owned()),
            Just("()".to_owned()),
            Just("~".to_owned()),
            adversarial(),
        ]
        .prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(adversarial(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn loose_value() -> impl Strategy<Value = Loose> {
    prop_oneof![
        prop_oneof![
            Just("true".to_owned()),
            Just("NaN".to_owned()),
            Just("inf".to_owned()),
            Just("Nothing".to_owned()),
            adversarial(),
        ]
        .prop_map(Loose::Text),
        any::<bool>().prop_map(Loose::Flag),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>()
        ]
        .prop_map(Loose::Float),
        any::<i64>().prop_map(Loose::Int),
        Just(Loose::Nothing),
    ]
}

/// Equal as keys must be: NaN equals NaN here (every NaN is the same argument to a cache).
fn same_loose(a: &Loose, b: &Loose) -> bool {
    match (a, b) {
        (Loose::Float(x), Loose::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn json_values_key_apart_whatever_their_types(a in json_value(), b in json_value()) {
        let (ka, kb) = (json_key(a.clone()), json_key(b.clone()));
        prop_assert_eq!(a == b, ka == kb, "{} vs {}", ka, kb);
    }

    #[test]
    fn untagged_enums_key_apart_whatever_their_variants(a in loose_value(), b in loose_value()) {
        let (ka, kb) = (loose_key(a.clone()), loose_key(b.clone()));
        prop_assert_eq!(same_loose(&a, &b), ka == kb, "{:?} {} vs {:?} {}", a, ka, b, kb);
    }
}

#[test]
fn long_keys_are_digested_to_a_fixed_stable_form() {
    let long = "é".repeat(400);
    let key = two_key(long.clone(), String::new());
    let tag = hash_tag(&key);
    assert!(tag.starts_with('#') && tag.len() == 33, "{key}");
    assert_eq!(key, two_key(long.clone(), String::new()));
    assert_ne!(key, two_key(long, "x".into()));
    // Ordered maps and hash maps of the same entries agree.
    let ordered: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
    let hashed: HashMap<String, u32> = [("a".to_string(), 1)].into();
    assert_eq!(
        map_key(hashed.clone(), HashSet::new()),
        map_key(ordered.into_iter().collect(), HashSet::new())
    );
}

#[test]
fn namespaces_that_would_make_keys_ambiguous_are_rejected_at_build() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let build = |ns: &str| {
        rt.block_on(
            redis_cached::Cache::builder()
                .url("mem://")
                .namespace(ns)
                .build(),
        )
    };
    // `a:b` + function `c` and `a` + function `b:c` would share every key.
    for bad in ["a:b", "", "a b", "{a}", ":"] {
        let err = build(bad).expect_err("rejected");
        assert!(
            matches!(err, redis_cached::Error::Config(_)),
            "{bad:?}: {err}"
        );
    }
    for good in ["a", "myapp-prod", "my_app.v2"] {
        assert!(build(good).is_ok(), "{good:?} accepted");
    }
}
