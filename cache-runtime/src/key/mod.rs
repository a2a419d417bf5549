//! Key derivation: turns argument values into the `{args}` part of an entry key.
//!
//! Keys are `{namespace}:{name}:v{version}:{{args}}`. The `{args}` part is a Redis Cluster
//! hash tag, so an entry and the lock and metadata keys derived from it share a slot.
//!
//! The argument encoding is injective for a fixed function signature: every value is written
//! in a self-delimiting form (strings are quoted unless they consist only of "safe" characters,
//! sequences, tuples and maps are bracketed), map entries are sorted by their encoding and hash
//! sets by their elements' encodings, so iteration order never changes a key. Braces never
//! appear inside the tag. An encoding longer than [`MAX_READABLE_ARGS`] is replaced by `#` and
//! a 128-bit XXH3 digest of it, which is the same on every machine and build.

use serde::Serialize;

mod encoder;
mod hasher;
pub(crate) use hasher::KeyHasher;

use self::encoder::{KeyEncoder, write_quoted};

use crate::Error;

/// Longest argument encoding kept readable in the key; longer ones are digested.
pub const MAX_READABLE_ARGS: usize = 128;

/// Builds the argument part of a key, one argument or template piece at a time.
///
/// Generated code calls this; it is public only through the facade's hidden module.
#[derive(Debug)]
pub struct KeyBuilder {
    buf: String,
    args: usize,
    error: Option<String>,
}

impl Default for KeyBuilder {
    fn default() -> Self {
        KeyBuilder {
            // Room for typical arguments without regrowing.
            buf: String::with_capacity(32),
            args: 0,
            error: None,
        }
    }
}

impl KeyBuilder {
    /// Starts an empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one argument of a derived key (arguments are separated by `,`).
    pub fn arg<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        if self.args > 0 {
            self.buf.push(',');
        }
        self.args += 1;
        self.value(value)
    }

    /// Appends the literal text of a key template.
    pub fn literal(&mut self, text: &str) -> &mut Self {
        self.args += 1;
        self.buf.push_str(text);
        self
    }

    /// Appends an interpolated value without a separator (key templates).
    pub fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.args += 1;
        if self.error.is_none()
            && let Err(err) = value.serialize(KeyEncoder { out: &mut self.buf })
        {
            self.error = Some(err.0);
        }
        self
    }

    /// Distinguishes instantiations of a generic function by the name of a type parameter.
    pub fn type_param<T: ?Sized>(&mut self) -> &mut Self {
        self.buf.push(';');
        write_quoted(&mut self.buf, std::any::type_name::<T>());
        self
    }

    /// Distinguishes calls of a function taking `impl Trait` by the argument's concrete type.
    pub fn type_of_val<T: ?Sized>(&mut self, _value: &T) -> &mut Self {
        self.type_param::<T>()
    }

    /// Finishes the argument part: readable when short, digested when long.
    pub fn finish(self) -> Result<ArgsKey, Error> {
        if let Some(err) = self.error {
            return Err(Error::Encode(err));
        }
        let encoded = if self.buf.is_empty() {
            // A hash tag must not be empty, or Redis hashes the whole key.
            "()".to_owned()
        } else if self.buf.len() > MAX_READABLE_ARGS || self.buf.starts_with('#') {
            // A template's text may start with `#`: digesting it too keeps a readable key from
            // ever equalling another call's digest (`#` + 32 hex digits).
            digest(&self.buf)
        } else {
            self.buf
        };
        Ok(ArgsKey(encoded))
    }
}

/// The encoded argument part of a key (without namespace, name and version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArgsKey(String);

impl ArgsKey {
    /// The encoded arguments.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `#` followed by the 128-bit XXH3 digest of `encoded` in hex.
fn digest(encoded: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(encoded.as_bytes());
    format!("#{hash:032x}")
}

/// Builds the full entry key `{namespace}:{name}:v{version}:{{args}}`.
pub(crate) fn entry_key(namespace: &str, name: &str, version: u32, args: &ArgsKey) -> String {
    let mut key = String::with_capacity(
        namespace.len() + name.len() + args.0.len() + 8 + ((version > 9) as usize) * 8,
    );
    write_entry_key(&mut key, namespace, name, version, args);
    key
}

fn write_entry_key(key: &mut String, namespace: &str, name: &str, version: u32, args: &ArgsKey) {
    key.push_str(namespace);
    key.push(':');
    key.push_str(name);
    key.push_str(":v");
    key.push_str(itoa::Buffer::new().format(version));
    key.push_str(":{");
    key.push_str(&args.0);
    key.push('}');
}

/// Calls `f` with the full entry key, built in a buffer this thread reuses (the first level's
/// hit path looks it up without a heap allocation). `f` must not call this again.
pub(crate) fn with_entry_key<R>(
    namespace: &str,
    name: &str,
    version: u32,
    args: &ArgsKey,
    f: impl FnOnce(&str) -> R,
) -> R {
    thread_local! {
        static BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut key) => {
            key.clear();
            write_entry_key(&mut key, namespace, name, version, args);
            f(&key)
        }
        Err(_) => f(&entry_key(namespace, name, version, args)),
    })
}

