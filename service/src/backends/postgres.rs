//! Tenant databases on the tenant's own PostgreSQL (with the `cloudsync` extension):
//! a bounded connection pool per database, provisioning by translating SQLite DDL,
//! and applies and downloads under each device's identity (`docs/rls.md`).
//!
//! The service connects as the backend URL's user. That role owns the sync metadata
//! and should have `BYPASSRLS` (or be the tables' owner): it is used as-is only for
//! operator actions (provisioning, listing tables). Every device apply and download
//! runs in a transaction that sets `request.jwt.claims` and reads/writes the user's
//! tables as the device's role (`cloudsync_payload_apply_rows(…, as_role, …)`,
//! `cloudsync_payload_encode_next(…, visible_to)`), so the database's privileges and
//! row-level security decide. Which rows are refused is Postgres Sync's decision, made
//! in one call that applies each refused row's neighbours in per-row subtransactions.
//!
//! One file, over 500 lines: the PostgreSQL backend's pools, egress-checked
//! connections (the half that is not [`TenantDb`]), and its [`TenantDb`] methods, of
//! which provisioning (translating SQLite DDL against the existing tables) is the
//! longest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::{Cursor, SiteId};
use cloudsync_ddl::{self as ddl, Existing, Target};
use cloudsync_protocol::{ApplyOutcome, Provisioned, Provisioning, RefusedRow, Sqlstate, TableInfo};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use super::{Budgets, TenantDb};
use crate::actor::Actor;
use crate::control::ControlPlane;
use crate::egress::Egress;
use crate::ids::DatabaseId;
use crate::model::{check_backend_url, url_part, BackendConfig, Database, DatabaseSettings};
use crate::{Error, Result};

/// Connections per PostgreSQL backend, per node.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// How long a request waits for a connection or a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL backends this node has connected to.
pub struct PgBackends {
    pools: Mutex<HashMap<DatabaseId, PgPool>>,
    pool_size: u32,
    egress: Arc<Egress>,
    budgets: Budgets,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A tenant database's error, as the control plane reports it. Connection failures
/// are `Unreachable` (retried); the server's errors keep their SQLSTATE.
pub fn pg_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) => Error::Postgres {
            sqlstate: d.code().map(Sqlstate::new).unwrap_or_default(),
            message: d.message().to_string(),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Error::Unreachable(e.to_string()),
        _ => Error::Postgres { sqlstate: Sqlstate::default(), message: e.to_string() },
    }
}

/// How the node connects to a backend: built field by field from the tenant's URL,
/// never parsed by the driver (which would read the node's `~/.pgpass` and `PG*`
/// environment, follow `host=`/`hostaddr=` parameters and unix sockets, and read
/// certificate files named in the URL). The host is resolved through the egress
/// policy and the connection pinned to the first allowed address, so the pool's
/// later connections go where the check said (no DNS rebinding).
async fn options(egress: &Egress, url: &str, budgets: Budgets) -> Result<PgConnectOptions> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Invalid(format!("backend url: {e}")))?;
    // Stored URLs are checked again: one stored before a rule existed fails closed.
    let sslmode = check_backend_url(&parsed, false)?;
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port().unwrap_or(5432);
    let addr =
        *egress.resolve("backend url", host, port).await?.first().ok_or_else(|| Error::Unreachable(host.into()))?;
    // The connection goes to the address just checked (a later DNS answer changes
    // nothing), except with `verify-full`: the driver checks the server's certificate
    // against the host it connects by, so it must connect by the name and resolve it
    // again. A DNS answer changed in between reaches only a server holding a
    // certificate for the tenant's own host name from a trusted authority; the
    // handshake fails before any query anywhere else (`docs/security.md`).
    let target = match (sslmode, parsed.host()) {
        (sqlx::postgres::PgSslMode::VerifyFull, Some(url::Host::Domain(name))) => name.to_string(),
        _ => addr.ip().to_string(),
    };
    Ok(PgConnectOptions::new_without_pgpass()
        .host(&target)
        .port(addr.port())
        .username(&url_part(parsed.username()))
        // Always set: without it the driver would send the node's PGPASSWORD.
        .password(&parsed.password().map(url_part).unwrap_or_default())
        .database(&url_part(parsed.path().trim_start_matches('/')))
        .ssl_mode(sslmode)
        .application_name("cloudsync")
        .options([
            ("statement_timeout", format!("{}ms", budgets.request.as_millis())),
            ("idle_in_transaction_session_timeout", format!("{}ms", budgets.idle_in_transaction.as_millis())),
        ]))
}

