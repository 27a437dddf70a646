//! LEB128 variable-length integers, used by every binary format in the core.
//!
//! Unsigned values are written seven bits at a time, least significant group first,
//! with the high bit of each byte set when more bytes follow. Signed values are
//! zigzag-mapped first so that small negative numbers stay short.

use crate::error::DecodeError;

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(low_byte(v) | 0x80);
        v >>= 7;
    }
    out.push(low_byte(v));
}

/// The low seven bits of `v`.
fn low_byte(v: u64) -> u8 {
    // The mask makes the conversion lossless.
    u8::try_from(v & 0x7f).unwrap_or_default()
}

/// Appends `v` zigzag-encoded as an unsigned varint.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, zigzag(v));
}

/// Maps signed to unsigned so that values of small magnitude get small codes.
pub fn zigzag(v: i64) -> u64 {
    // `v >> 63` is all ones for negative numbers.
    ((v << 1) ^ (v >> 63)).cast_unsigned()
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    (v >> 1).cast_signed() ^ -(v & 1).cast_signed()
}

/// Reads an unsigned varint from the front of `input`, advancing it.
///
/// Rejects encodings longer than ten bytes and ones whose tenth byte overflows 64 bits,
/// so every accepted byte string has exactly one meaning.
pub fn get_u64(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut result: u64 = 0;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(DecodeError::Truncated("varint"));
        };
        *input = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(DecodeError::VarintOverflow);
        }
        result |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::NonCanonicalVarint);
            }
            return Ok(result);
        }
    }
    Err(DecodeError::VarintOverflow)
}

/// Reads a zigzag varint.
pub fn get_i64(input: &mut &[u8]) -> Result<i64, DecodeError> {
    get_u64(input).map(unzigzag)
}

/// Reads a varint that must fit in `u32` (counts, indexes, lengths).
pub fn get_u32(input: &mut &[u8], what: &'static str) -> Result<u32, DecodeError> {
    let v = get_u64(input)?;
    u32::try_from(v).map_err(|_| DecodeError::OutOfRange { what, value: v })
}

/// Reads a varint used as a length or count, bounded by `max`.
pub fn get_len(input: &mut &[u8], what: &'static str, max: usize) -> Result<usize, DecodeError> {
    let v = get_u64(input)?;
    match usize::try_from(v) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(DecodeError::OutOfRange { what, value: v }),
    }
}

/// Reads a count or length that cannot exceed the bytes left in `input` (every
/// counted item takes at least one byte), so a forged count never causes a large
/// allocation.
pub fn get_count(input: &mut &[u8], what: &'static str) -> Result<usize, DecodeError> {
    let max = input.len();
    get_len(input, what, max)
}

/// Splits `n` bytes off the front of `input`.
pub fn take<'a>(input: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
    if input.len() < n {
        return Err(DecodeError::Truncated(what));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn u64_roundtrip(v: u64) {
            let mut buf = Vec::new();
            put_u64(&mut buf, v);
            let mut input = buf.as_slice();
            prop_assert_eq!(get_u64(&mut input).unwrap(), v);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn i64_roundtrip(v: i64) {
            let mut buf = Vec::new();
            put_i64(&mut buf, v);
            let mut input = buf.as_slice();
            prop_assert_eq!(get_i64(&mut input).unwrap(), v);
        }
    }

    #[test]
    fn small_values_are_one_byte() {
        let mut buf = Vec::new();
        put_i64(&mut buf, -1);
        put_u64(&mut buf, 127);
        assert_eq!(buf, [1, 127]);
    }

    #[test]
    fn rejects_overlong_and_non_canonical() {
        assert!(matches!(get_u64(&mut &[0x80u8; 11][..]), Err(DecodeError::VarintOverflow)));
        assert!(matches!(get_u64(&mut &[0x80u8, 0x00][..]), Err(DecodeError::NonCanonicalVarint)));
        let mut max = vec![0xffu8; 9];
        max.push(0x02);
        assert!(matches!(get_u64(&mut max.as_slice()), Err(DecodeError::VarintOverflow)));
        assert!(matches!(get_u64(&mut &[0x80u8][..]), Err(DecodeError::Truncated(_))));
    }
}
