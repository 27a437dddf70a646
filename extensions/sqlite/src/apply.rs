//! Applying changesets: fold local writes, merge, drop the log entries the merge's own
//! writes produced — all inside one savepoint, so a failure leaves nothing behind.

use cloudsync_core::engine::{apply_changeset, ApplyReport};
use cloudsync_core::Changeset;
use rusqlite::Connection;

use crate::state::ConnState;
use crate::store::SqliteStore;
use crate::{fold, Result};

/// Runs `f` inside a savepoint: released on success, rolled back on error.
///
/// Inside a statement that is itself writing (an `INSERT INTO cloudsync_changes`, a
/// trigger), SQLite refuses new savepoints; there the enclosing statement is already
/// atomic (it rolls back whole on error), so `f` runs in it directly.
pub fn in_savepoint<T>(conn: &Connection, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Err(e) = conn.execute_batch(&format!("SAVEPOINT {name}")) {
        let in_statement = matches!(&e, rusqlite::Error::SqliteFailure(err, _) if err.code == rusqlite::ErrorCode::DatabaseBusy)
            && e.to_string().contains("statements in progress");
        if in_statement {
            return f();
        }
        return Err(e.into());
    }
    match f() {
        Ok(v) => {
            conn.execute_batch(&format!("RELEASE {name}"))?;
            Ok(v)
        }
        Err(e) => {
            // The original error matters more than a failure to roll back.
            let _ = conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"));
            Err(e)
        }
    }
}

/// Merges a decoded changeset atomically.
pub fn apply(conn: &Connection, state: &ConnState, cs: &Changeset) -> Result<ApplyReport> {
    in_savepoint(conn, "cloudsync_apply", || {
        fold::fold_all(conn)?;
        let mut store = SqliteStore::new(conn);
        let report = {
            let _guard = state.merge_guard();
            apply_changeset(&mut store, cs)?
        };
        // The fold emptied the logs, so what the tracking triggers logged since then
        // are the merge's own writes: they must not be shipped as local changes.
        for t in store.touched() {
            conn.execute_batch(&format!("DELETE FROM {}", t.log()))?;
        }
        Ok(report)
    })
}

/// Decodes and merges a payload atomically. Nothing is written if the payload does
/// not decode or does not fit the local schema.
pub fn apply_payload(conn: &Connection, state: &ConnState, bytes: &[u8]) -> Result<ApplyReport> {
    let cs = cloudsync_core::payload::decode(bytes)?;
    apply(conn, state, &cs)
}
