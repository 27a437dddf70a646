//! The built `libcloudsync.so`, loaded into rusqlite (with its bundled, current SQLite)
//! through `load_extension`, as a Rust application would load it.
//!
//! It needs the library built by `cargo xtask build-extension`, so it is ignored in a
//! plain `cargo test`; `cargo xtask test` runs it with `--ignored` and the library's
//! path in `CLOUDSYNC_EXTENSION`.
//!
//! Loading native code is `unsafe` in rusqlite; this file plays the host application,
//! which is where that `unsafe` belongs.
#![allow(unsafe_code)]

use rusqlite::{Connection, LoadExtensionGuard};

fn load(path: &str) -> Connection {
    let c = Connection::open_in_memory().unwrap();
    {
        // SAFETY: the library is cloudsync's own extension, built by this workspace;
        // its entry point follows SQLite's loadable-extension protocol. The guard turns
        // extension loading off again when it goes out of scope.
        let _guard = unsafe { LoadExtensionGuard::new(&c) }.unwrap();
        unsafe { c.load_extension(path, None::<&str>) }.unwrap();
    }
    c
}

#[test]
#[ignore = "needs the built extension; cargo xtask test runs it with CLOUDSYNC_EXTENSION set"]
fn loads_into_rusqlite_and_syncs() {
    let path = std::env::var("CLOUDSYNC_EXTENSION").expect("CLOUDSYNC_EXTENSION must point at libcloudsync.so");
    let (a, b) = (load(&path), load(&path));
    for c in [&a, &b] {
        c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT)").unwrap();
        c.query_row("SELECT cloudsync_init('t')", [], |_| Ok(())).unwrap();
    }
    a.execute_batch("INSERT INTO t VALUES ('x', 'from the loaded library')").unwrap();
    let p: Vec<u8> = a
        .query_row(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
             FROM cloudsync_changes",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let n: i64 = b.query_row("SELECT cloudsync_payload_apply(?1)", [&p], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
    let v: String = b.query_row("SELECT v FROM t WHERE id = 'x'", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "from the loaded library");
    let e = b.query_row("SELECT cloudsync_payload_apply(x'00')", [], |r| r.get::<_, i64>(0)).unwrap_err();
    assert!(e.to_string().contains("not a cloudsync payload"), "{e}");
}
