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
    assert_eq!(sync(&a, &b), 6);
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
