//! Any byte string given to the payload decoder must decode or fail cleanly — and a
//! successful decode must re-encode to a payload that decodes to the same changes.
#![no_main]

use cloudsync_core::payload::{decode, EncodeOptions, PayloadEncoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cs) = decode(data) {
        let again = PayloadEncoder::encode(&cs, EncodeOptions { compression: None, ..EncodeOptions::default() });
        let back = decode(&again).expect("re-encoded payload decodes");
        assert_eq!(back.changes().collect::<Vec<_>>(), cs.changes().collect::<Vec<_>>());
    }
});
