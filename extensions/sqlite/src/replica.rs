//! The one facade of this crate for a host that drives a database from Rust (the
//! service's central copies): [`Replica`]. Everything else in the crate serves the SQL
//! functions and is private to it.
//!
//! A replica answers in the same shapes Postgres Sync answers the service in — an apply
//! returns the rows applied and the rows refused, each whole (`cloudsync_protocol`), a
//! download one bounded [`Chunk`] — so the service drives both engines through one
//! trait. Which rows a database refuses, and why, is decided here, once, for SQLite:
//! a write policy (checked on the row before and after the merge) or a constraint,
//! named by its SQLSTATE like PostgreSQL names it.
//!
//! The connection is the host's to configure (pragmas, authorizer, limits, functions
//! of its own: [`Replica::connection`]); the engine's metadata cache is this module's
//! business, scoped around every call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cloudsync_core::engine::{apply_row_by_row, RowAttempt};
use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::value::{decode_key, show_key};
use cloudsync_core::{Changeset, SiteId, Value};
use cloudsync_ddl::Statement;
use cloudsync_protocol::sync::{SchemaColumn, SchemaTable};
use cloudsync_protocol::{ApplyOutcome, Provisioned, Provisioning, RefusedRow, Sqlstate, TableInfo};
use rusqlite::{Connection, TransactionBehavior};

use crate::apply::apply_with;
use crate::changes::{FeedQuery, SiteFilter};
use crate::meta::table::SyncTable;
use crate::state::ConnState;
use crate::store::Values;
use crate::{Error, Result};

/// Row policies: `(table, SQL expression over the row's columns)`, matched to tables
/// case-insensitively. The caller validates them (the service re-emits them from a
/// parsed tree); they run on the host's connection, with its authorizer.
pub type Policies = [(String, String)];

/// A database whose synced tables a host applies payloads to and reads the feed of.
pub struct Replica {
    conn: Connection,
    state: Arc<ConnState>,
}

impl Replica {
    /// Registers the engine's innocuous functions on `conn` (no file or network access:
    /// [`crate::register_engine`]) and wraps it.
    pub fn new(conn: Connection) -> Result<Replica> {
        let state = crate::register_engine(&conn)?;
        Ok(Replica { conn, state })
    }