/// Sets the device's identity for the rest of the transaction: `request.jwt.claims`
/// (and the older per-claim settings some policies read).
async fn set_identity(tx: &mut Transaction<'_, Postgres>, actor: &Actor) -> Result<()> {
    let claims = actor.claims.to_string();
    let sub = actor.user_id.clone().unwrap_or_default();
    sqlx::query(
        "SELECT set_config('request.jwt.claims', $1, true), set_config('request.jwt.claim.sub', $2, true), \
         set_config('request.jwt.claim.role', $3, true)",
    )
    .bind(claims)
    .bind(sub)
    .bind(&actor.role)
    .execute(&mut **tx)
    .await
    .map_err(pg_error)?;
    Ok(())
}

impl PgBackends {
    /// No pools yet; each backend gets up to `pool_size` connections, to hosts the
    /// `egress` policy allows.
    pub fn new(pool_size: u32, egress: Arc<Egress>) -> PgBackends {
        PgBackends {
            pools: Mutex::new(HashMap::new()),
            pool_size: pool_size.max(1),
            egress,
            budgets: Budgets::default(),
        }
    }

    /// Sessions opened from now on run within `budgets`: `statement_timeout` is the
    /// request budget (an apply raises it for its own transaction), and
    /// `idle_in_transaction_session_timeout` is set. Both are the client's settings,
    /// which outrank the role's and the database's: a tenant's `ALTER ROLE … SET
    /// statement_timeout = 0` does not lift them.
    #[must_use]
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// The database's pool, made on first use (the host resolved and pinned then): only
    /// then is the URL, with its password, unsealed (`url`).
    async fn pool(&self, db: &DatabaseId, url: impl FnOnce() -> Result<String>) -> Result<PgPool> {
        if let Some(p) = lock(&self.pools).get(db) {
            return Ok(p.clone());
        }
        let pool = PgPoolOptions::new()
            .max_connections(self.pool_size)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options(&self.egress, &url()?, self.budgets).await?);
        Ok(lock(&self.pools).entry(db.clone()).or_insert(pool).clone())
    }

    /// Closes and forgets a database's pool (deleted, or its URL changed).
    pub fn forget(&self, db: &DatabaseId) {
        if let Some(p) = lock(&self.pools).remove(db) {
            tokio::spawn(async move { p.close().await });
        }
    }

    /// Connections in use by this node (all PostgreSQL backends).
    pub fn in_use(&self) -> usize {
        lock(&self.pools).values().map(|p| usize::try_from(p.size()).unwrap_or(0).saturating_sub(p.num_idle())).sum()
    }

    /// Idle connections held by this node (all PostgreSQL backends).
    pub fn idle_connections(&self) -> usize {
        lock(&self.pools).values().map(PgPool::num_idle).sum()
    }

    /// Checks a backend before it is used: the server answers, the extension is
    /// created in the database (with how to install it if not), the schemas exist.
    pub async fn check(&self, url: &str, backend: &BackendConfig) -> Result<()> {
        let BackendConfig::Postgres { schema, tables, .. } = backend else { return Ok(()) };
        let mut conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect_with(&options(&self.egress, url, self.budgets).await?),
        )
        .await
        .map_err(|_| Error::Unreachable("no answer from the PostgreSQL server within 10 s".into()))?
        .map_err(|e| match pg_error(e) {
            Error::Postgres { message, .. } => Error::Invalid(format!("cannot connect to the backend: {message}")),
            other => other,
        })?;
        let installed: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'cloudsync'")
                .fetch_optional(&mut conn)
                .await
                .map_err(pg_error)?;
        if installed.is_none() {
            let available: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'cloudsync')")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(pg_error)?;
            return Err(Error::Invalid(if available {
                "the cloudsync extension is not created in this database: run CREATE EXTENSION cloudsync \
                 (as its owner) and create the database again"
                    .into()
            } else {
                "the cloudsync extension is not installed on this PostgreSQL server: build and install it with \
                 `cargo xtask pg install` on the server (docs/postgres.md), then CREATE EXTENSION cloudsync"
                    .into()
            }));
        }
        for s in std::iter::once(schema).chain(tables.values()) {
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(s)
                .fetch_one(&mut conn)
                .await
                .map_err(pg_error)?;
            if !exists {
                return Err(Error::Invalid(format!("schema '{s}' does not exist in the backend database")));
            }
        }
        let _ = conn.close().await;
        Ok(())
    }
}

