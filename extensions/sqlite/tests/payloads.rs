//! SQL-level behaviour of the extension, through rusqlite with a bundled SQLite.
//!
//! Payloads and the changes view: what is refused whole (corrupt, foreign, values a
//! column would convert) and writes nothing, reading and inserting through
//! `cloudsync_changes`, payload files.

mod common;
use common::*;
use rusqlite::types::Value;

#[test]
fn bad_payloads_are_refused_and_write_nothing() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'), ('y', 2, 'two')").unwrap();
    let good = payload(&a, 0).unwrap();
    let before: i64 = one(&b, "SELECT cloudsync_db_version()");
    for (i, bad) in [
        b"garbage".to_vec(),
        good[..good.len() - 1].to_vec(),
        {
            let mut g = good.clone();
            let n = g.len();
            g[n - 3] ^= 0x40;
            g
        },
        {
            let mut g = good.clone();
            g[4] = 2;
            g
        },
        Vec::new(),
    ]
    .iter()
    .enumerate()
    {
        let e = apply(&b, bad).unwrap_err().to_string();
        assert!(e.contains("cloudsync:"), "case {i}: {e}");
    }
    assert!(rows(&b, "t").is_empty());
    assert_eq!(one::<i64>(&b, "SELECT cloudsync_db_version()"), before);
    // A payload for a table the receiver does not sync.
    let c = db();
    c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER, b TEXT)").unwrap();
    assert!(apply(&c, &good).unwrap_err().to_string().contains("not synced"));
    assert!(rows(&c, "t").is_empty());
    // A constraint failure in the middle of a payload rolls everything back.
    let d = db();
    d.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER CHECK (a < 2), b TEXT)").unwrap();
    d.query_row("SELECT cloudsync_init('t')", [], |_| Ok(())).unwrap();
    assert!(apply(&d, &good).unwrap_err().to_string().contains("CHECK"));
    assert!(rows(&d, "t").is_empty());
    assert_eq!(one::<i64>(&d, "SELECT count(*) FROM t_cloudsync"), 0);
}

/// A value its column would convert (SQLite's type affinity) is refused before anything
/// is written where the database decides for everyone (the service's central copy,
/// `Values::Exact`): it would hold something else than the clock and every payload
/// carry, and a device applying the same change would end with a different row. A key
/// is refused everywhere (a converted key names another row than its clock); a device
/// stores other values as its columns do (what a PostgreSQL server sends as text).
#[test]
fn values_a_column_would_convert_are_refused_whole() {
    use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
    use cloudsync_core::value::encode_key;
    let a = db_with_t("cls");
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'), ('y', 2, 'two')").unwrap();
    let good = cloudsync_core::payload::decode(&payload(&a, 0).unwrap()).unwrap();
    let mut int_key = good.clone();
    int_key.rows[1].pk = encode_key(&[cloudsync_core::Value::Integer(42)]);
    let mut text_number = good.clone();
    let cell = text_number.rows[0].cells.iter_mut().find(|c| good.tables[0].columns[c.col] == "a").unwrap();
    cell.value = cloudsync_core::Value::Text(b" 7".to_vec());

    // The central copy, as the service opens it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.sqlite");
    let central = rusqlite::Connection::open(&path).unwrap();
    cloudsync_sqlite::register(&central).unwrap();
    central
        .execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER, b TEXT); SELECT cloudsync_init('t');")
        .unwrap();
    let replica = cloudsync_sqlite::Replica::new(rusqlite::Connection::open(&path).unwrap()).unwrap();
    let site = good.sites[0];
    let exact = |cs: &cloudsync_core::Changeset| {
        replica.apply(&PayloadEncoder::encode(cs, EncodeOptions::default()), site, &[]).map(|_| ())
    };
    for (bad, says) in [
        (&int_key, "value 42 (integer) for column 'id' of table 't' would be stored as text"),
        (&text_number, "value ' 7' (text) for column 'a' of table 't' would be stored as a number"),
    ] {
        let e = exact(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
        assert!(rows(&central, "t").is_empty());
        assert_eq!(one::<i64>(&central, "SELECT count(*) FROM t_cloudsync"), 0);
    }
    exact(&good).unwrap();
    assert_eq!(rows(&central, "t"), rows(&a, "t"));

    // A device refuses the key, and stores the text as its INTEGER column does.
    let encode = |cs: &cloudsync_core::Changeset| {
        cloudsync_core::payload::PayloadEncoder::encode(cs, cloudsync_core::payload::EncodeOptions::default())
    };
    let b = db_with_t("cls");
    assert!(apply(&b, &encode(&int_key)).unwrap_err().to_string().contains("would be stored as text"));
    assert!(rows(&b, "t").is_empty());
    apply(&b, &encode(&text_number)).unwrap();
    assert_eq!(one::<i64>(&b, "SELECT a FROM t WHERE id = 'x'"), 7);
    // The same key is fine in a key column without affinity.
    let c = db();
    c.execute_batch("CREATE TABLE t (id PRIMARY KEY NOT NULL, a, b TEXT); SELECT cloudsync_init('t');").unwrap();
    apply(&c, &encode(&int_key)).unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM t WHERE id = 42 AND typeof(id) = 'integer'"), 1);
}

