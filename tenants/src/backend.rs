//! Tenant databases on SQLite: one file per database under the data directory, each
//! with the cloudsync engine registered, used through a small connection pool.
//!
//! Everything here blocks; async callers run it on tokio's blocking pool.
//!
//! One file, over 500 lines: the SQLite backend's pool, provisioning and apply with
//! write policies; the apply with policies moves into the SQLite adapter when it is
//! sealed behind the facade both backends share (issue "one home for each concept").

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsync_core::feed::Checkpoint;
use cloudsync_core::value::decode_key;
use cloudsync_core::Changeset;
use cloudsync_core::SiteId;
use cloudsync_sqlite::apply::Values;
use cloudsync_sqlite::changes::{FeedQuery, SiteFilter};
use cloudsync_sqlite::payload::Chunk;
use cloudsync_sqlite::state::ConnState;
use rusqlite::Connection;

use crate::actor::{show_key, Actor, Applied, RefusedRow};
use crate::ids::DatabaseId;
use crate::sqlstate::Sqlstate;
use crate::{Error, Result};

/// Idle connections kept per database. Callers bound their concurrency (the API holds
/// a permit per blocking database call), so this many are enough to never reopen.
pub const IDLE_PER_DATABASE: usize = 16;

/// Time budgets of the operations on a tenant database (`sandbox::Budget`): a
/// statement still running past its operation's budget is interrupted.
pub struct Budgets;

impl Budgets {
    /// Reads of metadata, policy checks, creating the file.
    pub const QUICK: Duration = Duration::from_secs(10);
    /// Provisioning (DDL, enabling sync), listing tables with their row counts, one
    /// download chunk.
    pub const STANDARD: Duration = Duration::from_secs(60);
    /// Applying one uploaded payload (up to the upload limit).
    pub const APPLY: Duration = Duration::from_secs(300);
}

struct Conn {
    conn: Connection,
    state: Arc<ConnState>,
    /// The deadline its statements run under (`sandbox`).
    budget: crate::sandbox::Budget,
    /// Who `auth_uid()`, `auth_role()` and `auth_claim()` answer for (row policies).
    actor: Arc<Mutex<Option<Actor>>>,
}

#[derive(Default)]
struct Handle {
    idle: Mutex<Vec<Conn>>,
}

/// The SQLite tenant databases of this node.
pub struct SqliteBackends {
    root: PathBuf,
    handles: Mutex<HashMap<DatabaseId, Arc<Handle>>>,
}

/// A table created by provisioning.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Provisioned {
    /// Table name.
    pub table: String,
    /// Its algorithm.
    pub algo: String,
}

/// What provisioning did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Provisioning {
    /// The statements run in the database, in order, as the database received them.
    pub statements: Vec<String>,
    /// The tables created, with the algorithm sync was enabled with.
    pub tables: Vec<Provisioned>,
}

