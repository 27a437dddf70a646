//! The frame-body parser behind the checksums: arbitrary bodies must parse or fail
//! cleanly, never panic or allocate without bound.
#![no_main]

use cloudsync_core::payload::decode_frame_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame_body(data);
});