    /// The connection, for what the host sets on it: pragmas, an authorizer, limits,
    /// functions of its own, and whether it is left inside a transaction.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` with this connection's metadata cache current.
    fn scoped<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        crate::meta::cache::scope(&self.state.cache, &self.conn, || f(&self.conn))
    }

    /// Decodes an uploaded payload and merges it in one transaction, as written by
    /// `uploader` (a payload holding another site's changes is refused whole). Keys and
    /// values must be stored exactly as sent ([`Values::Exact`]).
    ///
    /// A row its table's write policy refuses (checked on the row before and after the
    /// merge, `policies`), or that breaks a constraint, is left out and reported; the
    /// others are applied, each whole. Any other failure applies nothing.
    pub fn apply(&self, payload: &[u8], uploader: SiteId, policies: &Policies) -> Result<ApplyOutcome> {
        let cs = cloudsync_core::payload::decode(payload)?;
        cloudsync_core::engine::written_by(&cs, uploader)?;
        self.scoped(|conn| {
            let txn = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            let policed = cs.tables.iter().any(|t| policy_of(policies, &t.name).is_some());
            let whole = if policed {
                None
            } else {
                conn.execute_batch("SAVEPOINT cloudsync_whole")?;
                match apply_with(conn, &self.state, &cs, Values::Exact) {
                    Ok(report) if !crate::ffi::unresolved_foreign_keys(conn)? => {
                        conn.execute_batch("RELEASE cloudsync_whole")?;
                        Some(ApplyOutcome { applied: report.applied, refused: Vec::new() })
                    }
                    Err(e) if sqlstate_of(&e).is_none() => return Err(e),
                    // A constraint refused a row, or a deferred foreign key would fail
                    // the commit (every row with it): find which rows, row by row.
                    _ => {
                        conn.execute_batch("ROLLBACK TO cloudsync_whole; RELEASE cloudsync_whole")?;
                        None
                    }
                }
            };
            let outcome = match whole {
                Some(outcome) => outcome,
                None => apply_rows(conn, &self.state, &cs, policies)?,
            };
            // Deferred foreign keys were checked above, row by row; anything else that
            // fails the commit rolls the transaction back when dropped.
            txn.commit()?;
            Ok(outcome)
        })
    }

    /// The changes after `from` that `except` did not write, as one chunk of about
    /// `max_bytes` (whole rows), of the rows `visible` lets the caller read (read
    /// policies; a row of a policed table is sent whole once visible). Pending local
    /// writes are folded first; rows and resume point are read in one snapshot.
    pub fn chunk(&self, from: Checkpoint, except: SiteId, max_bytes: usize, visible: &Policies) -> Result<Chunk> {
        self.scoped(|conn| {
            let query = FeedQuery {
                from,
                sites: SiteFilter::Except(except),
                visible: visible.to_vec(),
                ..FeedQuery::default()
            };
            crate::payload::encode_chunk(conn, query, max_bytes)
        })
    }

    /// Runs schema SQL and enables sync on the tables it creates (`algos`: table →
    /// algorithm, default `cls`; `flags`: table → init flags), in one transaction: all of
    /// it or nothing. Only `CREATE TABLE`/`CREATE INDEX`/`ALTER TABLE … ADD COLUMN` are
    /// accepted, and only as re-emitted from the parsed tree (`ddl::guard`), never the
    /// submitted text. A table
    /// that exists already gets its new columns (`ALTER TABLE … ADD COLUMN`, through
    /// `cloudsync_begin_alter`/`commit_alter` when synced): a schema is posted again,
    /// wider, as the application evolves (`ddl::guard::schema_against`). A `dry_run`
    /// does all of it, reports what it did, and rolls back.
    pub fn provision(
        &self,
        sql: &str,
        algos: &BTreeMap<String, String>,
        flags: &BTreeMap<String, i64>,
        dry_run: bool,
    ) -> Result<Provisioning> {
        self.scoped(|conn| {
            let txn = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            let emitted = cloudsync_ddl::guard::schema_against(sql, &existing_tables(conn)?)?;
            let done = provision_in(conn, &emitted, algos, flags)?;
            if dry_run {
                drop(txn);
                // A rolled-back init leaves nothing behind but cached metadata.
                crate::meta::cache::invalidate();
            } else {
                txn.commit()?;
            }
            Ok(done)
        })
    }

    /// The canonical name of the synced table `name` (matched case-insensitively).
    pub fn synced_table(&self, name: &str) -> Result<Option<String>> {
        self.scoped(|conn| Ok(SyncTable::load(conn, name)?.map(|t| t.name)))
    }

    /// The synced tables' lowercase names, each with its columns' (dropped ones
    /// included): what an uploaded changeset may name ([`cloudsync_core::engine::unknown_in`]).
    pub fn schema(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        self.scoped(|conn| {
            let mut out = BTreeMap::new();
            for name in SyncTable::names(conn)? {
                let t = SyncTable::require(conn, &name)?;
                let columns = t.columns.iter().map(|c| c.name.as_str()).chain(t.dropped.iter().map(String::as_str));
                out.insert(t.name.to_ascii_lowercase(), columns.map(str::to_ascii_lowercase).collect());
            }
            Ok(out)
        })
    }

    /// The synced tables, by name, with their row counts.
    pub fn tables(&self) -> Result<Vec<TableInfo>> {
        self.scoped(|conn| {
            let mut out = Vec::new();
            for name in SyncTable::names(conn)? {
                let t = SyncTable::require(conn, &name)?;
                let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", t.quoted()), [], |r| r.get(0))?;
                out.push(TableInfo {
                    table: t.name,
                    algo: t.algo.name().to_string(),
                    enabled: t.enabled,
                    key: t.pk.into_iter().map(|k| k.name).collect(),
                    columns: t.columns.into_iter().map(|c| c.name).collect(),
                    rows,
                });
            }
            Ok(out)
        })
    }

    /// The synced tables as SQLite DDL a device can run: each table's definition as
    /// parsed and re-emitted by `cloudsync_ddl::guard` (only what a `CREATE TABLE` may
    /// hold), and each column's, for `ADD COLUMN`.
    pub fn device_schema(&self) -> Result<Vec<SchemaTable>> {
        self.scoped(|conn| {
            let mut out = Vec::new();
            for name in SyncTable::names(conn)? {
                let t = SyncTable::require(conn, &name)?;
                let sql: String = conn.query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [&t.name],
                    |r| r.get(0),
                )?;
                let parsed = cloudsync_ddl::parse(&sql).map_err(cloudsync_ddl::TranslateError::from)?;
                let Some(Statement::Table(table)) = parsed.into_iter().next() else { continue };
                let columns = table
                    .columns
                    .iter()
                    .map(|c| SchemaColumn { name: c.name.clone(), definition: cloudsync_ddl::guard::emit_column(c) })
                    .collect();
                out.push(SchemaTable {
                    table: t.name.clone(),
                    algo: t.algo.name().to_string(),
                    create: cloudsync_ddl::guard::emit(&Statement::Table(table)),
                    columns,
                });
            }
            Ok(out)
        })
    }

    /// Of `keys` (rows of `table`, payload-encoded), those that name no row the read
    /// `policy` lets the caller read (with no policy, every live row is readable); None
    /// when `table` is not synced. A hidden row and a key with no row are answered
    /// alike, so the answer tells nothing a download would not. Keys are returned as
    /// given.
    pub fn invisible(&self, table: &str, keys: &[Vec<u8>], policy: Option<&str>) -> Result<Option<Vec<Vec<u8>>>> {
        self.scoped(|conn| {
            let Some(t) = SyncTable::load(conn, table)? else { return Ok(None) };
            let expr = policy.unwrap_or("1");
            let mut hidden = Vec::new();
            for pk in keys {
                let readable = match decode_key(pk, t.pk.len()) {
                    Ok(key) => row_allowed(conn, &t, &key, expr)? == Some(true),
                    Err(_) => false,
                };
                if !readable {
                    hidden.push(pk.clone());
                }
            }
            Ok(Some(hidden))
        })
    }

    /// Checks a row policy compiles against `table` (its columns, the host's
    /// functions), as a single expression.
    pub fn check_policy(&self, table: &str, expr: &str) -> Result<()> {
        self.scoped(|conn| {
            let t = SyncTable::load(conn, table)?
                .ok_or_else(|| Error::Invalid(format!("table '{table}' is not a synced table of this database")))?;
            conn.prepare(&format!("SELECT 1 FROM {} WHERE ({expr})", t.quoted()))
                .map(|_| ())
                .map_err(|e| Error::Invalid(format!("invalid policy for table '{table}': {e}")))
        })
    }

    /// The feed position: the last db_version written.
    pub fn db_version(&self) -> Result<u64> {
        self.scoped(crate::meta::db_version)
    }
}