#[test]
fn changes_view_filters_and_inserting_merges() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    b.execute_batch("INSERT INTO t VALUES ('y', 2, 'two')").unwrap();
    sync(&b, &a);
    let site_a: Vec<u8> = one(&a, "SELECT cloudsync_siteid()");
    let mine: i64 =
        a.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id = ?1", [&site_a], |r| r.get(0)).unwrap();
    let theirs: i64 =
        a.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id != ?1", [&site_a], |r| r.get(0)).unwrap();
    assert_eq!((mine, theirs), (2, 2));
    let v: i64 = one(&a, "SELECT cloudsync_db_version()");
    assert_eq!(one::<i64>(&a, &format!("SELECT count(*) FROM cloudsync_changes WHERE db_version > {v}")), 0);
    assert_eq!(one::<i64>(&a, &format!("SELECT count(*) FROM cloudsync_changes WHERE db_version >= {v}")), 2);
    // Copy a's changes into c through the view itself.
    let c = db_with_t("cls");
    let changes: Vec<Vec<Value>> = {
        let mut s = a
            .prepare(
                "SELECT tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq FROM cloudsync_changes",
            )
            .unwrap();
        s.query_map([], |r| (0..9).map(|i| r.get(i)).collect()).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    for ch in &changes {
        c.execute(
            "INSERT INTO cloudsync_changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params_from_iter(ch),
        )
        .unwrap();
    }
    assert_eq!(rows(&c, "t"), rows(&a, "t"));
    assert!(err(&c, "DELETE FROM cloudsync_changes").contains("not supported"));
}

#[test]
fn payload_files_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.bin");
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let n: i64 = a.query_row("SELECT cloudsync_payload_save(?1)", [path.to_str().unwrap()], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
    let m: i64 = b.query_row("SELECT cloudsync_payload_load(?1)", [path.to_str().unwrap()], |r| r.get(0)).unwrap();
    assert_eq!(m, 2);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    let e = b.query_row("SELECT cloudsync_payload_load('/nonexistent/x.bin')", [], |r| r.get::<_, i64>(0)).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.bin"));
}

/// The central copy as the service opens it, foreign keys on: a device's row whose
/// parent another device deleted is refused alone (23503) instead of failing the
/// commit with the whole upload, and a child listed before its parent still applies.
#[test]
fn a_broken_foreign_key_refuses_its_row_not_the_upload() {
    const SCHEMA: &str = "CREATE TABLE lists (id TEXT PRIMARY KEY NOT NULL, name TEXT);
        CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, list TEXT REFERENCES lists (id) ON DELETE CASCADE,
                            title TEXT CHECK (title IS NULL OR title <> 'bad'));
        CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT);
        SELECT cloudsync_init('lists'); SELECT cloudsync_init('items'); SELECT cloudsync_init('notes');";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.sqlite");
    let central = rusqlite::Connection::open(&path).unwrap();
    cloudsync_sqlite::register(&central).unwrap();
    central.execute_batch(SCHEMA).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    let replica = cloudsync_sqlite::Replica::new(conn).unwrap();

    // The device (foreign keys off: its writes may come in any order) starts from the
    // central copy.
    let device = db();
    device.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    // An older app version, without the central CHECK.
    device.execute_batch(&SCHEMA.replace(" CHECK (title IS NULL OR title <> 'bad')", "")).unwrap();
    central
        .execute_batch("PRAGMA foreign_keys = ON; INSERT INTO lists VALUES ('l1', 'groceries'), ('l2', 'chores')")
        .unwrap();
    sync(&central, &device);
    let since: i64 = one(&device, "SELECT cloudsync_db_version()");
    let site: Vec<u8> = one(&device, "SELECT cloudsync_siteid()");
    let site = cloudsync_core::SiteId::from_slice(&site).unwrap();
    device
        .execute_batch(
            "INSERT INTO items VALUES ('orphan', 'l1', 'milk');
             INSERT INTO items VALUES ('early', 'l3', 'before its list');
             INSERT INTO lists VALUES ('l3', 'new list');
             INSERT INTO notes VALUES ('n1', 'unrelated');",
        )
        .unwrap();
    central.execute_batch("DELETE FROM lists WHERE id = 'l1'").unwrap();

    let outcome = replica.apply(&payload(&device, since).unwrap(), site, &[]).unwrap();
    let refused: Vec<(&str, &str)> = outcome.refused.iter().map(|r| (r.table.as_str(), r.sqlstate.as_str())).collect();
    assert_eq!(refused, [("items", "23503")], "{:?}", outcome.refused);
    assert!(outcome.refused[0].message.contains("FOREIGN KEY"), "{}", outcome.refused[0].message);
    assert_eq!(
        one::<String>(&central, "SELECT group_concat(id, ',') FROM (SELECT id FROM items ORDER BY id)"),
        "early"
    );
    assert_eq!(
        one::<String>(&central, "SELECT group_concat(id, ',') FROM (SELECT id FROM lists ORDER BY id)"),
        "l2,l3"
    );
    assert_eq!(one::<String>(&central, "SELECT body FROM notes"), "unrelated");
    assert_eq!(one::<i64>(&central, "SELECT count(*) FROM pragma_foreign_key_check"), 0, "nothing dangling was kept");

    // A CHECK refusing a row sends the payload row by row; a child listed before its
    // parent still applies there.
    let since: i64 = one(&device, "SELECT cloudsync_db_version()");
    device
        .execute_batch(
            "INSERT INTO items VALUES ('late', 'l4', 'x'); INSERT INTO lists VALUES ('l4', 'four');
             INSERT INTO items VALUES ('refused', 'l4', 'bad');",
        )
        .unwrap();
    let outcome = replica.apply(&payload(&device, since).unwrap(), site, &[]).unwrap();
    let refused: Vec<(&str, &str)> = outcome.refused.iter().map(|r| (r.table.as_str(), r.sqlstate.as_str())).collect();
    assert_eq!(refused, [("items", "23514")]);
    assert_eq!(one::<String>(&central, "SELECT list FROM items WHERE id = 'late'"), "l4");
}
