//! Payload format v1: how changesets travel between replicas.
//!
//! The byte-level layout is specified in `docs/payload-format.md`; this module is its
//! reference implementation. In short: a 14-byte header (magic `CSYN`, format version,
//! flags, frame count, header CRC-32) followed by self-contained **frames**, each with
//! its own CRC-32 and optional zstd compression, each carrying at most a bounded number
//! of bytes and only whole rows. A frame starts with dictionaries (sites, tables,
//! columns) so names and ids cost one varint per use, then stores rows column-wise in
//! separate streams (row headers, keys, cell clocks, and values grouped per column),
//! which is what lets a general-purpose compressor find the redundancy.
//!
//! Decoding validates everything (checksums, sizes, indexes, value encodings, trailing
//! bytes) before returning, so a caller can refuse a bad payload before touching data.

mod decode;
mod encode;

pub use decode::{decode, decode_count, decode_frame_body, decode_header, decode_limited, Header};
pub use encode::{EncodeOptions, PayloadEncoder};

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"CSYN";
/// The format version this library writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the payload header.
pub const HEADER_LEN: usize = 14;
/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 13;
/// Frame codec: stored as is.
pub const CODEC_RAW: u8 = 0;
/// Frame codec: zstd.
pub const CODEC_ZSTD: u8 = 1;
/// Upper bound of a frame's uncompressed size, whatever the header says.
pub const MAX_FRAME_RAW: u32 = 1 << 30;
/// Default target size of a frame before compression: frames are cut at the first row
/// boundary after this many bytes.
pub const DEFAULT_FRAME_TARGET: usize = 1 << 20;

#[cfg(test)]
mod tests;
