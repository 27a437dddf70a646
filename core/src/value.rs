//! Column values, their total order and their binary encoding.
//!
//! A [`Value`] is one of SQLite's five storage classes. Text is kept as raw bytes,
//! because SQLite does not guarantee that stored text is valid UTF-8 and a sync
//! engine must not "repair" data it only relays.
//!
//! **Total order.** Last-writer-wins needs a tie-break that every replica computes
//! identically, so values are totally ordered: `NULL < INTEGER < REAL < TEXT < BLOB`;
//! integers numerically, reals by IEEE-754 `totalOrder` (so `-0.0 < +0.0` and NaNs
//! have a fixed place), text and blobs bytewise. Two values are *equal* only when
//! they have the same storage class and the same bits; `1` and `1.0` differ.
//!
//! **Encoding.** One tag byte, then the data:
//!
//! | tag | class | data |
//! |---|---|---|
//! | `0x00` | NULL | none |
//! | `0x01` | INTEGER | zigzag LEB128 varint |
//! | `0x02` | REAL | 8 bytes, IEEE-754 binary64, little-endian |
//! | `0x03` | TEXT | varint byte length, then the bytes |
//! | `0x04` | BLOB | varint byte length, then the bytes |

use std::cmp::Ordering;

use crate::error::DecodeError;
use crate::varint;

/// Largest TEXT or BLOB the codec accepts (SQLite's own default limit is 1e9 bytes).
pub const MAX_VALUE_LEN: usize = 1_000_000_000;

/// A column value.
#[derive(Clone, Debug)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// 64-bit signed integer.
    Integer(i64),
    /// IEEE-754 binary64.
    Real(f64),
    /// Text, as stored (normally UTF-8).
    Text(Vec<u8>),
    /// Binary data.
    Blob(Vec<u8>),
}

const TAG_NULL: u8 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

impl Value {
    /// A short description for error messages: the value (at most 32 characters of
    /// text, 16 bytes of a blob) and its type.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Integer(i) => format!("{i} (integer)"),
            Value::Real(r) => format!("{r:?} (real)"),
            Value::Text(t) => {
                let text = String::from_utf8_lossy(t);
                format!("'{}' (text)", shown(&text, 32).replace('\'', "''"))
            }
            Value::Blob(b) => {
                let hex: String = b.iter().take(16).map(|x| format!("{x:02x}")).collect();
                format!("x'{hex}{}' (blob)", if b.len() > 16 { "…" } else { "" })
            }
        }
    }

    /// Convenience constructor for UTF-8 text.
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into().into_bytes())
    }

    fn class_rank(&self) -> u8 {
        match self {
            Value::Null => TAG_NULL,
            Value::Integer(_) => TAG_INTEGER,
            Value::Real(_) => TAG_REAL,
            Value::Text(_) => TAG_TEXT,
            Value::Blob(_) => TAG_BLOB,
        }
    }

    /// The total order used to break last-writer-wins ties (see the module docs).
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
            (Value::Real(a), Value::Real(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) | (Value::Blob(a), Value::Blob(b)) => a.cmp(b),
            _ => self.class_rank().cmp(&other.class_rank()),
        }
    }

    /// Appends the encoding of this value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(TAG_NULL),
            Value::Integer(i) => {
                out.push(TAG_INTEGER);
                varint::put_i64(out, *i);
            }
            Value::Real(f) => {
                out.push(TAG_REAL);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Text(b) | Value::Blob(b) => {
                out.push(self.class_rank());
                varint::put_u64(out, b.len() as u64);
                out.extend_from_slice(b);
            }
        }
    }

    /// The encoded size in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Integer(i) => 1 + varint_len(varint::zigzag(*i)),
            Value::Real(_) => 9,
            Value::Text(b) | Value::Blob(b) => 1 + varint_len(b.len() as u64) + b.len(),
        }
    }

    /// Reads one value from the front of `input`, advancing it.
    pub fn decode(input: &mut &[u8]) -> Result<Value, DecodeError> {
        let tag = *varint::take(input, 1, "value tag")?.first().unwrap_or(&0xff);
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_INTEGER => Value::Integer(varint::get_i64(input)?),
            TAG_REAL => {
                let bytes = varint::take(input, 8, "real value")?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                Value::Real(f64::from_le_bytes(raw))
            }
            TAG_TEXT | TAG_BLOB => {
                let len = varint::get_len(input, "value length", MAX_VALUE_LEN)?;
                let bytes = varint::take(input, len, "text or blob value")?.to_vec();
                if tag == TAG_TEXT {
                    Value::Text(bytes)
                } else {
                    Value::Blob(bytes)
                }
            }
            other => return Err(DecodeError::BadValueTag(other)),
        })
    }
}

