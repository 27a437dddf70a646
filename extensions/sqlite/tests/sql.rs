//! SQL-level behaviour of the extension, through rusqlite with a bundled SQLite.

mod common;
use common::*;
use rusqlite::types::Value;

#[test]
fn identity_functions() {
    let c = db();
    let v: String = one(&c, "SELECT cloudsync_version()");
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let u: String = one(&c, "SELECT cloudsync_uuid()");
    let parsed = uuid::Uuid::parse_str(&u).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    assert_eq!(one::<Option<Vec<u8>>>(&c, "SELECT cloudsync_siteid()"), None);
    c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a)").unwrap();
    let hex: String = one(&c, "SELECT cloudsync_init('t')");
    let site: Vec<u8> = one(&c, "SELECT cloudsync_siteid()");
    assert_eq!(site.len(), 16);
    assert_eq!(hex, site.iter().map(|b| format!("{b:02x}")).collect::<String>());
}

#[test]
fn two_replicas_converge() {
    let a = db_with_t("cls");
    let b = db_with_t("cls");
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'), ('y', 2, 'two')").unwrap();
    assert_eq!(sync(&a, &b), 4);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    b.execute_batch("UPDATE t SET a = 10 WHERE id = 'x'; DELETE FROM t WHERE id = 'y'").unwrap();
    sync(&b, &a);
    assert_eq!(rows(&a, "t"), vec![vec![Value::Text("x".into()), Value::Integer(10), Value::Text("one".into())]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    // Re-applying is harmless.
    assert_eq!(sync(&b, &a), 0);
}

#[test]
fn db_version_moves_with_local_writes() {
    let c = db_with_t("cls");
    let v0: i64 = one(&c, "SELECT cloudsync_db_version()");
    c.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let v1: i64 = one(&c, "SELECT cloudsync_db_version()");
    assert_eq!(v1, v0 + 1);
    let n: i64 = one(&c, "SELECT count(*) FROM cloudsync_changes WHERE db_version > 0");
    assert_eq!(n, 2);
    let v2: i64 = one(&c, "SELECT cloudsync_db_version()");
    assert_eq!(v2, v1, "reading the feed assigns the announced version");
}

/// A fold whose log entries change no clock takes no `db_version` (the same rule as
/// PostgreSQL's, both from the core's `Fold`). The entry is what a trigger logs for an
/// update of a column that is no longer synced.
#[test]
fn a_fold_that_changes_nothing_keeps_the_db_version() {
    let c = db_with_t("cls");
    c.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let v: i64 = one(&c, "SELECT cloudsync_db_version()");
    c.execute_batch("INSERT INTO t_cloudsync_log (op, m0, k0) VALUES (2, 1 << 40, 'x')").unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM cloudsync_changes"), 2);
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_db_version()"), v);
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM t_cloudsync_log"), 0, "the entry is folded all the same");
    // A key-only table's log has one mask word too, and folds like any other.
    c.execute_batch(
        "CREATE TABLE tags (post TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (post, tag));
         SELECT cloudsync_init('tags'); INSERT INTO tags VALUES ('p', 'x');",
    )
    .unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM cloudsync_changes WHERE tbl = 'tags'"), 1);
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_db_version()"), v + 1);
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn concurrent_edits_to_different_columns_both_survive() {
    let (a, b, c) = (db_with_t("cls"), db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b, &c]);
    b.execute_batch("UPDATE t SET a = 1 WHERE id = 'x'").unwrap();
    c.execute_batch("UPDATE t SET b = 'two' WHERE id = 'x'").unwrap();
    settle(&[&a, &b, &c]);
    for db in [&a, &b, &c] {
        assert_eq!(rows(db, "t"), vec![vec![text("x"), Value::Integer(1), text("two")]]);
    }
}

#[test]
fn same_column_conflict_resolves_by_version_then_value_then_site() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b]);
    // Higher version wins: b edits twice.
    a.execute_batch("UPDATE t SET b = 'from a'").unwrap();
    b.execute_batch("UPDATE t SET b = 'from b1'; UPDATE t SET b = 'from b2'").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t")[0][2], text("from b2"));
    // Same version: the larger value wins, on both sides, whatever the order.
    a.execute_batch("UPDATE t SET a = 5").unwrap();
    b.execute_batch("UPDATE t SET a = 7").unwrap();
    settle(&[&b, &a]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    assert_eq!(rows(&a, "t")[0][1], Value::Integer(7));
}

