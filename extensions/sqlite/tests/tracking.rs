//! SQL-level behaviour of the extension, through rusqlite with a bundled SQLite.
//!
//! Tracking local writes: the functions that set a table up (`cloudsync_init`, filters,
//! disable, cleanup, alter), what the triggers record and how the fold turns it into
//! feed positions.

mod common;
use common::*;
use rusqlite::types::Value;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

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
