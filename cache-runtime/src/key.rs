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

use std::fmt::Write as _;

use serde::ser::{self, Serialize};

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
        } else if self.buf.len() > MAX_READABLE_ARGS {
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
    key.push_str(namespace);
    key.push(':');
    key.push_str(name);
    key.push_str(":v");
    key.push_str(itoa::Buffer::new().format(version));
    key.push_str(":{");
    key.push_str(&args.0);
    key.push('}');
    key
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

/// Characters a string may consist of to be written without quotes.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@')
}

/// Writes a string so that it is self-delimiting and brace-free.
fn write_str(out: &mut String, s: &str) {
    // A leading '-' or digit would read like a number; keep those quoted so a reader can tell.
    let plain = !s.is_empty()
        && s.chars().all(is_safe)
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if plain {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '{' => out.push_str("\\("),
            '}' => out.push_str("\\)"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Error of the key encoder (a user `Serialize` impl failed).
#[derive(Debug)]
pub struct KeyError(String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        KeyError(msg.to_string())
    }
}

/// A serde serializer writing the key encoding into a string.
struct KeyEncoder<'a> {
    out: &'a mut String,
}

/// Encodes a value on its own, for sorting map entries and set elements.
fn encode_alone<T: Serialize + ?Sized>(value: &T) -> Result<String, KeyError> {
    let mut out = String::new();
    value.serialize(KeyEncoder { out: &mut out })?;
    Ok(out)
}

/// Whether `I` (the iterator type a `Serialize` impl hands to `collect_seq`) is a hash set,
/// whose iteration order is arbitrary and must not reach the key.
fn is_unordered_set<I>() -> bool {
    let name = std::any::type_name::<I>().trim_start_matches('&');
    let outer = name.split('<').next().unwrap_or(name);
    outer.ends_with("HashSet")
}

macro_rules! integer_impl {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<(), KeyError> {
            // The same digits as `Display`, without the formatting machinery (hot path).
            self.out.push_str(itoa::Buffer::new().format(v));
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for KeyEncoder<'a> {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = SortedMap<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    integer_impl!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128,
    );

    fn serialize_bool(self, v: bool) -> Result<(), KeyError> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), KeyError> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), KeyError> {
        // `{:?}` keeps a fractional part and round-trips, so 1.0 and 1 stay apart.
        let _ = write!(self.out, "{v:?}");
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), KeyError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), KeyError> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), KeyError> {
        self.out.push_str("x'");
        for b in v {
            let _ = write!(self.out, "{b:02x}");
        }
        self.out.push('\'');
        Ok(())
    }

    fn serialize_none(self) -> Result<(), KeyError> {
        self.out.push('~');
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), KeyError> {
        // Marked, so that `Some(None)` and `None` differ.
        self.out.push('+');
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), KeyError> {
        self.out.push_str("()");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), KeyError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), KeyError> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        write_str(self.out, variant);
        self.out.push('(');
        value.serialize(KeyEncoder { out: self.out })?;
        self.out.push(')');
        Ok(())
    }

    fn collect_seq<I>(self, iter: I) -> Result<(), KeyError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let unordered = is_unordered_set::<I>();
        let iter = iter.into_iter();
        if !unordered {
            let mut seq = Compound::open(self.out, '[', ']');
            for item in iter {
                ser::SerializeSeq::serialize_element(&mut seq, &item)?;
            }
            return ser::SerializeSeq::end(seq);
        }
        let mut items = iter
            .map(|item| encode_alone(&item))
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_unstable();
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(item);
        }
        self.out.push(']');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::open(self.out, '[', ']'))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::open(self.out, '(', ')'))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::open(self.out, '(', ')'))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        write_str(self.out, variant);
        Ok(Compound::open(self.out, '(', ')'))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<SortedMap<'a>, KeyError> {
        Ok(SortedMap {
            out: self.out,
            entries: Vec::new(),
            pending_key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::open(self.out, '<', '>'))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        write_str(self.out, variant);
        Ok(Compound::open(self.out, '<', '>'))
    }
}

/// Sequences, tuples and structs: `open item,item close`.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    close: char,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut String, open: char, close: char) -> Self {
        out.push(open);
        Compound {
            out,
            first: true,
            close,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(KeyEncoder { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), KeyError> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push('=');
        value.serialize(KeyEncoder { out: self.out })
    }

    fn close(self) -> Result<(), KeyError> {
        self.out.push(self.close);
        Ok(())
    }
}

macro_rules! compound_impl {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = KeyError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
                self.element(value)
            }
            fn end(self) -> Result<(), KeyError> {
                self.close()
            }
        })*
    };
}

compound_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! named_fields_impl {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = KeyError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), KeyError> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), KeyError> {
                self.close()
            }
        })*
    };
}

named_fields_impl!(SerializeStruct, SerializeStructVariant);

/// Maps: entries are encoded alone, sorted, then written as `<k=v,...>`.
struct SortedMap<'a> {
    out: &'a mut String,
    entries: Vec<(String, String)>,
    pending_key: Option<String>,
}

impl ser::SerializeMap for SortedMap<'_> {
    type Ok = ();
    type Error = KeyError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.pending_key = Some(encode_alone(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| KeyError("map value serialized before its key".into()))?;
        self.entries.push((key, encode_alone(value)?));
        Ok(())
    }

    fn end(mut self) -> Result<(), KeyError> {
        self.entries.sort_unstable();
        self.out.push('<');
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push('=');
            self.out.push_str(v);
        }
        self.out.push('>');
        Ok(())
    }
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