/// One tenant PostgreSQL database ([`TenantDb`]).
pub struct PgDb<'a> {
    pg: &'a PgBackends,
    control: &'a ControlPlane,
    db: &'a Database,
}

impl<'a> PgDb<'a> {
    /// `db`, through `pg`'s pools; `control` unseals its URL when a pool is made.
    pub fn new(pg: &'a PgBackends, control: &'a ControlPlane, db: &'a Database) -> Self {
        PgDb { pg, control, db }
    }

    fn url(&self) -> Result<String> {
        self.control.backend_url(self.db)?.ok_or_else(|| Error::Invalid("not a PostgreSQL backend".into()))
    }

    async fn pool(&self) -> Result<PgPool> {
        self.pg.pool(&self.db.id, || self.url()).await
    }

    /// A download from an extension without `cloudsync_payload_encode_chunk`: every
    /// change after the checkpoint's pass base, in one payload (whole feeds, each
    /// complete, from a whole version: a checkpoint partway through a pass re-reads
    /// what it may lack, which merges make harmless).
    async fn changes_whole(&self, after: Checkpoint, device: SiteId, actor: &Actor) -> Result<Chunk> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(pg_error)?;
        set_identity(&mut tx, actor).await?;
        let base = after.base;
        let whole = if base.seq == u64::MAX { base.db_version } else { base.db_version.saturating_sub(1) };
        let since = i64::try_from(whole).map_err(|_| Error::Invalid("cursor out of range".into()))?;
        let row = sqlx::query("SELECT payload, changes, db_version FROM cloudsync_payload_encode_next($1, $2, $3)")
            .bind(since)
            .bind(device.as_bytes().to_vec())
            .bind(&actor.role)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        let upto: i64 = row.get("db_version");
        let changes: i64 = row.get("changes");
        Ok(Chunk {
            payload: row.get("payload"),
            changes: u64::try_from(changes).unwrap_or(0),
            next: Checkpoint::complete(Cursor::through(u64::try_from(upto).unwrap_or(0)).max(after.after)),
            more: false,
        })
    }
}

