//! Shared helpers for the SQL-level tests.
#![allow(dead_code)]

use rusqlite::types::Value;
use rusqlite::Connection;

/// A fresh in-memory database with the extension registered.
pub fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    cloudsync_sqlite::register(&c).unwrap();
    c
}

/// A database with a synced table `t(id TEXT PK, a, b)`.
pub fn db_with_t(algo: &str) -> Connection {
    let c = db();
    c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER, b TEXT)").unwrap();
    c.query_row("SELECT cloudsync_init('t', ?1)", [algo], |_| Ok(())).unwrap();
    c
}

/// Every row of `table`, ordered by all columns, as SQL values.
pub fn rows(c: &Connection, table: &str) -> Vec<Vec<Value>> {
    let mut stmt = c.prepare(&format!("SELECT * FROM \"{}\" ORDER BY 1, 2", table.replace('"', "\"\""))).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Every change after `since` from `from`, as one payload (None when empty).
pub fn payload(from: &Connection, since: i64) -> Option<Vec<u8>> {
    from.query_row(
        "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
         FROM cloudsync_changes WHERE db_version > ?1",
        [since],
        |r| r.get(0),
    )
    .unwrap()
}

/// Applies a payload, returning the number of changes applied.
pub fn apply(to: &Connection, payload: &[u8]) -> rusqlite::Result<i64> {
    to.query_row("SELECT cloudsync_payload_apply(?1)", [payload], |r| r.get(0))
}

/// Sends everything from `from` to `to`.
pub fn sync(from: &Connection, to: &Connection) -> i64 {
    match payload(from, 0) {
        Some(p) => apply(to, &p).unwrap(),
        None => 0,
    }
}

/// Syncs every pair until quiet.
pub fn settle(dbs: &[&Connection]) {
    for _ in 0..2 {
        for a in dbs {
            for b in dbs {
                if !std::ptr::eq(*a, *b) {
                    sync(a, b);
                }
            }
        }
    }
}

pub fn one<T: rusqlite::types::FromSql>(c: &Connection, sql: &str) -> T {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

pub fn err(c: &Connection, sql: &str) -> String {
    match c.execute_batch(sql) {
        Ok(()) => panic!("expected an error from: {sql}"),
        Err(e) => e.to_string(),
    }
}