/// `SQLITE_CONSTRAINT_DATATYPE` (SQLite 3.37): a STRICT table's type check. Named here
/// because the loadable extension's bindings come from the host's headers, which may
/// predate it.
const SQLITE_CONSTRAINT_DATATYPE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT | (12 << 8);

fn policy_of<'a>(policies: &'a Policies, table: &str) -> Option<&'a str> {
    policies.iter().find(|(t, _)| t.eq_ignore_ascii_case(table)).map(|(_, e)| e.as_str())
}

/// The SQLSTATE of an error that refuses one row, by SQLite's extended result codes
/// (a constraint; a value of the wrong type in a STRICT table), named as PostgreSQL
/// names them; None for every other error.
pub fn sqlstate_of(e: &Error) -> Option<Sqlstate> {
    use rusqlite::ffi;
    let Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) = e else { return None };
    if f.code != rusqlite::ErrorCode::ConstraintViolation {
        return None;
    }
    Some(Sqlstate::from(match f.extended_code {
        ffi::SQLITE_CONSTRAINT_CHECK => Sqlstate::CHECK,
        ffi::SQLITE_CONSTRAINT_NOTNULL => Sqlstate::NOT_NULL,
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Sqlstate::UNIQUE,
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Sqlstate::FOREIGN_KEY,
        SQLITE_CONSTRAINT_DATATYPE => Sqlstate::DATA_EXCEPTION,
        _ => Sqlstate::INTEGRITY_CONSTRAINT,
    }))
}

