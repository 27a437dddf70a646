//! Errors of the core, one enum per concern.

use thiserror::Error;

/// A byte string that is not a valid encoding (payload, value, key or clock).
///
/// Every variant names what was being read so that an operator looking at a refused
/// payload knows where it broke.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside the named item.
    #[error("truncated input while reading {0}")]
    Truncated(&'static str),
    /// A varint longer than ten bytes or larger than 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A varint with redundant trailing zero groups.
    #[error("non-canonical varint")]
    NonCanonicalVarint,
    /// A number outside the range allowed for the named item.
    #[error("{what} out of range: {value}")]
    OutOfRange {
        /// What was being read.
        what: &'static str,
        /// The offending number.
        value: u64,
    },
    /// An unknown value type tag.
    #[error("unknown value tag 0x{0:02x}")]
    BadValueTag(u8),
    /// Text that the format requires to be UTF-8 is not.
    #[error("{0} is not valid UTF-8")]
    BadUtf8(&'static str),
    /// Bytes left over after a complete item.
    #[error("{0} trailing bytes after {1}")]
    TrailingBytes(usize, &'static str),
    /// The payload does not start with the cloudsync magic.
    #[error("not a cloudsync payload (bad magic)")]
    BadMagic,
    /// A payload format version this library does not read.
    #[error("unsupported payload format version {found} (this library reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the header.
        found: u8,
        /// Version this library reads.
        supported: u8,
    },
    /// Header or frame checksum mismatch: the payload was corrupted.
    #[error("checksum mismatch in {0}: payload is corrupted")]
    Checksum(&'static str),
    /// A frame declares a size above the format's bounds.
    #[error("frame {frame}: {what} of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Frame index.
        frame: usize,
        /// Which size.
        what: &'static str,
        /// Declared size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// An unknown frame codec.
    #[error("unknown frame codec {0}")]
    BadCodec(u8),
    /// The compressed body did not decompress to the declared size.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// A reference into a payload dictionary that does not exist.
    #[error("{what} index {index} out of range (dictionary has {len})")]
    BadIndex {
        /// Which dictionary.
        what: &'static str,
        /// The index found.
        index: u64,
        /// Dictionary size.
        len: usize,
    },
    /// A structurally valid item whose content breaks a rule of the format.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// Which rule it breaks.
        why: &'static str,
    },
}
