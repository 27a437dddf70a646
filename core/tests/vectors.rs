//! Committed test vectors for payload format v1, clock blobs and key encoding.
//!
//! Each vector in `tests/vectors/*.json` lists changes and the exact bytes they encode
//! to. The test re-encodes and decodes every vector, so any change to the format is a
//! visible diff in git. Regenerate (only for a deliberate, versioned format change)
//! with `CLOUDSYNC_WRITE_VECTORS=1 cargo test -p cloudsync-core --test vectors`.

use std::path::PathBuf;

use cloudsync_core::clock::{CellClock, RowClock};
use cloudsync_core::payload::{decode, EncodeOptions, PayloadEncoder};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Algo, Change, Changeset, Cursor, SiteId, Stamp, Value};
use serde_json::{json, Value as Json};

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => json!({"null": null}),
        Value::Integer(i) => json!({"integer": i.to_string()}),
        Value::Real(f) => json!({"real_bits": format!("{:016x}", f.to_bits())}),
        Value::Text(t) => json!({"text_hex": hex::encode(t)}),
        Value::Blob(b) => json!({"blob_hex": hex::encode(b)}),
    }
}

fn change_json(c: &Change) -> Json {
    json!({
        "tbl": c.table,
        "pk_hex": hex::encode(&c.pk),
        "col_name": c.column,
        "col_value": value_json(&c.value),
        "col_version": c.col_version,
        "db_version": c.at.db_version,
        "seq": c.at.seq,
        "site_id": c.site.to_string(),
        "cl": c.cl,
    })
}

fn site(b: u8) -> SiteId {
    SiteId([b; 16])
}

fn vectors() -> Vec<(&'static str, &'static str, Algo, Vec<Change>)> {
    let cell = |table: &str, key: Value, col: &str, v: Value, ver: u64, dbv: u64, seq: u64, s: u8, cl: u64| Change {
        table: table.into(),
        pk: encode_key(&[key]),
        column: Some(col.into()),
        value: v,
        col_version: ver,
        at: Cursor::new(dbv, seq),
        site: site(s),
        cl,
    };
    let event = |table: &str, key: Value, dbv: u64, seq: u64, s: u8, cl: u64| Change {
        table: table.into(),
        pk: encode_key(&[key]),
        column: None,
        value: Value::Null,
        col_version: 0,
        at: Cursor::new(dbv, seq),
        site: site(s),
        cl,
    };
    vec![
        ("empty", "A payload with no frames.", Algo::Cls, vec![]),
        (
            "insert_one_row",
            "One row inserted with two columns: two cells, no row event (life 1 is implied).",
            Algo::Cls,
            vec![
                cell("notes", Value::text("n1"), "title", Value::text("hello"), 1, 5, 0, 0xaa, 1),
                cell("notes", Value::text("n1"), "stars", Value::Integer(3), 1, 5, 0, 0xaa, 1),
            ],
        ),
        (
            "delete_and_resurrect",
            "A deleted row (row event, even causal length) and a re-inserted row (life 3).",
            Algo::Cls,
            vec![
                event("notes", Value::text("gone"), 7, 0, 0xbb, 2),
                cell("notes", Value::text("back"), "title", Value::text("again"), 1, 7, 1, 0xaa, 3),
            ],
        ),
        (
            "every_value_type",
            "NULL, integers at the extremes, reals incl. -0.0, text and blob, in one row.",
            Algo::Aws,
            vec![
                cell("t", Value::Integer(-1), "n", Value::Null, 2, 1, 0, 1, 1),
                cell("t", Value::Integer(-1), "i", Value::Integer(i64::MIN), 1, 1, 0, 1, 1),
                cell("t", Value::Integer(-1), "j", Value::Integer(i64::MAX), 1, 1, 0, 1, 1),
                cell("t", Value::Integer(-1), "r", Value::Real(-0.0), 1, 1, 0, 1, 1),
                cell("t", Value::Integer(-1), "x", Value::text("é"), 1, 1, 0, 2, 1),
                cell("t", Value::Integer(-1), "b", Value::Blob(vec![0, 1, 255]), 1, 1, 0, 2, 1),
            ],
        ),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn changeset(algo: Algo, changes: &[Change]) -> Changeset {
    let mut cs = Changeset::default();
    for c in changes {
        cs.push(c.clone(), |_| (algo, 0x0123_4567_89ab_cdef)).unwrap();
    }
    cs
}

#[test]
fn payload_vectors() {
    let write = std::env::var("CLOUDSYNC_WRITE_VECTORS").is_ok();
    for (name, about, algo, changes) in vectors() {
        let cs = changeset(algo, &changes);
        let raw = PayloadEncoder::encode(&cs, EncodeOptions { compression: None, ..EncodeOptions::default() });
        let zstd = PayloadEncoder::encode(&cs, EncodeOptions::default());
        let path = dir().join(format!("payload_{name}.json"));
        let doc = json!({
            "about": about,
            "format_version": 1,
            "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
            "payload_hex": hex::encode(&raw),
            "payload_zstd_hex": hex::encode(&zstd),
        });
        if write {
            std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
            continue;
        }
        let stored: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Byte-exact for the uncompressed encoding: the format is pinned.
        assert_eq!(stored["payload_hex"], doc["payload_hex"], "{name}: encoding changed");
        assert_eq!(stored["changes"], doc["changes"], "{name}: vector changes differ");
        // Both stored encodings decode to the listed changes (the compressed bytes may
        // legitimately differ between zstd versions, so they are only decoded).
        for key in ["payload_hex", "payload_zstd_hex"] {
            let bytes = hex::decode(stored[key].as_str().unwrap()).unwrap();
            let back: Vec<Json> = decode(&bytes).unwrap().changes().map(|c| change_json(&c)).collect();
            assert_eq!(Json::Array(back), stored["changes"], "{name}/{key}: decoded changes differ");
        }
    }
}

#[test]
fn clock_and_key_vectors() {
    let stamp = Stamp::local(70_000, 12);
    let clock = RowClock {
        cl: 3,
        row_stamp: Stamp { at: Cursor::new(69_000, 4), site: 2 },
        cells: vec![CellClock { col: 0, version: 1, stamp }, CellClock { col: 5, version: 7, stamp }],
    };
    let doc = json!({
        "about": "A row clock as stored in <table>_cloudsync.clock, and encoded keys.",
        "clock": { "cl": 3, "max_db_version": 70_000, "max_seq": 12, "blob_hex": hex::encode(clock.encode()) },
        "keys": [
            { "values": "['n1']", "hex": hex::encode(encode_key(&[Value::text("n1")])) },
            { "values": "[-1, 'x']", "hex": hex::encode(encode_key(&[Value::Integer(-1), Value::text("x")])) },
            { "values": "[x'00ff', 1.5]", "hex": hex::encode(encode_key(&[Value::Blob(vec![0, 255]), Value::Real(1.5)])) },
        ],
    });
    let path = dir().join("clock_and_keys.json");
    if std::env::var("CLOUDSYNC_WRITE_VECTORS").is_ok() {
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        return;
    }
    let stored: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, doc);
    let blob = hex::decode(stored["clock"]["blob_hex"].as_str().unwrap()).unwrap();
    assert_eq!(RowClock::decode(3, Cursor::new(70_000, 12), &blob).unwrap(), clock);
}
