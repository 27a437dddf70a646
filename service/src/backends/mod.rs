//! Every tenant database, whatever its engine, behind one trait: [`TenantDb`]. The
//! SQLite files this service manages ([`sqlite`]: a `Replica` of the SQLite adapter,
//! blocking, run on tokio's blocking pool within a permit) and tenants' own PostgreSQL
//! databases ([`postgres`]: Postgres Sync, through SQL) answer in the same shapes — an
//! apply returns the rows applied and refused, each engine deciding refusals itself; a
//! download returns one bounded chunk.
//!
//! [`Backends::of`] is the one place the service picks an engine for a database.

pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::SiteId;
use cloudsync_protocol::{ApplyOutcome, Provisioning, TableInfo};

use crate::actor::Actor;
use crate::control::ControlPlane;
use crate::model::{BackendConfig, Database, DatabaseSettings};
use crate::Result;

/// The time budgets of the work the node does in tenant databases, where tenants'
/// own SQL runs (row policies, triggers, provisioning): past its budget a statement is
/// stopped — by the sandbox's progress handler on SQLite, by `statement_timeout` on
/// PostgreSQL — and the call fails with `time_budget_exceeded`, nothing of it kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// A call made for a request: one download chunk, provisioning, listing tables, a
    /// visibility check.
    pub request: Duration,
    /// Applying one uploaded payload.
    pub apply: Duration,
    /// A PostgreSQL session left idle inside a transaction
    /// (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction: Duration,
}

impl Budgets {
    /// Reads of metadata and policy checks: at most 10 s (and within `request`).
    pub fn quick(&self) -> Duration {
        self.request.min(Duration::from_secs(10))
    }

