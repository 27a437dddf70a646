//! Tenant databases on SQLite: one file per database under the data directory, each
//! a [`Replica`] (the SQLite adapter's facade), used through a small connection pool.
//! What a database applies, refuses and sends is the adapter's; what is here is the
//! service's part: files, the pool, the sandbox, the time budgets and the acting
//! identity (`auth_*()`).
//!
//! Everything here blocks; async callers run it on tokio's blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::SiteId;
use cloudsync_protocol::{ApplyOutcome, Provisioning, TableInfo};
use cloudsync_sqlite::{Policies, Replica};
use rusqlite::Connection;

use super::{Budgets, TenantDb};
use crate::actor::Actor;
use crate::fair::FairPermits;
use crate::ids::DatabaseId;
use crate::model::{Database, DatabaseSettings};
use crate::{Error, Result};

/// Idle connections kept per database. Callers bound their concurrency (the API holds
/// a permit per blocking database call), so this many are enough to never reopen.
pub const IDLE_PER_DATABASE: usize = 16;

/// The size a database file may reach unless the node is told otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// The size the write-ahead log is truncated back to after a checkpoint
/// (`journal_size_limit`): a large transaction grows it, and the space is given back.
pub const JOURNAL_BYTES: u64 = 64 << 20;

/// Free space under which a full database is taken for a full disk rather than its
/// quota (SQLite answers `SQLITE_FULL` for both).
const FULL_DISK_MARGIN: u64 = 64 << 20;

