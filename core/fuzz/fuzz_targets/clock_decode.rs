//! Clock blobs read from a (possibly corrupted) database never panic the decoder.
#![no_main]

use cloudsync_core::clock::RowClock;
use cloudsync_core::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let dbv = u64::from_le_bytes(data[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(data[8..16].try_into().unwrap());
    if let Ok(clock) = RowClock::decode(1, Cursor::new(dbv, seq), &data[16..]) {
        let blob = clock.encode();
        assert_eq!(RowClock::decode(1, clock.max_stamp(), &blob).unwrap(), clock);
    }
});