    /// How long an apply job may hold its worker and its lease: the apply's budget, and
    /// a minute for fetching and checking its payload and waiting for a connection.
    pub fn job(&self) -> Duration {
        self.apply.saturating_add(Duration::from_secs(60))
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            request: Duration::from_secs(60),
            apply: Duration::from_secs(300),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

/// What the service asks of a tenant database.
#[async_trait::async_trait]
pub trait TenantDb: Send + Sync {
    /// Makes a new database's central copy (SQLite), or checks the tenant's PostgreSQL
    /// database is usable (reachable, extension created, schemas exist).
    async fn create(&self) -> Result<()>;

    /// Removes the database's central copy. A PostgreSQL backend is the tenant's: its
    /// data stays; only this node's connections to it are closed.
    async fn delete(&self) -> Result<()>;

    /// Creates tables (SQLite DDL; translated for PostgreSQL) and enables sync on them,
    /// all or nothing; a dry run reports what it would do and rolls back.
    async fn provision(&self, req: SchemaRequest) -> Result<Provisioning>;

    /// The canonical name of the synced table `name`, or `NotFound`.
    async fn synced_table(&self, name: &str) -> Result<String>;

    /// The synced tables, with row counts.
    async fn tables(&self) -> Result<Vec<TableInfo>>;

    /// The synced tables' lowercase names, each with its columns' (dropped ones
    /// included): what an uploaded changeset may name
    /// ([`cloudsync_core::engine::unknown_in`]).
    async fn schema(&self) -> Result<Schema>;

    /// Applies a payload `uploader` uploaded (already checked against the hash its
    /// object key names), acting as `actor`. The engine decodes it once, refuses it
    /// whole when it holds another site's changes, and applies each row whole or
    /// reports it refused (a policy, a constraint, a value).
    async fn apply(&self, payload: Vec<u8>, uploader: SiteId, actor: &Actor) -> Result<ApplyOutcome>;

    /// The next chunk of changes after `after` that `device` did not write, as `actor`
    /// may see them.
    async fn changes(&self, after: Checkpoint, device: SiteId, max_bytes: usize, actor: &Actor) -> Result<Chunk>;

    /// Checks the row policies of `settings` against the database: they compile
    /// against their tables (SQLite); a PostgreSQL backend has none (its own row-level
    /// security decides).
    async fn check_settings(&self, settings: &DatabaseSettings) -> Result<()>;

    /// Of `keys` (a device's rows of `table`, payload-encoded), those that name no row
    /// `actor` may read — hidden and missing alike, so the answer reveals no existence:
    /// what a device flags as no longer visible (`docs/rls.md`).
    async fn invisible(&self, actor: &Actor, table: String, keys: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>>;

    /// A fingerprint of what decides which rows a device may read: the read policies
    /// (SQLite), or the row-level security and privileges of the synced tables
    /// (PostgreSQL: whether RLS is enabled, every policy's command, roles and
    /// expressions and the functions they call, table and column grants). None when
    /// nothing restricts reads. When it changes, devices download everything visible
    /// again.
    async fn visibility(&self) -> Result<Option<String>>;

    /// The synced tables as SQLite DDL, for devices that apply the server's schema
    /// changes themselves (`GET {sync_url}/schema`).
    async fn device_schema(&self) -> Result<Vec<cloudsync_protocol::sync::SchemaTable>>;

    /// The synced tables `actor` may not read at all, which its downloads leave out
    /// (PostgreSQL: no `SELECT` privilege). SQLite backends have none: their read
    /// policies filter rows.
    async fn unreadable(&self, actor: &Actor) -> Result<Vec<String>> {
        let _ = actor;
        Ok(Vec::new())
    }

    /// The database's feed position.
    async fn db_version(&self) -> Result<u64>;
}

/// A provisioning call: schema SQL and how to sync what it creates.
#[derive(Clone, Debug, Default)]
pub struct SchemaRequest {
    /// SQLite `CREATE TABLE`, `CREATE INDEX` and `ALTER TABLE … ADD COLUMN` statements.
    pub sql: String,
    /// Algorithm per new table (default `cls`).
    pub algos: BTreeMap<String, String>,
    /// `cloudsync_init` flags per new table (default 0).
    pub flags: BTreeMap<String, i64>,
    /// Constructs without a faithful PostgreSQL translation to leave out rather than
    /// refuse the schema (`docs/translate-ddl.md`). A SQLite backend translates
    /// nothing, so it refuses any.
    pub omit: Vec<cloudsync_ddl::Omit>,
    /// Report what would be run and synced, and keep nothing.
    pub dry_run: bool,
}

/// Omissions as written (`table.column:kind`, [`cloudsync_ddl::Omit`]), each checked;
/// the message of the first that does not read.
pub fn parse_omissions<'a>(
    written: impl IntoIterator<Item = &'a str>,
) -> std::result::Result<Vec<cloudsync_ddl::Omit>, String> {
    written.into_iter().map(|o| o.parse().map_err(|e: cloudsync_ddl::OmitError| e.to_string())).collect()
}

/// A database's synced tables' lowercase names, each with its columns' (dropped ones
/// included): what an uploaded changeset may name
/// ([`cloudsync_core::engine::unknown_in`]).
pub type Schema = BTreeMap<String, BTreeSet<String>>;

/// How long a node uses a database's [`Schema`] before reading it again (the node that
/// provisions forgets it at once). Schemas only grow, so a stale one at worst holds a
/// device's changes that name something just added, until its next sync.
pub const SCHEMA_REFRESH: Duration = Duration::from_secs(5);

/// The tenant databases of this node.
pub struct Backends {
    /// SQLite files in the data directory.
    pub sqlite: Arc<sqlite::SqliteBackends>,
    /// Tenants' PostgreSQL databases.
    pub postgres: postgres::PgBackends,
    control: ControlPlane,
    schemas: Mutex<HashMap<crate::ids::DatabaseId, (Instant, Arc<Schema>)>>,
}

impl Backends {
    /// The backends of this node; `control` unseals a PostgreSQL backend's URL when its
    /// pool is first made.
    pub fn new(sqlite: sqlite::SqliteBackends, postgres: postgres::PgBackends, control: ControlPlane) -> Backends {
        Backends { sqlite: Arc::new(sqlite), postgres, control, schemas: Mutex::new(HashMap::new()) }
    }

    /// What an upload to `db` may name, read at most every [`SCHEMA_REFRESH`].
    pub async fn schema(&self, db: &Database) -> Result<Arc<Schema>> {
        let lock = || self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, schema)) = lock().get(&db.id) {
            if at.elapsed() < SCHEMA_REFRESH {
                return Ok(Arc::clone(schema));
            }
        }
        let schema = Arc::new(self.of(db).schema().await?);
        let mut schemas = lock();
        // Bounded: entries past their refresh are dropped when the map grows.
        if schemas.len() >= 10_000 {
            schemas.retain(|_, (at, _)| at.elapsed() < SCHEMA_REFRESH);
        }
        schemas.insert(db.id.clone(), (Instant::now(), Arc::clone(&schema)));
        Ok(schema)
    }

    /// Forgets what this node read of `db`'s schema (it was just provisioned here).
    pub fn forget_schema(&self, db: &crate::ids::DatabaseId) {
        self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(db);
    }

    /// The database `db`, on its engine.
    pub fn of<'a>(&'a self, db: &'a Database) -> Box<dyn TenantDb + 'a> {
        match &db.backend {
            BackendConfig::Sqlite => Box::new(sqlite::SqliteDb::new(&self.sqlite, db)),
            BackendConfig::Postgres { .. } => Box::new(postgres::PgDb::new(&self.postgres, &self.control, db)),
        }
    }

    /// Blocking SQLite calls running now, and PostgreSQL connections in use.
    pub fn in_use(&self) -> usize {
        self.sqlite.in_use() + self.postgres.in_use()
    }

    /// Idle connections held by this node, over all backends.
    pub fn idle_connections(&self) -> usize {
        self.sqlite.idle_connections() + self.postgres.idle_connections()
    }
}
