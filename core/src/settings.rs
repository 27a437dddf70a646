//! The settings both engines understand, with their ranges and what they mean: one
//! definition, each engine storing them its own way (`cloudsync_set`).

use std::ops::RangeInclusive;

use crate::payload::{EncodeOptions, DEFAULT_FRAME_TARGET};

/// Database-wide: target size of a payload frame, in uncompressed bytes.
pub const FRAME_SIZE: &str = "payload_frame_size";
/// Database-wide: zstd level of payloads (0 stores frames uncompressed).
pub const COMPRESSION: &str = "payload_compression";

/// zstd level used when none is set.
const DEFAULT_COMPRESSION: i32 = 3;

/// The values a known integer setting accepts; `None` for keys the engine does not
/// read (kept as the application's own metadata).
pub fn int_range(key: &str) -> Option<RangeInclusive<i64>> {
    match key {
        FRAME_SIZE => Some(4096..=64 << 20),
        COMPRESSION => Some(0..=19),
        _ => None,
    }
}

/// The payload encoder's options from the stored settings (`None`: not set).
pub fn encode_options(frame_size: Option<i64>, compression: Option<i64>) -> EncodeOptions {
    let frame = frame_size.and_then(|v| usize::try_from(v).ok()).unwrap_or(DEFAULT_FRAME_TARGET);
    let level = compression.map_or(DEFAULT_COMPRESSION, |v| i32::try_from(v).unwrap_or(DEFAULT_COMPRESSION));
    EncodeOptions { frame_target: frame, compression: (level > 0).then_some(level) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let d = encode_options(None, None);
        assert_eq!((d.frame_target, d.compression), (DEFAULT_FRAME_TARGET, Some(3)));
        let o = encode_options(Some(8192), Some(0));
        assert_eq!((o.frame_target, o.compression), (8192, None));
        assert_eq!(int_range(FRAME_SIZE), Some(4096..=64 << 20));
        assert_eq!(int_range(COMPRESSION), Some(0..=19));
        assert_eq!(int_range("my_app_key"), None);
    }
}