#[test]
fn delete_beats_concurrent_update_and_reinsert_resurrects() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE t SET a = 1").unwrap();
    b.execute_batch("DELETE FROM t").unwrap();
    settle(&[&a, &b]);
    assert!(rows(&a, "t").is_empty() && rows(&b, "t").is_empty());
    // A delayed copy of the update arrives again: still deleted.
    b.execute_batch("INSERT INTO t VALUES ('x', 9, 'again')").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t"), vec![vec![text("x"), Value::Integer(9), text("again")]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    let cl: i64 = one(&a, "SELECT max(cl) FROM cloudsync_changes");
    assert_eq!(cl, 3, "insert, delete, re-insert: causal length 3");
}

#[test]
fn out_of_order_and_duplicate_delivery() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let p1 = payload(&a, 0).unwrap();
    a.execute_batch("UPDATE t SET a = 2").unwrap();
    let v: i64 = one(&a, "SELECT cloudsync_db_version()");
    let p2 = payload(&a, v - 1).unwrap();
    a.execute_batch("DELETE FROM t").unwrap();
    let p3 = payload(&a, v).unwrap();
    // Delete first, then the older changes, twice each.
    for p in [&p3, &p2, &p1, &p1, &p3, &p2] {
        apply(&b, p).unwrap();
    }
    assert!(rows(&b, "t").is_empty());
    a.execute_batch("INSERT INTO t VALUES ('x', 3, 'three')").unwrap();
    apply(&b, &payload(&a, 0).unwrap()).unwrap();
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn composite_keys_and_key_updates() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE m (org TEXT NOT NULL, n INTEGER NOT NULL, v TEXT, PRIMARY KEY (org, n))")
            .unwrap();
        c.query_row("SELECT cloudsync_init('m')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO m VALUES ('o', 1, 'one'), ('o', 2, 'two'), ('p', 1, 'p1')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE m SET n = 3 WHERE org = 'o' AND n = 1").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&b, "m"), rows(&a, "m"));
    assert_eq!(rows(&b, "m").len(), 3);
    let n: i64 = one(&b, "SELECT count(*) FROM m WHERE org = 'o' AND n = 3 AND v = 'one'");
    assert_eq!(n, 1);
}

#[test]
fn values_of_every_kind_roundtrip_exactly() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE v (id TEXT PRIMARY KEY NOT NULL, x ANY, y BLOB)").unwrap();
        c.query_row("SELECT cloudsync_init('v')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    let big = "é".repeat(600_000);
    a.execute("INSERT INTO v VALUES ('null', NULL, NULL)", []).unwrap();
    a.execute("INSERT INTO v VALUES ('min', ?1, ?2)", rusqlite::params![i64::MIN, i64::MAX]).unwrap();
    a.execute("INSERT INTO v VALUES ('neg0', ?1, ?2)", rusqlite::params![-0.0f64, f64::INFINITY]).unwrap();
    a.execute("INSERT INTO v VALUES ('nan', ?1, 1.5)", rusqlite::params![f64::NAN]).unwrap();
    a.execute("INSERT INTO v VALUES ('blob', ?1, x'')", rusqlite::params![vec![0u8, 255, 1, 2]]).unwrap();
    a.execute("INSERT INTO v VALUES ('big', ?1, 'text in a blob column')", [&big]).unwrap();
    a.execute("INSERT INTO v VALUES ('int-vs-real', 1, 1.0)", []).unwrap();
    sync(&a, &b);
    let q = "SELECT id, x, typeof(x), y, typeof(y), quote(x) FROM v ORDER BY id";
    let dump = |c: &rusqlite::Connection| -> Vec<Vec<Value>> {
        let mut s = c.prepare(q).unwrap();
        s.query_map([], |r| (0..6).map(|i| r.get(i)).collect()).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(dump(&a), dump(&b));
    let neg0: f64 = one(&b, "SELECT x FROM v WHERE id = 'neg0'");
    assert!(neg0 == 0.0);
}

#[test]
fn key_only_tables() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE tags (post TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (post, tag))").unwrap();
        c.query_row("SELECT cloudsync_init('tags')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO tags VALUES ('p', 'x'), ('p', 'y')").unwrap();
    settle(&[&a, &b]);
    b.execute_batch("DELETE FROM tags WHERE tag = 'x'").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "tags"), vec![vec![text("p"), text("y")]]);
    assert_eq!(rows(&a, "tags"), rows(&b, "tags"));
}