/// The key of a tag's version: `{namespace}:tag:{{tag}}`. The tag is its own hash tag (braces
/// and backslashes escaped), so distinct tags get distinct keys.
pub(crate) fn tag_key(namespace: &str, tag: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + tag.len() + 8);
    key.push_str(namespace);
    key.push_str(":tag:{");
    if !tag.contains(['\\', '{', '}']) {
        key.push_str(tag);
        key.push('}');
        return key;
    }
    for c in tag.chars() {
        match c {
            '\\' => key.push_str("\\\\"),
            '{' => key.push_str("\\("),
            '}' => key.push_str("\\)"),
            c => key.push(c),
        }
    }
    key.push('}');
    key
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;

    fn args<T: Serialize>(v: &T) -> String {
        let mut b = KeyBuilder::new();
        b.arg(v);
        b.finish().map(|k| k.0).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tag_keys_are_their_own_hash_tag_with_braces_escaped() {
        assert_eq!(tag_key("ns", "user:1"), "ns:tag:{user:1}");
        assert_eq!(tag_key("ns", r"a{b}\c"), r"ns:tag:{a\(b\)\\c}");
        assert_ne!(tag_key("ns", "a{"), tag_key("ns", r"a\("));
    }

    #[test]
    fn readable_for_simple_values() {
        assert_eq!(args(&42u64), "42");
        assert_eq!(args(&"bob"), "bob");
        assert_eq!(args(&"a b"), "\"a b\"");
        assert_eq!(args(&""), "\"\"");
        assert_eq!(args(&Some(1)), "+1");
        assert_eq!(args(&None::<u8>), "~");
        assert_eq!(args(&Some(None::<u8>)), "+~");
    }

    #[test]
    fn strings_never_share_an_encoding_with_other_tokens() {
        #[derive(serde::Serialize)]
        #[allow(dead_code)]
        enum E {
            A,
            B(u8),
        }
        assert_eq!(args(&true), "!true");
        assert_ne!(args(&true), args(&"true"));
        assert_ne!(args(&false), args(&"false"));
        assert_eq!(args(&f64::NAN), "!NaN");
        assert_ne!(args(&f64::NAN), args(&"NaN"));
        assert_ne!(args(&f64::INFINITY), args(&"inf"));
        assert_ne!(args(&f64::NEG_INFINITY), args(&"-inf"));
        assert_eq!(args(&E::A), "%A");
        assert_ne!(args(&E::A), args(&"A"));
        assert_eq!(args(&E::B(1)), "%B(1)");
        assert_eq!(args(&'a'), "'a'");
        assert_ne!(args(&'a'), args(&"a"));
        assert_eq!(args(&'{'), "'\\('");
        assert_eq!(args(&1.0f64), "1.0");
        assert_ne!(args(&1.0f64), args(&1u8));
    }

    #[test]
    fn a_readable_key_never_looks_like_a_digest() {
        let mut b = KeyBuilder::new();
        b.literal("#").value(&"0123456789abcdef0123456789abcdef");
        let key = b.finish().map(|k| k.0).unwrap_or_default();
        assert!(key.starts_with('#') && key.len() == 33, "{key}");
        assert_ne!(
            key, "#0123456789abcdef0123456789abcdef",
            "digested, not kept"
        );
    }

    #[test]
    fn the_key_built_in_a_reused_buffer_is_the_entry_key() {
        for args in [ArgsKey("1".into()), ArgsKey("x".repeat(300))] {
            let built = with_entry_key("ns", "f::g", 12, &args, str::to_owned);
            assert_eq!(built, entry_key("ns", "f::g", 12, &args));
        }
    }

    #[test]
    fn braces_never_appear() {
        let k = args(&"{}{x}");
        assert!(!k.contains('{') && !k.contains('}'), "{k}");
    }

    #[test]
    fn maps_and_sets_ignore_iteration_order() {
        let a: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let b: BTreeMap<String, u32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(args(&a), args(&b));
        let s1: HashSet<u32> = (0..100).collect();
        let s2: HashSet<u32> = (0..100).rev().collect();
        assert_eq!(args(&s1), args(&s2));
        assert_ne!(args(&vec![1, 2]), args(&vec![2, 1]));
    }

    #[test]
    fn zero_and_negative_zero_key_equally() {
        assert_eq!(args(&0.0f64), args(&-0.0f64));
        assert_eq!(args(&0.0f32), args(&-0.0f32));
        assert_ne!(args(&0.0f64), args(&0u64));
    }

    #[test]
    fn long_keys_are_digested_stably() {
        let long = "x".repeat(500);
        let k = args(&long);
        assert_eq!(k.len(), 33);
        assert!(k.starts_with('#'));
        // The digest is part of the on-Redis format: it must never change.
        assert_eq!(k, "#36213f2b040b9afb89a8ac9fa1e5c540");
    }

    #[test]
    fn empty_argument_list_is_a_non_empty_tag() {
        assert_eq!(
            KeyBuilder::new().finish().map(|k| k.0).ok().as_deref(),
            Some("()")
        );
    }
}
