//! The sandbox of every SQLite connection to a tenant database, in one place, with
//! SQLite's own mechanisms (`docs/security.md`):
//!
//! - only the engine's innocuous functions are registered
//!   (`cloudsync_sqlite::register_engine`): nothing that reads or writes files or the
//!   network exists on these connections, and extension loading stays off;
//! - an authorizer denies `ATTACH`/`DETACH`, virtual tables, every PRAGMA outside a short
//!   allow-list and every function outside [`FUNCTIONS`] and the guard's allow-list, at
//!   prepare time, whatever the SQL's origin;
//! - `SQLITE_DBCONFIG_DEFENSIVE` (no writes to the schema tables, no `writable_schema`),
//!   `trusted_schema = OFF` (functions in the schema must be innocuous);
//! - limits: no attached database, statements of at most [`MAX_SQL`], expressions at most
//!   [`MAX_DEPTH`] deep, values of at most [`MAX_VALUE`], triggers nested at most 10;
//! - a time budget: a progress handler interrupts any statement running past the
//!   deadline of the current operation ([`Budget`]).
//!
//! Tenant SQL itself never runs as written: provisioning runs DDL re-emitted from the
//! parsed tree and row policies are re-emitted expressions (`ddl::guard`). The sandbox
//! is the second wall, for whatever reaches the connection anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::Connection;

use crate::ids::now_ms;
use crate::Result;

/// Longest statement text.
pub const MAX_SQL: i32 = 1 << 20;
/// Deepest expression tree.
pub const MAX_DEPTH: i32 = 200;
/// Largest text or blob value.
pub const MAX_VALUE: i32 = 256 << 20;

/// Functions the engine's and the service's own statements call, besides the guard's
/// allow-list (`ddl::guard::FUNCTIONS`, `POLICY_FUNCTIONS`), and those SQLite's own
/// schema changes call (`ALTER TABLE` rewrites `sqlite_schema` with `printf` and its
/// internal `sqlite_…` functions, which SQL outside SQLite cannot call).
pub const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "total",
    "group_concat",
    "cloudsync_is_merging",
    "cloudsync_version",
    "cloudsync_uuid",
    "printf",
    "format",
];

/// PRAGMAs the engine uses (reads of the schema, transaction settings), and
/// `quick_check`, which SQLite itself reads while adding a column with a `CHECK` or
/// `NOT NULL` to a table with rows (`ALTER TABLE … ADD COLUMN` checks them; read-only,
/// and within the call's time budget like every statement here).
const PRAGMAS: &[&str] = &[
    "quick_check",
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "schema_version",
    "data_version",
    "defer_foreign_keys",
    "foreign_keys",
    "journal_mode",
    "synchronous",
    "busy_timeout",
    "wal_checkpoint",
    "trusted_schema",
    "page_count",
    "page_size",
];

/// The deadline of the operation a connection runs (Unix ms; 0: none), read by its
/// progress handler.
#[derive(Clone, Debug, Default)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    /// Runs `f` with statements interrupted after `limit` (SQLite's `SQLITE_INTERRUPT`).
    pub fn within<T>(&self, limit: Duration, f: impl FnOnce() -> T) -> T {
        let deadline =
            u64::try_from(now_ms()).unwrap_or(0).saturating_add(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX));
        let previous = self.0.swap(deadline, Ordering::SeqCst);
        let out = f();
        self.0.store(previous, Ordering::SeqCst);
        out
    }

    fn exceeded(&self) -> bool {
        let deadline = self.0.load(Ordering::Relaxed);
        deadline != 0 && u64::try_from(now_ms()).unwrap_or(0) > deadline
    }
}

fn allowed_function(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.as_str();
    FUNCTIONS.contains(&lower)
        || lower.starts_with("sqlite_")
        || cloudsync_ddl::guard::FUNCTIONS.contains(&lower)
        || cloudsync_ddl::guard::POLICY_FUNCTIONS.contains(&lower)
}

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropVtable { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } if !PRAGMAS.iter().any(|p| pragma_name.eq_ignore_ascii_case(p)) => {
            Authorization::Deny
        }
        AuthAction::Function { function_name } if !allowed_function(function_name) => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

/// Puts a freshly opened connection to a tenant database in the sandbox; returns its
/// budget.
pub fn enter(conn: &Connection) -> Result<Budget> {
    use rusqlite::config::DbConfig;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL)?;
    conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, MAX_DEPTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE)?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10)?;
    conn.authorizer(Some(authorize))?;
    let budget = Budget::default();
    let watched = budget.clone();
    conn.progress_handler(10_000, Some(move || watched.exceeded()))?;
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandboxed() -> (Connection, Budget) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT)").unwrap();
        let budget = enter(&conn).unwrap();
        (conn, budget)
    }

    fn refused(conn: &Connection, sql: &str) -> String {
        conn.execute_batch(sql).map(|()| format!("accepted: {sql}")).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn what_reaches_a_connection_anyway_is_denied() {
        let (conn, _) = sandboxed();
        for sql in [
            "ATTACH DATABASE ':memory:' AS x",
            "PRAGMA writable_schema = ON",
            "PRAGMA max_page_count = 4294967294",
            "PRAGMA journal_size_limit = -1",
            "PRAGMA temp_store_directory = '/tmp'",
            "SELECT load_extension('x')",
            "SELECT random()",
            "SELECT randomblob(10)",
            "SELECT zeroblob(10)",
            "CREATE VIRTUAL TABLE v USING fts5(a)",
            "VACUUM INTO '/tmp/cloudsync-sandbox-test.sqlite'",
        ] {
            let e = refused(&conn, sql);
            assert!(!e.starts_with("accepted"), "{e}");
        }
        assert!(!std::path::Path::new("/tmp/cloudsync-sandbox-test.sqlite").exists());
        // Defensive mode: the schema tables cannot be written.
        assert!(!refused(&conn, "UPDATE sqlite_master SET sql = 'x'").starts_with("accepted"));
        // What the engine and the guard need still works.
        conn.execute_batch("PRAGMA foreign_keys = ON; SELECT lower('A'), count(*), json_extract('{}', '$.a') FROM t;")
            .unwrap();
        conn.query_row("SELECT * FROM pragma_table_xinfo('t')", [], |_| Ok(())).unwrap();
    }

    #[test]
    fn a_statement_past_its_budget_is_interrupted() {
        let (conn, budget) = sandboxed();
        let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let e = budget.within(Duration::from_millis(50), || conn.query_row(sql, [], |r| r.get::<_, i64>(0)));
        match e {
            Err(rusqlite::Error::SqliteFailure(f, _)) => {
                assert_eq!(f.code, rusqlite::ErrorCode::OperationInterrupted);
            }
            other => panic!("{other:?}"),
        }
        // Outside a budget nothing is interrupted.
        assert_eq!(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
    }
}