#[test]
fn init_refuses_what_cannot_sync() {
    let c = db();
    c.execute_batch(
        "CREATE TABLE norowid (a TEXT, b TEXT);
         CREATE TABLE intpk (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE nn (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL);
         CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL DEFAULT '');",
    )
    .unwrap();
    assert!(err(&c, "SELECT cloudsync_init('norowid')").contains("no PRIMARY KEY"));
    assert!(err(&c, "SELECT cloudsync_init('intpk')").contains("single INTEGER"));
    assert!(err(&c, "SELECT cloudsync_init('nn')").contains("NOT NULL without a DEFAULT"));
    assert!(err(&c, "SELECT cloudsync_init('nope')").contains("no such table"));
    assert!(err(&c, "SELECT cloudsync_init('ok', 'xyz')").contains("unknown table algorithm"));
    c.query_row("SELECT cloudsync_init('intpk', 'cls', 1)", [], |_| Ok(())).unwrap();
    c.query_row("SELECT cloudsync_init('nn', 'cls', 2)", [], |_| Ok(())).unwrap();
    c.query_row("SELECT cloudsync_init('ok')", [], |_| Ok(())).unwrap();
    // Idempotent, but the algorithm cannot change without a cleanup.
    c.query_row("SELECT cloudsync_init('ok')", [], |_| Ok(())).unwrap();
    assert!(err(&c, "SELECT cloudsync_init('ok', 'gos')").contains("cloudsync_cleanup"));
    // Nothing was half-created by the refusals.
    let n: i64 = one(&c, "SELECT count(*) FROM cloudsync_tables");
    assert_eq!(n, 3);
}

#[test]
fn existing_rows_are_backfilled() {
    let c = db();
    c.execute_batch(
        "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER); INSERT INTO t VALUES ('x', 1), ('y', 2);",
    )
    .unwrap();
    c.query_row("SELECT cloudsync_init('t')", [], |_| Ok(())).unwrap();
    let n: i64 = one(&c, "SELECT count(*) FROM cloudsync_changes WHERE col_name = 'a'");
    assert_eq!(n, 2);
}

