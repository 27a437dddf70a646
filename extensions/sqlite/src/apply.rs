//! Applying changesets: fold local writes, merge, drop the log entries the merge's own
//! writes produced — all inside one savepoint, so a failure leaves nothing behind.

use cloudsync_core::engine::{apply_changeset_with, ApplyReport, Unknown};
use cloudsync_core::Changeset;
use rusqlite::Connection;

use crate::sql::in_savepoint;
use crate::state::ConnState;
use crate::store::{SqliteStore, Values};
use crate::{fold, Result};

/// Merges a decoded changeset atomically (a device's rules: [`Values::Keys`]);
/// refuses it whole when it names a table or column this database does not have.
pub fn apply(conn: &Connection, state: &ConnState, cs: &Changeset) -> Result<ApplyReport> {
    merge(conn, state, cs, Values::Keys, Unknown::Refuse)
}

/// Merges a decoded changeset atomically, refusing values as `values` says before
/// anything is written, and tables and columns this database does not have.
pub fn apply_with(conn: &Connection, state: &ConnState, cs: &Changeset, values: Values) -> Result<ApplyReport> {
    merge(conn, state, cs, values, Unknown::Refuse)
}

/// Merges a downloaded payload atomically, skipping the tables and columns this
/// database does not have (yet): the server's schema may be ahead of this device's
/// (`ApplyReport::unknown` names them).
#[cfg(feature = "network")]
pub fn apply_download(conn: &Connection, state: &ConnState, bytes: &[u8]) -> Result<ApplyReport> {
    let cs = cloudsync_core::payload::decode(bytes)?;
    merge(conn, state, &cs, Values::Keys, Unknown::Skip)
}

fn merge(
    conn: &Connection,
    state: &ConnState,
    cs: &Changeset,
    values: Values,
    unknown: Unknown,
) -> Result<ApplyReport> {
    in_savepoint(conn, "cloudsync_apply", || {
        fold::fold_all(conn)?;
        // A payload lists rows in feed order, not in foreign-key order (a child row may
        // come before its parent): check foreign keys when the transaction commits.
        // SQLite resets this at the end of the transaction.
        conn.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        // With no user triggers anywhere, switch triggers off for the merge: ours would
        // only log the merge's own writes, to be deleted again. User triggers must see
        // merged rows, so when any exists, ours run and their log rows are dropped.
        let _quiet = if user_triggers_exist(conn)? { None } else { TriggersOff::new(conn)? };
        let mut store = SqliteStore::new(conn, values);
        let report = {
            let _guard = state.merge_guard();
            apply_changeset_with(&mut store, cs, unknown)?
        };
        // The fold emptied the logs, so what the tracking triggers logged since then
        // are the merge's own writes: they must not be shipped as local changes.
        for t in store.touched() {
            conn.execute_batch(&format!("DELETE FROM {}", t.log()))?;
        }
        Ok(report)
    })
}

/// Whether the database has a trigger that cloudsync did not create (in `main` or
/// `temp`).
fn user_triggers_exist(conn: &Connection) -> Result<bool> {
    let synced = crate::meta::table::SyncTable::names(conn)?;
    let mut stmt = conn.prepare_cached(
        "SELECT name, tbl_name, 0 FROM main.sqlite_master WHERE type = 'trigger' \
         UNION ALL SELECT name, tbl_name, 1 FROM temp.sqlite_master WHERE type = 'trigger'",
    )?;
    let triggers = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(triggers.iter().any(|(name, table, temp)| {
        *temp || !synced.iter().any(|s| s.eq_ignore_ascii_case(table) && crate::triggers::is_ours(s, name))
    }))
}

/// Triggers switched off on this connection until dropped (also on error or panic).
struct TriggersOff<'c>(&'c Connection);

impl<'c> TriggersOff<'c> {
    /// Switches triggers off, unless the application already had them off.
    fn new(conn: &'c Connection) -> Result<Option<Self>> {
        use rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER as TRIGGERS;
        if !conn.db_config(TRIGGERS)? {
            return Ok(None);
        }
        conn.set_db_config(TRIGGERS, false)?;
        Ok(Some(TriggersOff(conn)))
    }
}

impl Drop for TriggersOff<'_> {
    fn drop(&mut self) {
        // Failing to switch triggers back on would silently stop change tracking on
        // this connection; setting a flag on an open connection cannot fail.
        let _ = self.0.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true);
    }
}

/// Decodes and merges a payload atomically. Nothing is written if the payload does
/// not decode or does not fit the local schema.
pub fn apply_payload(conn: &Connection, state: &ConnState, bytes: &[u8]) -> Result<ApplyReport> {
    let cs = cloudsync_core::payload::decode(bytes)?;
    apply(conn, state, &cs)
}