/// Number of bytes of the LEB128 encoding of `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Equality is bit equality within a storage class (consistent with [`Value::total_cmp`]).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}
impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

/// Encodes a primary key: its values, in primary-key column order, concatenated.
///
/// The number of components is not stored: the table's schema fixes it.
pub fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(Value::encoded_len).sum());
    for v in values {
        v.encode(&mut out);
    }
    out
}

/// Decodes a primary key of exactly `columns` components; NULL components are refused.
pub fn decode_key(mut input: &[u8], columns: usize) -> Result<Vec<Value>, DecodeError> {
    let mut out = Vec::with_capacity(columns);
    for _ in 0..columns {
        let v = Value::decode(&mut input)?;
        if matches!(v, Value::Null) {
            return Err(DecodeError::Invalid { what: "primary key", why: "a key column is NULL" });
        }
        out.push(v);
    }
    if !input.is_empty() {
        return Err(DecodeError::TrailingBytes(input.len(), "primary key"));
    }
    Ok(out)
}

/// Text someone else chose (a payload, a request), as an answer or a log shows it: at
/// most `max` characters, control characters dropped, `…` when cut. One rule for every
/// message that repeats what it was given.
pub fn shown(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().filter(|c| !c.is_control()).nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A primary key (the payload's encoding) as people read it: `'a1'`, `42`, `'x', 3`;
/// what does not decode is shown as a blob literal. For messages about a row, never for
/// finding it again.
pub fn show_key(mut pk: &[u8]) -> String {
    let mut parts = Vec::new();
    while !pk.is_empty() {
        let rest = pk;
        match Value::decode(&mut pk) {
            Ok(v) => parts.push(show_value(&v)),
            Err(_) => {
                parts.push(format!("x'{}'", hex_of(rest)));
                break;
            }
        }
    }
    parts.join(", ")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
        Value::Blob(b) => format!("x'{}'", hex_of(b)),
    }
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_shown_readably() {
        let pk = encode_key(&[Value::text("a'1"), Value::Integer(7), Value::Blob(vec![0, 255])]);
        assert_eq!(show_key(&pk), "'a''1', 7, x'00ff'");
        assert_eq!(show_key(&[0xff, 0x01]), "x'ff01'", "what does not decode is shown as bytes");
    }

    pub fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            prop_oneof![any::<f64>(), Just(-0.0), Just(0.0), Just(f64::NAN), Just(f64::INFINITY)].prop_map(Value::Real),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #[test]
        fn codec_roundtrip(v in any_value()) {
            let mut buf = Vec::new();
            v.encode(&mut buf);
            prop_assert_eq!(buf.len(), v.encoded_len());
            let mut input = buf.as_slice();
            let back = Value::decode(&mut input).unwrap();
            prop_assert!(input.is_empty());
            // Bit-exact, including NaN payloads and the sign of zero.
            prop_assert_eq!(back.total_cmp(&v), Ordering::Equal);
        }

        #[test]
        fn order_is_total_and_antisymmetric(a in any_value(), b in any_value(), c in any_value()) {
            prop_assert_eq!(a.total_cmp(&b), b.total_cmp(&a).reverse());
            if a <= b && b <= c { prop_assert!(a <= c); }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Value::decode(&mut bytes.as_slice());
            let _ = decode_key(&bytes, 2);
        }
    }

    #[test]
    fn class_order_and_special_floats() {
        let ordered = [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(f64::NEG_INFINITY),
            Value::Real(-0.0),
            Value::Real(0.0),
            Value::Real(f64::NAN),
            Value::text(""),
            Value::text("a"),
            Value::Blob(vec![]),
        ];
        for w in ordered.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
        }
        assert_ne!(Value::Integer(1), Value::Real(1.0));
    }

    #[test]
    fn key_roundtrip_and_null_refused() {
        let key = vec![Value::text("id-1"), Value::Integer(-7)];
        let enc = encode_key(&key);
        assert_eq!(decode_key(&enc, 2).unwrap(), key);
        assert!(decode_key(&enc, 1).is_err());
        assert!(decode_key(&encode_key(&[Value::Null]), 1).is_err());
    }
}