#[test]
fn grow_only_refuses_update_and_delete_but_merges() {
    let (a, b) = (db_with_t("gos"), db_with_t("gos"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    assert!(err(&a, "UPDATE t SET a = 2").contains("grow-only"));
    assert!(err(&a, "DELETE FROM t").contains("grow-only"));
    // Concurrent inserts of the same key still converge.
    b.execute_batch("INSERT INTO t VALUES ('x', 2, 'two')").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn delete_wins_forbids_reinsert() {
    let (a, b) = (db_with_t("dws"), db_with_t("dws"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("DELETE FROM t").unwrap();
    assert!(err(&a, "INSERT INTO t VALUES ('x', 2, 'two')").contains("delete-wins"));
    settle(&[&a, &b]);
    assert!(err(&b, "INSERT INTO t VALUES ('x', 2, 'two')").contains("delete-wins"));
    assert!(rows(&b, "t").is_empty());
}

#[test]
fn add_wins_keeps_a_row_updated_during_a_delete() {
    let (a, b) = (db_with_t("aws"), db_with_t("aws"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE t SET a = 2").unwrap();
    b.execute_batch("DELETE FROM t").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&b, "t"), vec![vec![text("x"), Value::Integer(2), text("one")]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn filters_limit_what_is_tracked() {
    let c = db_with_t("cls");
    c.query_row("SELECT cloudsync_set_filter('t', 'a > 10')", [], |_| Ok(())).unwrap();
    c.execute_batch("INSERT INTO t VALUES ('small', 1, 's'), ('big', 11, 'b')").unwrap();
    let tracked: Vec<String> = {
        let mut s = c.prepare("SELECT DISTINCT cast(pk AS TEXT) FROM cloudsync_changes").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(tracked.len(), 1);
    assert!(tracked[0].ends_with("big"));
    // A row that enters the filter is sent whole.
    c.execute_batch("UPDATE t SET a = 50 WHERE id = 'small'").unwrap();
    let n: i64 = one(&c, "SELECT count(*) FROM cloudsync_changes WHERE cast(pk AS TEXT) LIKE '%small'");
    assert_eq!(n, 2);
    assert!(err(&c, "SELECT cloudsync_set_filter('t', 'a > 1); DROP TABLE t; --')").contains("invalid filter"));
    c.query_row("SELECT cloudsync_clear_filter('t')", [], |_| Ok(())).unwrap();
    c.execute_batch("INSERT INTO t VALUES ('tiny', 0, 't')").unwrap();
    let n: i64 = one(&c, "SELECT count(*) FROM cloudsync_changes WHERE cast(pk AS TEXT) LIKE '%tiny'");
    assert_eq!(n, 2);
}

#[test]
fn disable_is_persistent_and_stops_tracking() {
    let c = db_with_t("cls");
    c.query_row("SELECT cloudsync_disable('t')", [], |_| Ok(())).unwrap();
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_is_enabled('t')"), 0);
    c.execute_batch("INSERT INTO t VALUES ('hidden', 1, 'h')").unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM cloudsync_changes"), 0);
    c.query_row("SELECT cloudsync_enable('t')", [], |_| Ok(())).unwrap();
    c.execute_batch("INSERT INTO t VALUES ('seen', 1, 's')").unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM cloudsync_changes"), 2);
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_is_enabled('t')"), 1);
}

#[test]
fn schema_changes_with_begin_and_commit_alter() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    settle(&[&a, &b]);
    // b migrates first: adds a column.
    b.execute_batch(
        "BEGIN; SELECT cloudsync_begin_alter('t'); ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd';
         SELECT cloudsync_commit_alter('t'); COMMIT;",
    )
    .unwrap();
    // Old-schema changes still apply to the new schema.
    a.execute_batch("UPDATE t SET a = 2").unwrap();
    sync(&a, &b);
    assert_eq!(rows(&b, "t"), vec![vec![text("x"), Value::Integer(2), text("one"), text("d")]]);
    // New-schema changes are refused by the old schema, and nothing is applied.
    b.execute_batch("UPDATE t SET c = 'new', a = 3").unwrap();
    let p = payload(&b, 0).unwrap();
    let e = apply(&a, &p).unwrap_err().to_string();
    assert!(e.contains("column 'c'") && e.contains("migrate"), "{e}");
    assert_eq!(rows(&a, "t")[0][1], Value::Integer(2));
    // After a migrates too, the payload applies.
    a.execute_batch(
        "BEGIN; SELECT cloudsync_begin_alter('t'); ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd';
         SELECT cloudsync_commit_alter('t'); COMMIT;",
    )
    .unwrap();
    apply(&a, &p).unwrap();
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    // Dropping a column: changes to it from a replica still on the old schema are skipped.
    b.execute_batch(
        "BEGIN; SELECT cloudsync_begin_alter('t'); ALTER TABLE t DROP COLUMN b;
         SELECT cloudsync_commit_alter('t'); COMMIT;",
    )
    .unwrap();
    a.execute_batch("UPDATE t SET b = 'gone', a = 4").unwrap();
    sync(&a, &b);
    assert_eq!(rows(&b, "t"), vec![vec![text("x"), Value::Integer(4), text("new")]]);
    // begin_alter outside a transaction and a key change are refused.
    assert!(err(&a, "SELECT cloudsync_begin_alter('t')").contains("inside a transaction"));
}

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

#[test]
fn user_triggers_fire_once_per_merged_row() {
    let setup = || {
        let c = db_with_t("cls");
        c.execute_batch(
            "CREATE TABLE audit (what TEXT);
             CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO audit VALUES ('ins ' || NEW.id); END;
             CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit VALUES ('upd ' || NEW.id); END;",
        )
        .unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'); UPDATE t SET a = 2, b = 'two';").unwrap();
    b.execute_batch("DELETE FROM audit").unwrap();
    sync(&a, &b);
    let log: Vec<String> = {
        let mut s = b.prepare("SELECT what FROM audit").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(log, vec!["ins x".to_string()]);
    // The merge did not re-track its own writes.
    let site_b: Vec<u8> = one(&b, "SELECT cloudsync_siteid()");
    assert_eq!(
        b.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id = ?1", [&site_b], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );
}

#[test]
fn hostile_names_are_quoted() {
    let name = "we\"ird ' name; DROP TABLE x --";
    let setup = || {
        let c = db();
        c.execute_batch(&format!(
            "CREATE TABLE \"{n}\" (\"k\"\"ey\" TEXT PRIMARY KEY NOT NULL, \"sp ace\" TEXT, \"select\" INTEGER)",
            n = name.replace('"', "\"\"")
        ))
        .unwrap();
        c.query_row("SELECT cloudsync_init(?1)", [name], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute(&format!("INSERT INTO \"{}\" VALUES ('k', 'v', 1)", name.replace('"', "\"\"")), []).unwrap();
    a.execute(&format!("UPDATE \"{}\" SET \"select\" = 2", name.replace('"', "\"\"")), []).unwrap();
    sync(&a, &b);
    assert_eq!(rows(&a, name), rows(&b, name));
    assert_eq!(rows(&b, name).len(), 1);
}

#[test]
fn cleanup_removes_everything() {
    let c = db_with_t("cls");
    c.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    c.query_row("SELECT cloudsync_cleanup('t')", [], |_| Ok(())).unwrap();
    let left: i64 = one(&c, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%cloudsync%'");
    assert_eq!(left, 0);
    c.execute_batch("INSERT INTO t VALUES ('y', 2, 'two')").unwrap();
    assert!(err(&c, "SELECT cloudsync_cleanup('t')").contains("not synced"));
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_terminate()"), 1);
}

#[test]
fn null_primary_key_is_refused() {
    let c = db();
    c.execute_batch("CREATE TABLE n (id TEXT PRIMARY KEY, v TEXT)").unwrap();
    c.query_row("SELECT cloudsync_init('n')", [], |_| Ok(())).unwrap();
    assert!(err(&c, "INSERT INTO n VALUES (NULL, 'v')").contains("NULL in primary key"));
}

#[test]
fn settings_are_validated_and_stored() {
    let c = db_with_t("cls");
    c.query_row("SELECT cloudsync_set('payload_compression', 0)", [], |_| Ok(())).unwrap();
    assert!(err(&c, "SELECT cloudsync_set('payload_compression', 99)").contains("0..=19"));
    c.query_row("SELECT cloudsync_set_table('t', 'owner', 'app')", [], |_| Ok(())).unwrap();
    c.query_row("SELECT cloudsync_set_column('t', 'b', 'note', 'x')", [], |_| Ok(())).unwrap();
    assert!(err(&c, "SELECT cloudsync_set_column('t', 'nope', 'note', 'x')").contains("no column"));
    assert!(err(&c, "SELECT cloudsync_set_table('t', 'algo', 'gos')").contains("cloudsync_init"));
    c.query_row("SELECT cloudsync_set_table('t', 'owner', NULL)", [], |_| Ok(())).unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM cloudsync_table_settings"), 2);
    // Uncompressed payloads still decode.
    c.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let d = db_with_t("cls");
    sync(&c, &d);
    assert_eq!(rows(&c, "t"), rows(&d, "t"));
}

#[test]
fn wide_tables_track_every_column() {
    // 70 columns: the single-trigger mask path, with column ids beyond one 64-bit word.
    let cols: Vec<String> = (0..70).map(|i| format!("c{i} INTEGER DEFAULT 0")).collect();
    let setup = || {
        let c = db();
        c.execute_batch(&format!("CREATE TABLE w (id TEXT PRIMARY KEY NOT NULL, {})", cols.join(", "))).unwrap();
        c.query_row("SELECT cloudsync_init('w')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO w (id) VALUES ('x')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE w SET c0 = 1, c63 = 2, c64 = 3, c69 = 4").unwrap();
    b.execute_batch("UPDATE w SET c1 = 5, c65 = 6").unwrap();
    // A no-op update logs nothing.
    a.execute_batch("UPDATE w SET c2 = c2").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "w"), rows(&b, "w"));
    let row = &rows(&a, "w")[0];
    for (i, v) in [(0, 1), (63, 2), (64, 3), (69, 4), (1, 5), (65, 6), (2, 0)] {
        assert_eq!(row[i + 1], Value::Integer(v), "column c{i}");
    }
    let changed: i64 = one(&a, "SELECT count(*) FROM cloudsync_changes WHERE col_version > 1");
    assert_eq!(changed, 6);
}

#[test]
fn foreign_keys_hold_whatever_the_payload_order() {
    let setup = || {
        let c = db();
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id TEXT PRIMARY KEY NOT NULL, name TEXT);
             CREATE TABLE child (id TEXT PRIMARY KEY NOT NULL, parent_id TEXT REFERENCES parent (id), v TEXT);
             SELECT cloudsync_init('child'); SELECT cloudsync_init('parent');",
        )
        .unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    // The child table comes first in the feed (written first after both exist).
    a.execute_batch("BEGIN; INSERT INTO parent VALUES ('p', 'P'); INSERT INTO child VALUES ('c', 'p', 'v'); COMMIT;")
        .unwrap();
    let p = a
        .query_row(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
             FROM (SELECT * FROM cloudsync_changes ORDER BY tbl = 'parent')",
            [],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .unwrap();
    apply(&b, &p).unwrap();
    assert_eq!(rows(&b, "child"), rows(&a, "child"));
    // A payload that would leave a dangling reference is refused whole.
    let c = setup();
    let orphan = {
        let d = setup();
        d.execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO child VALUES ('o', 'missing', 'x');").unwrap();
        payload(&d, 0).unwrap()
    };
    assert!(apply(&c, &orphan).unwrap_err().to_string().contains("FOREIGN KEY"));
    assert!(rows(&c, "child").is_empty());
}

#[test]
fn hub_relays_changes_with_their_origin() {
    let (a, hub, b) = (db_with_t("cls"), db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'from a')").unwrap();
    sync(&a, &hub);
    sync(&hub, &b);
    assert_eq!(rows(&b, "t"), rows(&a, "t"));
    // b sees a's site id on a's changes, not the hub's.
    let site_a: Vec<u8> = one(&a, "SELECT cloudsync_siteid()");
    let from_a: i64 =
        b.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id = ?1", [&site_a], |r| r.get(0)).unwrap();
    assert_eq!(from_a, 2);
    // What a needs from the hub excludes what a wrote itself.
    let for_a: i64 =
        hub.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id != ?1", [&site_a], |r| r.get(0)).unwrap();
    assert_eq!(for_a, 0);
}

#[test]
fn many_clients_edit_one_composite_key() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE m (a TEXT NOT NULL, b INTEGER NOT NULL, v INTEGER, w TEXT, PRIMARY KEY (a, b))")
            .unwrap();
        c.query_row("SELECT cloudsync_init('m')", [], |_| Ok(())).unwrap();
        c
    };
    let clients: Vec<_> = (0..10).map(|_| setup()).collect();
    clients[0].execute_batch("INSERT INTO m VALUES ('k', -5, 0, 'start')").unwrap();
    let refs: Vec<&rusqlite::Connection> = clients.iter().collect();
    settle(&refs);
    for (i, c) in clients.iter().enumerate() {
        c.execute("UPDATE m SET v = ?1, w = 'client ' || ?1", [i64::try_from(i).unwrap()]).unwrap();
    }
    settle(&refs);
    let first = rows(&clients[0], "m");
    for c in &clients {
        assert_eq!(rows(c, "m"), first);
    }
    // Same version everywhere: the largest value wins.
    assert_eq!(first[0][2], Value::Integer(9));
}

#[test]
fn many_columns_and_large_values() {
    let cols: Vec<String> = (0..600).map(|i| format!("c{i} TEXT")).collect();
    let setup = || {
        let c = db();
        c.execute_batch(&format!("CREATE TABLE wide (id TEXT PRIMARY KEY NOT NULL, big BLOB, {})", cols.join(", ")))
            .unwrap();
        c.query_row("SELECT cloudsync_init('wide')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    let sets: Vec<String> = (0..600).map(|i| format!("c{i} = 'v{i}'")).collect();
    a.execute_batch("INSERT INTO wide (id) VALUES ('x')").unwrap();
    a.execute_batch(&format!("UPDATE wide SET {}", sets.join(", "))).unwrap();
    // 10 MB of incompressible bytes in one cell: several frames' worth in one row.
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect();
    a.execute("UPDATE wide SET big = ?1", [&big]).unwrap();
    a.execute_batch("INSERT INTO wide (id, c0) VALUES ('y', 'second row')").unwrap();
    sync(&a, &b);
    assert_eq!(rows(&a, "wide"), rows(&b, "wide"));
    let got: Vec<u8> = one(&b, "SELECT big FROM wide WHERE id = 'x'");
    assert_eq!(got, big);
}

#[test]
fn nested_transactions_and_rollbacks_record_only_what_committed() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch(
        "BEGIN;
           INSERT INTO t VALUES ('kept', 1, 'k');
           SAVEPOINT s1; INSERT INTO t VALUES ('undone', 2, 'u'); ROLLBACK TO s1; RELEASE s1;
           SAVEPOINT s2; UPDATE t SET a = 5 WHERE id = 'kept'; RELEASE s2;
         COMMIT;
         BEGIN; INSERT INTO t VALUES ('never', 3, 'n'); ROLLBACK;",
    )
    .unwrap();
    sync(&a, &b);
    assert_eq!(rows(&b, "t"), vec![vec![text("kept"), Value::Integer(5), text("k")]]);
}