/// A synced table of a central database.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// Table name.
    pub table: String,
    /// Sync algorithm.
    pub algo: String,
    /// Whether writes are tracked.
    pub enabled: bool,
    /// Primary-key columns, in key order.
    pub key: Vec<String>,
    /// Synced non-key columns.
    pub columns: Vec<String>,
    /// Rows in the table.
    pub rows: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data half-updated (they only
    // guard a map and a stack), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteBackends {
    /// Databases live in `root/<database id>.sqlite`.
    pub fn new(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|source| Error::Io { path: root.display().to_string(), source })?;
        Ok(SqliteBackends { root, handles: Mutex::new(HashMap::new()) })
    }

    fn path(&self, db: &DatabaseId) -> PathBuf {
        self.root.join(format!("{db}.sqlite"))
    }

    fn open(&self, db: &DatabaseId, create: bool) -> Result<Conn> {
        let path = self.path(db);
        // Only `create` makes a file: a request or job racing a deletion must not bring
        // the database back empty.
        if !create && !path.exists() {
            return Err(Error::NotFound { what: "database" });
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // FULL: a job is marked done only after its apply committed, and must not be
        // undone by a power loss.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let state = cloudsync_sqlite::register_engine(&conn)?;
        let actor = Arc::new(Mutex::new(None));
        register_auth(&conn, &actor)?;
        let budget = crate::sandbox::enter(&conn)?;
        Ok(Conn { conn, state, budget, actor })
    }

    /// Runs `f` on a pooled connection to `db` with `auth_*()` answering for `actor`.
    fn with_actor<T>(
        &self,
        db: &DatabaseId,
        limit: Duration,
        actor: &Actor,
        f: impl FnOnce(&Connection, &ConnState) -> Result<T>,
    ) -> Result<T> {
        self.with_conn(db, false, limit, |c| {
            *lock(&c.actor) = Some(actor.clone());
            let result = f(&c.conn, &c.state);
            *lock(&c.actor) = None;
            result
        })
    }

    /// Runs `f` on a pooled connection to `db`.
    fn with<T>(
        &self,
        db: &DatabaseId,
        limit: Duration,
        f: impl FnOnce(&Connection, &ConnState) -> Result<T>,
    ) -> Result<T> {
        self.with_conn(db, false, limit, |c| f(&c.conn, &c.state))
    }

    /// Runs `f` on a pooled connection to `db`, its statements interrupted after `limit`.
    fn with_conn<T>(
        &self,
        db: &DatabaseId,
        create: bool,
        limit: Duration,
        f: impl FnOnce(&Conn) -> Result<T>,
    ) -> Result<T> {
        let handle = Arc::clone(lock(&self.handles).entry(db.clone()).or_default());
        let conn = lock(&handle.idle).pop();
        let conn = match conn {
            Some(c) => c,
            None => self.open(db, create)?,
        };
        let result = conn
            .budget
            .within(limit, || cloudsync_sqlite::meta::cache::scope(&conn.state.cache, &conn.conn, || f(&conn)));
        // A connection left inside a transaction by an error is not reused.
        if conn.conn.is_autocommit() {
            let mut idle = lock(&handle.idle);
            if idle.len() < IDLE_PER_DATABASE {
                idle.push(conn);
            }
        }
        result
    }

    /// Creates the database file.
    pub fn create(&self, db: &DatabaseId) -> Result<()> {
        self.with_conn(db, true, Budgets::QUICK, |_| Ok(()))
    }

    /// Deletes the database file (and its WAL). Idempotent. Connections in use finish
    /// their work on the unlinked file; none is reused.
    pub fn delete(&self, db: &DatabaseId) -> Result<()> {
        if let Some(handle) = lock(&self.handles).remove(db) {
            lock(&handle.idle).clear();
        }
        let main = self.path(db);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = PathBuf::from(format!("{}{suffix}", main.display()));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io { path: path.display().to_string(), source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs `CREATE TABLE` / `CREATE INDEX` statements and enables sync on the new
    /// tables (`algos` maps table names to algorithms; default `cls`), in one
    /// transaction: all of it or nothing. Any other kind of statement is refused. A
    /// `dry_run` does all of it, reports what it did, and rolls back.
    pub fn provision(
        &self,
        db: &DatabaseId,
        sql: &str,
        algos: &BTreeMap<String, String>,
        flags: &BTreeMap<String, i64>,
        dry_run: bool,
    ) -> Result<Provisioning> {
        self.with(db, Budgets::STANDARD, |conn, _| {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = provision_in_txn(conn, sql, algos, flags);
            match &result {
                Ok(_) if !dry_run => conn.execute_batch("COMMIT")?,
                _ => {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            // A rolled-back init leaves nothing behind but cached metadata.
            if dry_run {
                cloudsync_sqlite::meta::cache::invalidate();
            }
            result
        })
    }

    /// The canonical name of the synced table `name`, or `NotFound`.
    pub fn synced_table(&self, db: &DatabaseId, name: &str) -> Result<String> {
        self.with(db, Budgets::QUICK, |conn, _| {
            cloudsync_sqlite::meta::table::SyncTable::load(conn, name)?
                .map(|t| t.name)
                .ok_or(Error::NotFound { what: "synced table" })
        })
    }

    /// The synced tables of `db`, by name.
    pub fn tables(&self, db: &DatabaseId) -> Result<Vec<TableInfo>> {
        self.with(db, Budgets::STANDARD, |conn, _| {
            let mut out = Vec::new();
            for name in cloudsync_sqlite::meta::table::SyncTable::names(conn)? {
                let t = cloudsync_sqlite::meta::table::SyncTable::require(conn, &name)?;
                let rows: i64 = conn.query_row(
                    &format!("SELECT count(*) FROM {}", cloudsync_sqlite::sql::ident(&t.name)),
                    [],
                    |r| r.get(0),
                )?;
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

    /// Connections to tenant databases held idle by this node (all databases).
    pub fn idle_connections(&self) -> usize {
        let handles: Vec<Arc<Handle>> = lock(&self.handles).values().cloned().collect();
        handles.iter().map(|h| lock(&h.idle).len()).sum()
    }

    /// Applies a decoded payload as `actor` (the caller has checked its sites).
    ///
    /// A row its table's write policy refuses (`policies`: table → SQL expression,
    /// checked on the row before and after the merge), or that breaks a constraint, is
    /// left out and reported, the others applied, each whole (`docs/rls.md`).
    pub fn apply(
        &self,
        db: &DatabaseId,
        cs: &Changeset,
        actor: &Actor,
        policies: &[(String, String)],
    ) -> Result<Applied> {
        let policed = cs.tables.iter().any(|t| policy_of(policies, &t.name).is_some());
        self.with_actor(db, Budgets::APPLY, actor, |conn, state| {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| {
                if !policed {
                    match cloudsync_sqlite::apply::apply_with(conn, state, cs, Values::Exact) {
                        Ok(report) => {
                            let applied = i64::try_from(report.applied).unwrap_or(i64::MAX);
                            return Ok(Applied { applied, refused: Vec::new() });
                        }
                        Err(e) if refusal_of(&e).is_none() => return Err(e.into()),
                        // A constraint refused a row: find which, row by row.
                        Err(_) => {}
                    }
                }
                apply_rows(conn, state, cs, policies)
            })();
            // A commit can still fail (a deferred foreign key): roll back then too.
            let committed = result.and_then(|v| conn.execute_batch("COMMIT").map(|()| v).map_err(Error::from));
            if committed.is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            committed
        })
    }

    /// Of `keys` of `table`, those whose row exists but `actor` may not read
    /// (`policy`: the table's read policy; without one every row is readable).
    pub fn invisible(
        &self,
        db: &DatabaseId,
        actor: &Actor,
        table: &str,
        keys: &[Vec<u8>],
        policy: Option<&str>,
    ) -> Result<Vec<Vec<u8>>> {
        self.with_actor(db, Budgets::QUICK, actor, |conn, _| {
            let Some(t) = cloudsync_sqlite::meta::table::SyncTable::load(conn, table)? else {
                return Err(Error::NotFound { what: "synced table" });
            };
            let Some(expr) = policy else { return Ok(Vec::new()) };
            let mut hidden = Vec::new();
            for pk in keys {
                let Ok(key) = decode_key(pk, t.pk.len()) else { continue };
                if row_allowed(conn, &t, &key, expr)? == Some(false) {
                    hidden.push(pk.clone());
                }
            }
            Ok(hidden)
        })
    }

    /// Checks a row policy compiles against `table` (its columns, the `auth_*()`
    /// functions), as a single expression.
    pub fn check_policy(&self, db: &DatabaseId, table: &str, expr: &str) -> Result<()> {
        self.with(db, Budgets::QUICK, |conn, _| {
            let t = cloudsync_sqlite::meta::table::SyncTable::load(conn, table)?
                .ok_or_else(|| Error::Invalid(format!("table '{table}' is not a synced table of this database")))?;
            conn.prepare(&format!("SELECT 1 FROM {} WHERE ({expr})", t.quoted()))
                .map(|_| ())
                .map_err(|e| Error::Invalid(format!("invalid policy for table '{table}': {e}")))
        })
    }

    /// The changes after `after` that `device` did not write, as one bounded chunk,
    /// of the rows `actor` may read (`policies`: table → read policy; see
    /// [`FeedQuery::visible`]).
    pub fn changes(
        &self,
        db: &DatabaseId,
        after: Checkpoint,
        device: SiteId,
        max_bytes: usize,
        actor: &Actor,
        policies: &[(String, String)],
    ) -> Result<Chunk> {
        self.with_actor(db, Budgets::STANDARD, actor, |conn, _| {
            let query = FeedQuery {
                from: after,
                sites: SiteFilter::Except(device),
                visible: policies.to_vec(),
                ..FeedQuery::default()
            };
            Ok(cloudsync_sqlite::payload::encode_chunk(conn, query, max_bytes)?)
        })
    }

    /// The central database's feed position.
    pub fn db_version(&self, db: &DatabaseId) -> Result<u64> {
        self.with(db, Budgets::QUICK, |conn, _| Ok(cloudsync_sqlite::meta::db_version(conn)?))
    }
}

fn policy_of<'a>(policies: &'a [(String, String)], table: &str) -> Option<&'a str> {
    policies.iter().find(|(t, _)| t.eq_ignore_ascii_case(table)).map(|(_, e)| e.as_str())
}

/// The SQLSTATE of an error that refuses one row (a constraint), if it is one.
fn refusal_of(e: &cloudsync_sqlite::Error) -> Option<Sqlstate> {
    match e {
        cloudsync_sqlite::Error::Sqlite(e) => Sqlstate::of_sqlite(e),
        _ => None,
    }
}

/// Whether the row `key` of `t` satisfies `expr`: None when there is no such row.
fn row_allowed(
    conn: &Connection,
    t: &cloudsync_sqlite::meta::table::SyncTable,
    key: &[cloudsync_core::Value],
    expr: &str,
) -> Result<Option<bool>> {
    let cond =
        t.pk.iter()
            .enumerate()
            .map(|(i, k)| format!("{} = ?{}", cloudsync_sqlite::sql::ident(&k.name), i + 1))
            .collect::<Vec<_>>();
    let sql = format!("SELECT coalesce(({expr}), 0) FROM {} WHERE {}", t.quoted(), cond.join(" AND "));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(key.iter().map(cloudsync_sqlite::sql::Bind)))?;
    Ok(match rows.next()? {
        None => None,
        Some(r) => Some(r.get::<_, i64>(0)? != 0),
    })
}

/// Applies `cs` one row at a time, each in a savepoint, checking write policies
/// before and after the merge; refused rows are rolled back and reported.
fn apply_rows(conn: &Connection, state: &ConnState, cs: &Changeset, policies: &[(String, String)]) -> Result<Applied> {
    let mut done = Applied::default();
    for row_cs in cs.single_rows() {
        let row = &row_cs.rows[0];
        let table = row_cs.tables[row.table].name.clone();
        let key = show_key(&row.pk);
        let policy = policy_of(policies, &table);
        let synced = cloudsync_sqlite::meta::table::SyncTable::load(conn, &table)?;
        let values = match (&synced, policy) {
            (Some(t), Some(_)) => Some(decode_key(&row.pk, t.pk.len())?),
            _ => None,
        };
        let refuse = |sqlstate: Sqlstate, message: String| RefusedRow {
            table: table.clone(),
            key: key.clone(),
            sqlstate,
            message,
        };
        conn.execute_batch("SAVEPOINT cloudsync_row")?;
        let check = |when: &str| -> Result<Option<RefusedRow>> {
            let (Some(t), Some(expr), Some(k)) = (&synced, policy, &values) else { return Ok(None) };
            Ok(match (row_allowed(conn, t, k, expr)?, when) {
                (Some(false), "before") => Some(refuse(
                    Sqlstate::INSUFFICIENT_PRIVILEGE.into(),
                    format!("row ({key}) of table \"{table}\" may not be changed by this user (row-level security: write policy)"),
                )),
                (Some(false), _) => Some(refuse(
                    Sqlstate::INSUFFICIENT_PRIVILEGE.into(),
                    format!("new row violates row-level security (write policy) for table \"{table}\""),
                )),
                _ => None,
            })
        };
        let outcome = match check("before")? {
            Some(r) => Err(r),
            None => match cloudsync_sqlite::apply::apply_with(conn, state, &row_cs, Values::Exact) {
                Ok(report) => match check("after")? {
                    Some(r) => Err(r),
                    None => Ok(report.applied),
                },
                Err(e) => match refusal_of(&e) {
                    Some(sqlstate) => Err(refuse(sqlstate, e.to_string())),
                    None => {
                        let _ = conn.execute_batch("ROLLBACK TO cloudsync_row; RELEASE cloudsync_row");
                        return Err(e.into());
                    }
                },
            },
        };
        match outcome {
            Ok(n) => {
                conn.execute_batch("RELEASE cloudsync_row")?;
                done.applied += i64::try_from(n).unwrap_or(i64::MAX);
            }
            Err(refused) => {
                conn.execute_batch("ROLLBACK TO cloudsync_row; RELEASE cloudsync_row")?;
                done.refused.push(refused);
            }
        }
    }
    Ok(done)
}

/// `auth_uid()`, `auth_role()`, `auth_claim('a.b')`: the acting device's identity, for
/// row policies (NULL outside a device's apply or download).
fn register_auth(conn: &Connection, actor: &Arc<Mutex<Option<Actor>>>) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::Value as V;
    let flags = FunctionFlags::SQLITE_UTF8;
    let a = Arc::clone(actor);
    conn.create_scalar_function("auth_uid", 0, flags, move |_| Ok(lock(&a).as_ref().and_then(|x| x.user_id.clone())))?;
    let a = Arc::clone(actor);
    conn.create_scalar_function("auth_role", 0, flags, move |_| Ok(lock(&a).as_ref().map(|x| x.role.clone())))?;
    let a = Arc::clone(actor);
    conn.create_scalar_function("auth_claim", 1, flags, move |ctx| {
        let path: String = ctx.get(0)?;
        let guard = lock(&a);
        let Some(actor) = guard.as_ref() else { return Ok(V::Null) };
        Ok(match crate::actor::claim(&actor.claims, &path) {
            None | Some(serde_json::Value::Null) => V::Null,
            Some(serde_json::Value::String(s)) => V::Text(s.clone()),
            Some(serde_json::Value::Bool(b)) => V::Integer(i64::from(*b)),
            Some(serde_json::Value::Number(n)) => {
                n.as_i64().map_or_else(|| V::Real(n.as_f64().unwrap_or(0.0)), V::Integer)
            }
            Some(other) => V::Text(other.to_string()),
        })
    })?;
    Ok(())
}

/// Creates what `sql` declares, running only statements emitted by the guard from the
/// parsed tree (`ddl::guard`), never the submitted text, then enables sync on the new
/// tables.
fn provision_in_txn(
    conn: &Connection,
    sql: &str,
    algos: &BTreeMap<String, String>,
    flags: &BTreeMap<String, i64>,
) -> Result<Provisioning> {
    let emitted = cloudsync_core::ddl::guard::schema(sql)?;
    let mut created = Vec::new();
    let mut statements = Vec::new();
    for e in &emitted {
        let before = table_names(conn)?;
        // One statement, built here: `execute` refuses anything after it.
        conn.execute(&e.sql, [])?;
        created.extend(table_names(conn)?.into_iter().filter(|t| !before.contains(t)));
        statements.push(e.sql.clone());
    }
    if created.is_empty() {
        return Err(Error::Invalid("the SQL creates no table".into()));
    }
    if let Some(unknown) = algos.keys().chain(flags.keys()).find(|t| !created.iter().any(|c| c.eq_ignore_ascii_case(t)))
    {
        return Err(Error::Invalid(format!(
            "algo or flags given for table '{unknown}', which this SQL does not create"
        )));
    }
    let mut out = Vec::new();
    for table in created {
        let algo = algos
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(&table))
            .map_or_else(|| "cls".to_string(), |(_, a)| a.clone());
        let flag = flags.iter().find(|(t, _)| t.eq_ignore_ascii_case(&table)).map_or(0, |(_, f)| *f);
        cloudsync_sqlite::lifecycle::init(conn, &table, Some(&algo), flag)?;
        out.push(Provisioned { table, algo });
    }
    Ok(Provisioning { statements, tables: out })
}

fn table_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}