#[async_trait::async_trait]
impl TenantDb for PgDb<'_> {
    async fn create(&self) -> Result<()> {
        self.pg.check(&self.url()?, &self.db.backend).await
    }

    async fn delete(&self) -> Result<()> {
        self.pg.forget(&self.db.id);
        Ok(())
    }

    /// Creates tables from SQLite DDL, translated (`docs/translate-ddl.md`), and
    /// enables sync on them, in one transaction (rolled back for a dry run). Tables
    /// that exist get their new columns. Runs as the backend's own role.
    async fn provision(&self, req: super::SchemaRequest) -> Result<Provisioning> {
        let (sql, algos, flags, dry_run) = (&req.sql, &req.algos, &req.flags, req.dry_run);
        let BackendConfig::Postgres { schema, tables: per_table, .. } = &self.db.backend else {
            return Err(Error::Invalid("not a PostgreSQL backend".into()));
        };
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(pg_error)?;
        let mut schemas: Vec<String> = per_table.values().cloned().collect();
        schemas.push(schema.clone());
        let mut existing = Existing::new();
        for r in sqlx::query(
            "SELECT c.relname::text AS t, a.attname::text AS c, n.nspname::text AS s FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY c.relname, a.attnum",
        )
        .bind(&schemas)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_error)?
        {
            let (table, column, in_schema): (String, String, String) = (r.get("t"), r.get("c"), r.get("s"));
            let wanted = per_table.iter().find(|(t, _)| t.eq_ignore_ascii_case(&table)).map_or(schema, |(_, s)| s);
            if *wanted == in_schema {
                existing.entry(table).or_default().push(column);
            }
        }
        let target = Target { schema: Some(schema.clone()), tables: per_table.clone(), omit: req.omit.clone() };
        let translation = ddl::translate_into(sql, &existing, &target)?;
        if let Some(unknown) = algos
            .keys()
            .chain(flags.keys())
            .find(|t| !translation.tables.iter().any(|x| !x.existing && x.name.eq_ignore_ascii_case(t)))
        {
            return Err(Error::Invalid(format!(
                "algo or flags given for table '{unknown}', which this SQL does not create"
            )));
        }
        let mut statements = Vec::new();
        for stmt in &translation.statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|e| with_statement(pg_error(e), stmt))?;
            statements.push(stmt.clone());
        }
        // New tables, and tables that existed without being synced, get synced.
        let synced: Vec<String> =
            sqlx::query_scalar("SELECT name FROM cloudsync.tables").fetch_all(&mut *tx).await.map_err(pg_error)?;
        let mut out = Vec::new();
        let mut notes = translation.notes.clone();
        for t in
            translation.tables.iter().filter(|t| !t.existing || !synced.iter().any(|s| s.eq_ignore_ascii_case(&t.name)))
        {
            if let Some(why) = &t.unsynced {
                // Created (the application may use it centrally), never synced.
                notes.push(format!("table \"{}\" is created but not synced: {why}", t.name));
                continue;
            }
            let pick = |m: &BTreeMap<String, String>| {
                m.iter().find(|(k, _)| k.eq_ignore_ascii_case(&t.name)).map(|(_, v)| v.clone())
            };
            let algo = pick(algos).unwrap_or_else(|| "cls".into());
            let flag = flags.iter().find(|(k, _)| k.eq_ignore_ascii_case(&t.name)).map_or(0, |(_, v)| *v);
            let in_schema = pick(per_table).unwrap_or_else(|| schema.clone());
            let init = "SELECT cloudsync_init(format('%I.%I', $1::text, $2::text), $3, $4::int)";
            sqlx::query(init)
                .bind(&in_schema)
                .bind(&t.name)
                .bind(&algo)
                .bind(flag)
                .execute(&mut *tx)
                .await
                .map_err(|e| with_statement(pg_error(e), &format!("cloudsync_init of table {}", t.name)))?;
            statements.push(format!(
                "SELECT cloudsync_init('{}.{}', '{algo}', {flag})",
                ddl::ident(&in_schema),
                ddl::ident(&t.name)
            ));
            out.push(Provisioned { table: t.name.clone(), algo });
        }
        if dry_run {
            tx.rollback().await.map_err(pg_error)?;
        } else {
            tx.commit().await.map_err(pg_error)?;
        }
        Ok(Provisioning { statements, tables: out, notes, schema_version: 0 })
    }

    /// The sync name of the synced table `name` (matched case-insensitively, as
    /// SQLite devices name tables), or `NotFound`.
    async fn synced_table(&self, name: &str) -> Result<String> {
        let pool = self.pool().await?;
        let found: Option<String> = sqlx::query_scalar(
            "SELECT name FROM cloudsync.tables WHERE lower(name) = lower($1) ORDER BY name = $1 DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&pool)
        .await
        .map_err(pg_error)?;
        found.ok_or(Error::NotFound { what: "synced table" })
    }

    /// The synced tables as SQLite DDL: each column with the SQLite type its
    /// PostgreSQL type maps from (`docs/translate-ddl.md`, read backwards), the key,
    /// `NOT NULL` on key columns. Other constraints and defaults stay central (the
    /// database enforces them on every upload).
    async fn device_schema(&self) -> Result<Vec<cloudsync_protocol::sync::SchemaTable>> {
        use cloudsync_protocol::sync::{SchemaColumn, SchemaTable};
        let pool = self.pool().await?;
        let rows: Vec<(String, String, Vec<String>, String, String, String)> = sqlx::query_as(
            "SELECT t.name, t.algo, t.pk, a.attname::text, ty.typname::text, bt.typname::text \
             FROM cloudsync.tables t JOIN pg_attribute a ON a.attrelid = t.relid \
             JOIN pg_type ty ON ty.oid = a.atttypid \
             JOIN pg_type bt ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY t.name, a.attnum",
        )
        .fetch_all(&pool)
        .await
        .map_err(pg_error)?;
        // Each table with its key, its columns in order.
        let mut tables: Vec<(SchemaTable, Vec<String>)> = Vec::new();
        for (table, algo, pk, column, typname, base) in rows {
            if tables.last().is_none_or(|(t, _)| t.table != table) {
                tables.push((SchemaTable { table, algo, create: String::new(), columns: Vec::new() }, pk));
            }
            let Some((t, pk)) = tables.last_mut() else { continue };
            let decl = sqlite_type(&typname, &base);
            let definition = format!(
                "{}{}{}",
                ddl::ident(&column),
                if decl.is_empty() { String::new() } else { format!(" {decl}") },
                if pk.contains(&column) { " NOT NULL" } else { "" }
            );
            t.columns.push(SchemaColumn { name: column, definition });
        }
        Ok(tables
            .into_iter()
            .map(|(mut t, pk)| {
                let mut lines: Vec<String> = t.columns.iter().map(|c| c.definition.clone()).collect();
                lines
                    .push(format!("PRIMARY KEY ({})", pk.iter().map(|k| ddl::ident(k)).collect::<Vec<_>>().join(", ")));
                t.create = format!("CREATE TABLE {} ({})", ddl::ident(&t.table), lines.join(", "));
                t
            })
            .collect())
    }

    /// The synced tables, with their row counts (all rows: the backend's own role).
    async fn tables(&self) -> Result<Vec<TableInfo>> {
        let pool = self.pool().await?;
        let mut conn = pool.acquire().await.map_err(pg_error)?;
        let rows = sqlx::query(
            "SELECT t.name, t.algo, t.enabled, t.pk, t.relid::text AS rel, \
             coalesce((SELECT array_agg(c.name ORDER BY c.id) FROM cloudsync.columns c WHERE c.tbl = t.id AND NOT c.dropped), \
             '{}') AS columns FROM cloudsync.tables t ORDER BY t.name",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_error)?;
        let mut out = Vec::new();
        for r in rows {
            let rel: String = r.get("rel");
            // `rel` is regclass output: a quoted, schema-qualified name.
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {rel}")))
                .fetch_one(&mut *conn)
                .await
                .map_err(pg_error)?;
            out.push(TableInfo {
                table: r.get("name"),
                algo: r.get("algo"),
                enabled: r.get("enabled"),
                key: r.get("pk"),
                columns: r.get("columns"),
                rows: count,
            });
        }
        Ok(out)
    }

    async fn schema(&self) -> Result<super::Schema> {
        let pool = self.pool().await?;
        let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT lower(t.name), coalesce((SELECT array_agg(lower(c.name)) FROM cloudsync.columns c WHERE c.tbl = t.id), \
             '{}') FROM cloudsync.tables t",
        )
        .fetch_all(&pool)
        .await
        .map_err(pg_error)?;
        Ok(rows.into_iter().map(|(t, cs)| (t, cs.into_iter().collect())).collect())
    }

    async fn apply(&self, payload: Vec<u8>, uploader: SiteId, actor: &Actor) -> Result<ApplyOutcome> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(pg_error)?;
        set_identity(&mut tx, actor).await?;
        sqlx::query("SELECT set_config('statement_timeout', $1, true)")
            .bind(format!("{}ms", self.pg.budgets.apply.as_millis()))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        // Postgres Sync decodes the payload once, checks its sites, and applies it whole
        // or, when a row is refused, row by row in subtransactions.
        let (applied, refused): (i64, String) =
            sqlx::query_as("SELECT applied, refused::text FROM cloudsync_payload_apply_rows($1, $2, $3)")
                .bind(&payload)
                .bind(&actor.role)
                .bind(uploader.as_bytes().to_vec())
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        let refused: Vec<RefusedRow> = serde_json::from_str(&refused).map_err(|e| Error::Postgres {
            sqlstate: Sqlstate::default(),
            message: format!("cloudsync_payload_apply_rows answered refused rows that do not read back: {e}"),
        })?;
        Ok(ApplyOutcome { applied: u64::try_from(applied).unwrap_or(0), refused })
    }

    async fn changes(&self, after: Checkpoint, device: SiteId, max_bytes: usize, actor: &Actor) -> Result<Chunk> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(pg_error)?;
        set_identity(&mut tx, actor).await?;
        // Postgres Sync reads the feed page by page from the checkpoint and stops at
        // about `max_bytes`, at a row boundary: node memory is one chunk per download
        // whatever the table holds (`cloudsync_core::feed` for the checkpoint's rules).
        let row =
            sqlx::query("SELECT payload, changes, next, more FROM cloudsync_payload_encode_chunk($1, $2, $3, $4)")
                .bind(after.to_string())
                .bind(device.as_bytes().to_vec())
                .bind(&actor.role)
                .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
                .fetch_one(&mut *tx)
                .await;
        let row = match row {
            Ok(row) => row,
            // An extension from before bounded chunks: the whole feed at once.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some(Sqlstate::UNDEFINED_FUNCTION) => {
                drop(tx);
                return self.changes_whole(after, device, actor).await;
            }
            Err(e) => return Err(pg_error(e)),
        };
        tx.commit().await.map_err(pg_error)?;
        let next: String = row.get("next");
        let next = Checkpoint::parse(&next).ok_or_else(|| Error::Postgres {
            sqlstate: Sqlstate::default(),
            message: format!("cloudsync_payload_encode_chunk answered a checkpoint that does not read back: {next}"),
        })?;
        let changes: i64 = row.get("changes");
        Ok(Chunk {
            payload: row.get("payload"),
            changes: u64::try_from(changes).unwrap_or(0),
            next,
            more: row.get("more"),
        })
    }

    async fn check_settings(&self, settings: &DatabaseSettings) -> Result<()> {
        if settings.read_policies().is_empty() && settings.write_policies().is_empty() {
            return Ok(());
        }
        Err(Error::Invalid(
            "row policies are for SQLite backends; on PostgreSQL, use the database's row-level security \
             (CREATE POLICY), which devices' changes are applied under"
                .into(),
        ))
    }

    /// A fingerprint of what decides which rows of the synced tables a role reads (see
    /// [`TenantDb::visibility`]): whether row-level security is on (and forced), the
    /// policies, the table and column privileges, and the definition of each function
    /// a policy calls. Always present: switching the last table's RLS off, or a
    /// `GRANT`, must start devices over as much as switching it on does.
    async fn visibility(&self) -> Result<Option<String>> {
        let pool = self.pool().await?;
        let fingerprint: String = sqlx::query_scalar(
            "SELECT md5(coalesce(string_agg(concat_ws('|', t.name, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text, \
               (SELECT string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attnum) FROM pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), \
               (SELECT string_agg(concat_ws(':', p.polname, p.polcmd, p.polpermissive, p.polroles::text, \
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), \
                  (SELECT string_agg(md5(CASE WHEN f.prokind IN ('f', 'p') THEN pg_get_functiondef(f.oid) \
                     ELSE f.oid::text END), ',' ORDER BY f.oid) \
                   FROM pg_depend d JOIN pg_proc f ON f.oid = d.refobjid \
                   WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid AND d.refclassid = 'pg_proc'::regclass)), \
                 ';' ORDER BY p.polname) \
                FROM pg_policy p WHERE p.polrelid = c.oid)), ',' ORDER BY t.name), '')) \
             FROM cloudsync.tables t JOIN pg_class c ON c.oid = t.relid",
        )
        .fetch_one(&pool)
        .await
        .map_err(pg_error)?;
        Ok(Some(fingerprint))
    }

    async fn unreadable(&self, actor: &Actor) -> Result<Vec<String>> {
        let pool = self.pool().await?;
        let names =
            sqlx::query_scalar("SELECT cloudsync_unreadable_tables($1)").bind(&actor.role).fetch_one(&pool).await;
        match names {
            Ok(names) => Ok(names),
            // An extension from before this function reads every table or fails.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some(Sqlstate::UNDEFINED_FUNCTION) => {
                Ok(Vec::new())
            }
            Err(e) => Err(pg_error(e)),
        }
    }

    async fn invisible(&self, actor: &Actor, table: String, keys: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(pg_error)?;
        set_identity(&mut tx, actor).await?;
        let hidden: Vec<Vec<u8>> = sqlx::query_scalar("SELECT cloudsync_invisible_keys($1, $2, $3)")
            .bind(table)
            .bind(keys)
            .bind(&actor.role)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match pg_error(e) {
                Error::Postgres { sqlstate, .. }
                    if sqlstate.is(Sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE)
                        || sqlstate.is(Sqlstate::UNDEFINED_TABLE) =>
                {
                    Error::NotFound { what: "synced table" }
                }
                other => other,
            })?;
        tx.commit().await.map_err(pg_error)?;
        Ok(hidden)
    }

    /// The database's feed position.
    async fn db_version(&self) -> Result<u64> {
        let pool = self.pool().await?;
        let v: i64 = sqlx::query_scalar("SELECT cloudsync_db_version()").fetch_one(&pool).await.map_err(pg_error)?;
        Ok(u64::try_from(v).unwrap_or(0))
    }
}

