//! The argument encoding: a serde serializer that writes every value in a self-delimiting,
//! readable form, so distinct argument tuples give distinct keys (see the parent module).

use std::fmt::Write as _;

use serde::ser::{self, Serialize};

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

/// Writes an enum variant's name: marked, so that a unit variant `A` and the string `"A"` (one
/// argument of an untagged enum or a `serde_json::Value` can be either) never share a key.
fn write_variant(out: &mut String, variant: &str) {
    out.push('%');
    write_str(out, variant);
}

pub(super) fn write_quoted(out: &mut String, s: &str) {
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
pub struct KeyError(pub(super) String);

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
pub(super) struct KeyEncoder<'a> {
    pub(super) out: &'a mut String,
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
        // Marked: the bare string `true` is the string's own encoding.
        self.out.push_str(if v { "!true" } else { "!false" });
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), KeyError> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), KeyError> {
        // -0.0 == 0.0: equal arguments key equally (found by the JSON-value property test).
        let v = if v == 0.0 { 0.0 } else { v };
        if v.is_finite() {
            // `{:?}` keeps a fractional part and round-trips, so 1.0 and 1 stay apart, and
            // starts with a digit or `-`, which no bare string does.
            let _ = write!(self.out, "{v:?}");
        } else {
            // `NaN` and `inf` would read as bare strings.
            let _ = write!(self.out, "!{v:?}");
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), KeyError> {
        // Single-quoted, so that the char 'a' and the string "a" differ.
        self.out.push('\'');
        match v {
            '\\' => self.out.push_str("\\\\"),
            '\'' => self.out.push_str("\\'"),
            '{' => self.out.push_str("\\("),
            '}' => self.out.push_str("\\)"),
            c => self.out.push(c),
        }
        self.out.push('\'');
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
        write_variant(self.out, variant);
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
        write_variant(self.out, variant);
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
        write_variant(self.out, variant);
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
        write_variant(self.out, variant);
        Ok(Compound::open(self.out, '<', '>'))
    }
}

/// Sequences, tuples and structs: `open item,item close`.
pub(super) struct Compound<'a> {
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
pub(super) struct SortedMap<'a> {
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