struct Conn {
    replica: Replica,
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
    /// Bounds the blocking calls running at once, over all databases, shared fairly
    /// between tenants (`fair`).
    permits: Arc<FairPermits>,
    /// The size each database file may reach (`max_page_count`); 0: none.
    max_bytes: u64,
    /// How long its calls may run (the sandbox interrupts them past it).
    budgets: Budgets,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data half-updated (they only
    // guard a map and a stack), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteBackends {
    /// Databases live in `root/<database id>.sqlite`; at most `permits` blocking calls
    /// run at once.
    pub fn new(root: PathBuf, permits: usize) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|source| Error::Io { path: root.display().to_string(), source })?;
        Ok(SqliteBackends {
            root,
            handles: Mutex::new(HashMap::new()),
            permits: FairPermits::new(permits),
            max_bytes: DEFAULT_MAX_BYTES,
            budgets: Budgets::default(),
        })
    }

    /// Calls run within `budgets`.
    #[must_use]
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// Each database file may grow to `max_bytes` (0: no quota); a write past it fails
    /// with [`Error::StorageQuota`], and nothing of it is kept.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Runs `f` on tokio's blocking pool, within a permit taken for `tenant`.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        tenant: &str,
        f: impl FnOnce(&SqliteBackends) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire(tenant).await;
        let sqlite = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&sqlite)).await.map_err(|e| Error::Task(e.to_string()))?
    }

    /// Blocking calls running now.
    pub fn in_use(&self) -> usize {
        self.permits.in_use()
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
        // The quota, set before the sandbox's authorizer, which refuses these PRAGMAs
        // afterwards: nothing on the connection can raise it.
        conn.pragma_update(None, "journal_size_limit", i64::try_from(JOURNAL_BYTES).unwrap_or(i64::MAX))?;
        if self.max_bytes > 0 {
            let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (self.max_bytes / u64::try_from(page_size).unwrap_or(4096).max(512)).max(1);
            conn.pragma_update(None, "max_page_count", i64::try_from(pages).unwrap_or(i64::MAX))?;
        }
        let replica = Replica::new(conn)?;
        let actor = Arc::new(Mutex::new(None));
        register_auth(replica.connection(), &actor)?;
        let budget = crate::sandbox::enter(replica.connection())?;
        Ok(Conn { replica, budget, actor })
    }

    /// Runs `f` on a pooled connection to `db` with `auth_*()` answering for `actor`.
    fn with_actor<T>(
        &self,
        db: &DatabaseId,
        limit: Duration,
        actor: &Actor,
        f: impl FnOnce(&Replica) -> Result<T>,
    ) -> Result<T> {
        self.with_conn(db, false, limit, |c| {
            *lock(&c.actor) = Some(actor.clone());
            let result = f(&c.replica);
            *lock(&c.actor) = None;
            result
        })
    }

    /// Runs `f` on a pooled connection to `db`.
    fn with<T>(&self, db: &DatabaseId, limit: Duration, f: impl FnOnce(&Replica) -> Result<T>) -> Result<T> {
        self.with_conn(db, false, limit, |c| f(&c.replica))
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
        let result = conn.budget.within(limit, || f(&conn)).map_err(|e| self.limit_reached(&conn, limit, e));
        // A connection left inside a transaction by an error is not reused.
        if conn.replica.connection().is_autocommit() {
            let mut idle = lock(&handle.idle);
            if idle.len() < IDLE_PER_DATABASE {
                idle.push(conn);
            }
        }
        result
    }

    /// `e` as the limit it reached, if it reached one: [`Error::TimeBudget`] when the
    /// sandbox interrupted it past `limit`; [`Error::StorageQuota`] when it is SQLite's
    /// `SQLITE_FULL` and the disk still has room. SQLite answers the same for a file at
    /// its `max_page_count` and for a full disk, and a full disk leaves nothing free: a
    /// rollback does not shrink the write-ahead log the refused writes went to.
    fn limit_reached(&self, conn: &Conn, limit: Duration, e: Error) -> Error {
        let code = match &e {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            | Error::Backend(cloudsync_sqlite::Error::Sqlite(rusqlite::Error::SqliteFailure(f, _))) => f.code,
            _ => return e,
        };
        if code == rusqlite::ErrorCode::OperationInterrupted {
            return Error::TimeBudget(limit);
        }
        if code != rusqlite::ErrorCode::DiskFull || self.max_bytes == 0 {
            return e;
        }
        let free = rustix::fs::statvfs(&self.root).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).unwrap_or(0);
        if free < FULL_DISK_MARGIN {
            return e;
        }
        let c = conn.replica.connection();
        let pragma = |name| {
            c.pragma_query_value(None, name, |r| r.get::<_, i64>(0)).map_or(0, |n| u64::try_from(n).unwrap_or(0))
        };
        let used = pragma("page_count").saturating_mul(pragma("page_size"));
        Error::StorageQuota { limit_bytes: self.max_bytes, used_bytes: used }
    }

    /// Bytes `db`'s files take on disk (the database and its write-ahead log); 0 when
    /// there are none (a PostgreSQL backend's database, one not created yet).
    pub fn stored_bytes(&self, db: &DatabaseId) -> u64 {
        let main = self.path(db);
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", main.display())).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Creates the database file.
    pub fn create(&self, db: &DatabaseId) -> Result<()> {
        self.with_conn(db, true, self.budgets.quick(), |_| Ok(()))
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
    /// tables, all or nothing ([`Replica::provision`]).
    pub fn provision(
        &self,
        db: &DatabaseId,
        sql: &str,
        algos: &BTreeMap<String, String>,
        flags: &BTreeMap<String, i64>,
        dry_run: bool,
    ) -> Result<Provisioning> {
        self.with(db, self.budgets.request, |r| Ok(r.provision(sql, algos, flags, dry_run)?))
    }

    /// The canonical name of the synced table `name`, or `NotFound`.
    pub fn synced_table(&self, db: &DatabaseId, name: &str) -> Result<String> {
        self.with(db, self.budgets.quick(), |r| r.synced_table(name)?.ok_or(Error::NotFound { what: "synced table" }))
    }

    /// What an uploaded changeset may name in `db` ([`Replica::schema`]).
    pub fn schema(&self, db: &DatabaseId) -> Result<super::Schema> {
        self.with(db, self.budgets.quick(), |r| Ok(r.schema()?))
    }

    /// The synced tables of `db` as SQLite DDL ([`Replica::device_schema`]).
    pub fn device_schema(&self, db: &DatabaseId) -> Result<Vec<cloudsync_protocol::sync::SchemaTable>> {
        self.with(db, self.budgets.request, |r| Ok(r.device_schema()?))
    }

    /// The synced tables of `db`, by name.
    pub fn tables(&self, db: &DatabaseId) -> Result<Vec<TableInfo>> {
        self.with(db, self.budgets.request, |r| Ok(r.tables()?))
    }

    /// Connections to tenant databases held idle by this node (all databases).
    pub fn idle_connections(&self) -> usize {
        let handles: Vec<Arc<Handle>> = lock(&self.handles).values().cloned().collect();
        handles.iter().map(|h| lock(&h.idle).len()).sum()
    }

    /// Applies a payload `uploader` uploaded, as `actor`, under the write `policies`
    /// ([`Replica::apply`]).
    pub fn apply(
        &self,
        db: &DatabaseId,
        payload: &[u8],
        uploader: SiteId,
        actor: &Actor,
        policies: &Policies,
    ) -> Result<ApplyOutcome> {
        self.with_actor(db, self.budgets.apply, actor, |r| Ok(r.apply(payload, uploader, policies)?))
    }

    /// Of `keys` of `table`, those that name no row `actor` may read (`policy`: the
    /// table's read policy; without one every live row is readable).
    pub fn invisible(
        &self,
        db: &DatabaseId,
        actor: &Actor,
        table: &str,
        keys: &[Vec<u8>],
        policy: Option<&str>,
    ) -> Result<Vec<Vec<u8>>> {
        self.with_actor(db, self.budgets.quick(), actor, |r| {
            r.invisible(table, keys, policy)?.ok_or(Error::NotFound { what: "synced table" })
        })
    }

    /// Checks a row policy compiles against `table` (its columns, the `auth_*()`
    /// functions), as a single expression.
    pub fn check_policy(&self, db: &DatabaseId, table: &str, expr: &str) -> Result<()> {
        self.with(db, self.budgets.quick(), |r| Ok(r.check_policy(table, expr)?))
    }

    /// The changes after `after` that `device` did not write, as one bounded chunk,
    /// of the rows `actor` may read (`policies`: table → read policy).
    pub fn changes(
        &self,
        db: &DatabaseId,
        after: Checkpoint,
        device: SiteId,
        max_bytes: usize,
        actor: &Actor,
        policies: &Policies,
    ) -> Result<Chunk> {
        self.with_actor(db, self.budgets.request, actor, |r| Ok(r.chunk(after, device, max_bytes, policies)?))
    }

    /// The central database's feed position.
    pub fn db_version(&self, db: &DatabaseId) -> Result<u64> {
        self.with(db, self.budgets.quick(), |r| Ok(r.db_version()?))
    }
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

/// One SQLite tenant database ([`TenantDb`]).
pub struct SqliteDb<'a> {
    sqlite: &'a Arc<SqliteBackends>,
    db: &'a Database,
}

impl<'a> SqliteDb<'a> {
    /// `db`, a file of `sqlite`.
    pub fn new(sqlite: &'a Arc<SqliteBackends>, db: &'a Database) -> Self {
        SqliteDb { sqlite, db }
    }

    /// Runs `f` on the blocking pool within a permit of this database's tenant.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteBackends) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.sqlite.blocking(self.db.tenant_id.as_str(), f).await
    }
}