fn with_statement(e: Error, stmt: &str) -> Error {
    match e {
        Error::Postgres { sqlstate, message } => Error::Invalid(format!(
            "PostgreSQL refused the provisioning ({sqlstate}: {message}) at: {}",
            stmt.chars().take(300).collect::<String>()
        )),
        other => other,
    }
}

/// The SQLite type a device declares for a PostgreSQL column type (`typname`, its base
/// type `base` for a domain): the translation read backwards; empty (no type) for
/// `cloudsync_any`.
fn sqlite_type(typname: &str, base: &str) -> &'static str {
    if typname == ddl::ANY_DOMAIN {
        return "";
    }
    match base {
        "int2" | "int4" | "int8" => "INTEGER",
        "float4" | "float8" => "REAL",
        "bytea" => "BLOB",
        "bool" => "BOOLEAN",
        "numeric" => "NUMERIC",
        _ => "TEXT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_pinned_to_the_checked_address_and_built_from_the_url_alone() {
        let open = Egress::parse("127.0.0.1").unwrap();
        let o =
            options(&open, "postgres://u:p%40ss@localhost:5433/db?sslmode=disable", Budgets::default()).await.unwrap();
        assert_eq!(o.get_host(), "127.0.0.1", "the name is resolved once and the address pinned");
        assert_eq!(o.get_port(), 5433);
        assert_eq!(o.get_username(), "u");
        assert_eq!(o.get_database(), Some("db"));
        assert!(o.get_socket().is_none());
        assert!(matches!(o.get_ssl_mode(), sqlx::postgres::PgSslMode::Disable));
        // verify-full checks the certificate against the name, so connects by it.
        let named =
            options(&open, "postgres://u:p@localhost:5433/db?sslmode=verify-full", Budgets::default()).await.unwrap();
        assert_eq!(named.get_host(), "localhost");
        for url in ["postgres://u:p@localhost:5433/db", "postgres://u:p@localhost:5433/db?sslmode=verify-full"] {
            let refused = options(&Egress::default(), url, Budgets::default()).await.unwrap_err();
            assert!(matches!(refused, Error::Egress(crate::egress::EgressError::Refused { .. })), "{refused}");
        }
        // A URL stored before the parameter rules fails closed.
        for url in [
            "postgres://u:p@localhost/db?host=/run/postgresql",
            "postgres://u:p@localhost/db?hostaddr=10.0.0.1",
            "postgres://u:p@localhost/db?sslkey=/etc/ssl/private/node.key",
            "postgres://u@%2Frun%2Fpostgresql/db",
        ] {
            assert!(matches!(options(&open, url, Budgets::default()).await, Err(Error::Invalid(_))), "{url}");
        }
    }

    /// Against the PostgreSQL server the tests run on (`CLOUDSYNC_TEST_PG_URL`).
    #[tokio::test]
    async fn sessions_run_within_the_nodes_budgets_whatever_the_role_says() {
        let admin = std::env::var("CLOUDSYNC_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut c = PgConnection::connect(&admin).await.expect("PostgreSQL for the tests (cargo xtask test starts it)");
        // A role that asks for no limits at all, as a tenant could set on its own server.
        let role = format!("cs_budget_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET statement_timeout = 0; \
             ALTER ROLE {role} SET idle_in_transaction_session_timeout = 0"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(None).unwrap();
        url.set_query(Some("sslmode=disable"));
        let budgets = Budgets {
            request: Duration::from_millis(300),
            apply: Duration::from_secs(5),
            idle_in_transaction: Duration::from_millis(400),
        };
        let open = Egress::parse("127.0.0.1").unwrap();
        let options = options(&open, url.as_str(), budgets).await.unwrap();
        let mut s = PgConnection::connect_with(&options).await.unwrap();
        let shown: (String, String) = sqlx::query_as(
            "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')",
        )
        .fetch_one(&mut s)
        .await
        .unwrap();
        assert_eq!(shown, ("300ms".to_string(), "400ms".to_string()));
        let e = pg_error(sqlx::query("SELECT pg_sleep(5)").execute(&mut s).await.unwrap_err());
        assert!(matches!(&e, Error::Postgres { sqlstate, .. } if sqlstate.over_budget()), "{e}");
        assert_eq!((e.code(), e.retryable()), ("time_budget_exceeded", false));
        // A session left inside a transaction is closed by the server.
        let mut s = PgConnection::connect_with(&options).await.unwrap();
        sqlx::query("BEGIN").execute(&mut s).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(sqlx::query("SELECT 1").execute(&mut s).await.is_err(), "the idle transaction outlived its budget");
        drop(s);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}"))).execute(&mut c).await.unwrap();
    }
}