/// Whether the row `key` of `t` satisfies `expr`: None when there is no such row.
fn row_allowed(conn: &Connection, t: &SyncTable, key: &[Value], expr: &str) -> Result<Option<bool>> {
    let cond =
        t.pk.iter()
            .enumerate()
            .map(|(i, k)| format!("{} = ?{}", crate::sql::ident(&k.name), i + 1))
            .collect::<Vec<_>>();
    let sql = format!("SELECT coalesce(({expr}), 0) FROM {} WHERE {}", t.quoted(), cond.join(" AND "));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(key.iter().map(crate::sql::Bind)))?;
    Ok(match rows.next()? {
        None => None,
        Some(r) => Some(r.get::<_, i64>(0)? != 0),
    })
}

/// Applies `cs` one row at a time, each in a savepoint, checking write policies before
/// and after the merge and foreign keys after it (deferred ones too: what the commit
/// would check); refused rows are rolled back and reported. A row refused for a
/// foreign key is tried again once other rows applied (its parent may come later in
/// the payload: `apply_row_by_row`).
fn apply_rows(conn: &Connection, state: &ConnState, cs: &Changeset, policies: &Policies) -> Result<ApplyOutcome> {
    let (applied, refused) = apply_row_by_row(cs, |row_cs| apply_row(conn, state, row_cs, policies))?;
    Ok(ApplyOutcome { applied, refused: refused.into_iter().map(|(_, r)| r).collect() })
}

/// One row of [`apply_rows`], in its own savepoint.
fn apply_row(
    conn: &Connection,
    state: &ConnState,
    row_cs: &Changeset,
    policies: &Policies,
) -> Result<RowAttempt<RefusedRow>> {
    let row = &row_cs.rows[0];
    let table = row_cs.tables[row.table].name.clone();
    let policy = policy_of(policies, &table);
    let synced = SyncTable::load(conn, &table)?;
    let values = match (&synced, policy) {
        (Some(t), Some(_)) => Some(decode_key(&row.pk, t.pk.len())?),
        _ => None,
    };
    let key = show_key(&row.pk);
    let refuse = |sqlstate: &str, message: String| RefusedRow {
        table: table.clone(),
        key: key.clone(),
        sqlstate: Sqlstate::from(sqlstate),
        message,
    };
    // Whether the write policy admits the row as it is now (None: no policy, or no
    // such row).
    let admitted = || -> Result<Option<bool>> {
        let (Some(t), Some(expr), Some(k)) = (&synced, policy, &values) else { return Ok(None) };
        row_allowed(conn, t, k, expr)
    };
    conn.execute_batch("SAVEPOINT cloudsync_row")?;
    let before = crate::ffi::unresolved_foreign_keys(conn)?;
    let outcome = if admitted()? == Some(false) {
        Err(refuse(
            Sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "row ({key}) of table \"{table}\" may not be changed by this user (row-level security: write policy)"
            ),
        ))
    } else {
        match apply_with(conn, state, row_cs, Values::Exact) {
            Ok(_) if admitted()? == Some(false) => Err(refuse(
                Sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("new row violates row-level security (write policy) for table \"{table}\""),
            )),
            Ok(_) if crate::ffi::unresolved_foreign_keys(conn)? && !before => Err(refuse(
                Sqlstate::FOREIGN_KEY,
                format!(
                    "FOREIGN KEY constraint failed: row ({key}) of table \"{table}\" refers to a row that does not \
                     exist, or a row that still exists refers to it"
                ),
            )),
            Ok(report) => Ok(report.applied),
            Err(e) => match sqlstate_of(&e) {
                Some(sqlstate) => Err(refuse(sqlstate.as_str(), e.to_string())),
                None => {
                    let _ = conn.execute_batch("ROLLBACK TO cloudsync_row; RELEASE cloudsync_row");
                    return Err(e);
                }
            },
        }
    };
    Ok(match outcome {
        Ok(n) => {
            conn.execute_batch("RELEASE cloudsync_row")?;
            RowAttempt::Applied(n)
        }
        Err(refused) => {
            conn.execute_batch("ROLLBACK TO cloudsync_row; RELEASE cloudsync_row")?;
            let retry = refused.sqlstate.is(Sqlstate::FOREIGN_KEY);
            RowAttempt::Refused { refusal: refused, retry }
        }
    })
}