#[async_trait::async_trait]
impl TenantDb for SqliteDb<'_> {
    async fn create(&self) -> Result<()> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.create(&id)).await
    }

    async fn delete(&self) -> Result<()> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.delete(&id)).await
    }

    async fn provision(&self, req: super::SchemaRequest) -> Result<Provisioning> {
        if let Some(o) = req.omit.first() {
            return Err(Error::Invalid(format!(
                "omit \"{o}\": a SQLite backend runs the schema as SQLite declares it, so nothing needs leaving out \
                 (omit is for PostgreSQL backends)"
            )));
        }
        let id = self.db.id.clone();
        self.blocking(move |s| s.provision(&id, &req.sql, &req.algos, &req.flags, req.dry_run)).await
    }

    async fn synced_table(&self, name: &str) -> Result<String> {
        let (id, name) = (self.db.id.clone(), name.to_string());
        self.blocking(move |s| s.synced_table(&id, &name)).await
    }

    async fn tables(&self) -> Result<Vec<TableInfo>> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.tables(&id)).await
    }

    async fn schema(&self) -> Result<super::Schema> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.schema(&id)).await
    }

    async fn device_schema(&self) -> Result<Vec<cloudsync_protocol::sync::SchemaTable>> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.device_schema(&id)).await
    }

    async fn apply(&self, payload: Vec<u8>, uploader: SiteId, actor: &Actor) -> Result<ApplyOutcome> {
        let (id, actor, policies) = (self.db.id.clone(), actor.clone(), self.db.settings.write_policies());
        self.blocking(move |s| s.apply(&id, &payload, uploader, &actor, &policies)).await
    }

    async fn changes(&self, after: Checkpoint, device: SiteId, max_bytes: usize, actor: &Actor) -> Result<Chunk> {
        let (id, actor, policies) = (self.db.id.clone(), actor.clone(), self.db.settings.read_policies());
        self.blocking(move |s| s.changes(&id, after, device, max_bytes, &actor, &policies)).await
    }

    async fn check_settings(&self, settings: &DatabaseSettings) -> Result<()> {
        let policies: Vec<(String, String)> =
            settings.read_policies().into_iter().chain(settings.write_policies()).collect();
        if policies.is_empty() {
            return Ok(());
        }
        let id = self.db.id.clone();
        self.blocking(move |s| {
            for (table, expr) in &policies {
                s.check_policy(&id, table, expr)?;
            }
            Ok(())
        })
        .await
    }

    async fn invisible(&self, actor: &Actor, table: String, keys: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        let policy =
            self.db.settings.read_policies().into_iter().find(|(t, _)| t.eq_ignore_ascii_case(&table)).map(|(_, p)| p);
        let (id, actor) = (self.db.id.clone(), actor.clone());
        self.blocking(move |s| s.invisible(&id, &actor, &table, &keys, policy.as_deref())).await
    }

    async fn visibility(&self) -> Result<Option<String>> {
        use sha2::Digest;
        let policies = self.db.settings.read_policies();
        if policies.is_empty() {
            return Ok(None);
        }
        let text = serde_json::to_string(&policies).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Some(hex::encode(sha2::Sha256::digest(text.as_bytes()))))
    }

    async fn db_version(&self) -> Result<u64> {
        let id = self.db.id.clone();
        self.blocking(move |s| s.db_version(&id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_at_its_quota_refuses_a_write_whole_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let quota = 256 << 10;
        let sqlite = SqliteBackends::new(dir.path().to_path_buf(), 2).unwrap().with_max_bytes(quota);
        let db = DatabaseId::generate();
        sqlite.create(&db).unwrap();
        let run = |sql: &str, value: Vec<u8>| {
            sqlite.with(&db, Duration::from_secs(10), |r| Ok(r.connection().execute(sql, [value])?))
        };
        sqlite
            .with(&db, Duration::from_secs(10), |r| Ok(r.connection().execute_batch("CREATE TABLE t (b BLOB)")?))
            .unwrap();
        run("INSERT INTO t VALUES (?1)", vec![1; 64 << 10]).unwrap();
        let e = run("INSERT INTO t VALUES (?1)", vec![2; 512 << 10]).unwrap_err();
        assert!(matches!(e, Error::StorageQuota { limit_bytes, .. } if limit_bytes == quota), "{e}");
        assert_eq!((e.code(), e.retryable()), ("storage_quota_exceeded", false));
        // Nothing of the refused write was kept; what fits still does.
        let rows = || {
            sqlite.with(&db, Duration::from_secs(10), |r| {
                Ok(r.connection().query_row("SELECT count(*), sum(length(b)) FROM t", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?)
            })
        };
        assert_eq!(rows().unwrap(), (1, 64 << 10));
        run("INSERT INTO t VALUES (?1)", vec![3; 16 << 10]).unwrap();
        assert_eq!(rows().unwrap(), (2, 80 << 10));
        let size = std::fs::metadata(sqlite.path(&db)).unwrap().len();
        assert!(size <= quota, "the file is {size} bytes, over its quota of {quota}");
        // The sandbox keeps anything on the connection from lifting the quota.
        let lifted = sqlite.with(&db, Duration::from_secs(10), |r| {
            Ok(r.connection().execute_batch("PRAGMA max_page_count = 4294967294")?)
        });
        assert!(lifted.is_err());
        assert!(run("INSERT INTO t VALUES (?1)", vec![2; 512 << 10]).is_err());
    }

    #[test]
    fn a_call_past_its_budget_fails_with_the_budget_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteBackends::new(dir.path().to_path_buf(), 2).unwrap();
        let db = DatabaseId::generate();
        sqlite.create(&db).unwrap();
        let e = sqlite
            .with(&db, Duration::from_millis(100), |r| {
                Ok(r.connection().query_row(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .unwrap_err();
        assert!(matches!(e, Error::TimeBudget(d) if d == Duration::from_millis(100)), "{e}");
        assert_eq!((e.code(), e.retryable()), ("time_budget_exceeded", false));
    }
}