/// Creates what the guard emitted, statement by statement, then enables sync on the new
/// tables.
fn provision_in(
    conn: &Connection,
    emitted: &[cloudsync_ddl::guard::Emitted],
    algos: &BTreeMap<String, String>,
    flags: &BTreeMap<String, i64>,
) -> Result<Provisioning> {
    let mut created = Vec::new();
    let mut statements = Vec::new();
    for e in emitted {
        let before = table_names(conn)?;
        let synced = match &e.alters {
            Some(table) => SyncTable::load(conn, table)?.map(|t| t.name),
            None => None,
        };
        if let Some(t) = &synced {
            crate::lifecycle::begin_alter(conn, t)?;
        }
        // One statement, built by the guard: `execute` refuses anything after it.
        conn.execute(&e.sql, [])?;
        if let Some(t) = &synced {
            crate::lifecycle::commit_alter(conn, t)?;
        }
        created.extend(table_names(conn)?.into_iter().filter(|t| !before.contains(t)));
        statements.push(e.sql.clone());
    }
    if let Some(unknown) = algos.keys().chain(flags.keys()).find(|t| !created.iter().any(|c| c.eq_ignore_ascii_case(t)))
    {
        return Err(Error::Invalid(format!(
            "algo or flags given for table '{unknown}', which this SQL does not create"
        )));
    }
    let mut tables = Vec::new();
    for table in created {
        let algo = algos
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(&table))
            .map_or_else(|| "cls".to_string(), |(_, a)| a.clone());
        let flag = flags.iter().find(|(t, _)| t.eq_ignore_ascii_case(&table)).map_or(0, |(_, f)| *f);
        crate::lifecycle::init(conn, &table, Some(&algo), flag)?;
        tables.push(Provisioned { table, algo });
    }
    Ok(Provisioning { statements, tables, notes: Vec::new(), schema_version: 0 })
}

/// The database's tables with their columns, as `ddl::guard::schema_against` reads
/// them (cloudsync's own tables left out).
pub(crate) fn existing_tables(conn: &Connection) -> Result<cloudsync_ddl::Existing> {
    let mut out = cloudsync_ddl::Existing::new();
    for name in table_names(conn)? {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("sqlite_")
            || lower.starts_with("cloudsync_")
            || lower.ends_with("_cloudsync")
            || lower.ends_with("_cloudsync_log")
        {
            continue;
        }
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1, 'main')")?;
        let columns = stmt.query_map([&name], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        out.insert(name, columns);
    }
    Ok(out)
}

fn table_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_constraints_are_named_like_postgresql_ones() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL CHECK (n >= 0), u TEXT UNIQUE,
                             p INTEGER REFERENCES p(id)) STRICT;
             INSERT INTO t VALUES ('a', 1, 'x', NULL);",
        )
        .unwrap();
        for (sql, want) in [
            ("INSERT INTO t VALUES ('b', -1, NULL, NULL)", "23514"),
            ("INSERT INTO t VALUES ('b', NULL, NULL, NULL)", "23502"),
            ("INSERT INTO t VALUES ('a', 1, NULL, NULL)", "23505"),
            ("INSERT INTO t VALUES ('b', 1, 'x', NULL)", "23505"),
            ("INSERT INTO t VALUES ('b', 1, NULL, 7)", "23503"),
            ("INSERT INTO t VALUES ('b', 'one', NULL, NULL)", "22000"),
        ] {
            let e = Error::from(conn.execute(sql, []).unwrap_err());
            assert_eq!(sqlstate_of(&e).map(|s| s.to_string()).as_deref(), Some(want), "{sql}: {e}");
        }
        let other = Error::from(conn.execute("SELECT * FROM nowhere", []).unwrap_err());
        assert_eq!(sqlstate_of(&other), None);
    }
}
