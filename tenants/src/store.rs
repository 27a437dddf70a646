//! The control-plane store: tenants and databases on SQLite or PostgreSQL (the types
//! are `model`'s; keys, devices, jobs and the rest add their own `impl` blocks).
//!
//! Two engines, one behaviour: a SQLite file in the data directory (the embedded
//! default) or a PostgreSQL database (`--control-plane-url postgres://…`, for several
//! nodes). Both go through sqlx's `Any` driver; every query is written once, in SQL
//! both engines accept (numbered parameters, integer flags, no engine-specific
//! functions), and each engine has its own migrations.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};

use crate::ids::{now_ms, DatabaseId, TenantId};
use crate::model::{BackendConfig, Database, DatabaseSettings, DatabaseUpdate, Tenant};
use crate::page::{Page, PageRequest};
use crate::secrets::SecretBox;
use crate::{Error, Result};

/// Which engine holds the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The control-plane store.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub(crate) pool: AnyPool,
    engine: Engine,
    pub(crate) secrets: Option<SecretBox>,
}

/// Versioned migrations of each engine: `(version, description, SQLite, PostgreSQL)`.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "management",
        include_str!("../migrations/sqlite/0002_management.sql"),
        include_str!("../migrations/postgres/0002_management.sql"),
    ),
    (
        3,
        "dashboard",
        include_str!("../migrations/sqlite/0003_dashboard.sql"),
        include_str!("../migrations/postgres/0003_dashboard.sql"),
    ),
    (
        4,
        "postgres backends",
        include_str!("../migrations/sqlite/0004_postgres_backends.sql"),
        include_str!("../migrations/postgres/0004_postgres_backends.sql"),
    ),
];

/// The schema version this build migrates to.
pub fn latest_version() -> i64 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

fn migrator(engine: Engine) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sqlite, postgres)| {
                let sql = if engine == Engine::Sqlite { *sqlite } else { *postgres };
                Migration::new(*version, (*description).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

fn tenant_of(r: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::parse(r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        suspended: r.try_get::<i64, _>("suspended")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn database_of(r: &AnyRow) -> Result<Database> {
    let backend: String = r.try_get("backend")?;
    let settings: String = r.try_get("settings")?;
    let backend_secret: Option<Vec<u8>> = r.try_get("backend_secret")?;
    Ok(Database {
        id: DatabaseId::parse(r.try_get::<&str, _>("id")?)?,
        tenant_id: TenantId::parse(r.try_get::<&str, _>("tenant_id")?)?,
        name: r.try_get("name")?,
        backend: serde_json::from_str(&backend).map_err(|e| Error::Invalid(format!("stored backend config: {e}")))?,
        backend_secret,
        settings: serde_json::from_str(&settings).map_err(|e| Error::Invalid(format!("stored settings: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A connection URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A name for a tenant, database or key: trimmed, 1–128 characters, no control
/// characters.
pub fn valid_name(what: &str, name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("{what} name must be 1 to 128 printable characters")));
    }
    Ok(n.to_string())
}

impl ControlPlane {
    /// Opens (creating if needed) the SQLite control-plane store at `path` and applies
    /// pending migrations.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<ControlPlane> {
        Self::open(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Opens the store at `url` (`sqlite://…` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<ControlPlane> {
        let cp = Self::connect(url).await?;
        cp.migrate().await?;
        Ok(cp)
    }

    /// Opens the store at `url` without migrating.
    pub async fn connect(url: &str) -> Result<ControlPlane> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(Error::Invalid(format!(
                "control-plane URL must start with sqlite:// or postgres://, got '{}'",
                redact(url)
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL for concurrent readers; FULL so that an acknowledged upload's
                        // job survives a power loss, not only a crash.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(ControlPlane { pool, engine, secrets: None })
    }

    /// Sets the key that seals tenants' secrets at rest (identity settings with an
    /// HS256 secret need one).
    #[must_use]
    pub fn with_secrets(mut self, secrets: SecretBox) -> ControlPlane {
        self.secrets = Some(secrets);
        self
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool (for inspection in tests and tools; the store's methods are
    /// the interface).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies pending migrations (idempotent); returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.schema_version().await.unwrap_or(0);
        migrator(self.engine).run(&self.pool).await?;
        let after = self.schema_version().await?;
        Ok(usize::try_from(after - before).unwrap_or(0))
    }

    /// The highest migration version applied.
    pub async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success = true")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let now = now_ms();
        let t = Tenant {
            id: TenantId::generate(),
            name: valid_name("tenant", name)?,
            suspended: false,
            created_at: now,
            updated_at: now,
        };
        sqlx::query("INSERT INTO tenants (id, name, suspended, created_at, updated_at) VALUES ($1, $2, 0, $3, $3)")
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(t.created_at)
            .execute(&self.pool)
            .await?;
        Ok(t)
    }

    /// A tenant by id (not one being deleted).
    pub async fn tenant(&self, id: &TenantId) -> Result<Tenant> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1 AND deleting = 0")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_of).transpose()?.ok_or(Error::NotFound { what: "tenant" })
    }

    /// A page of tenants, oldest first.
    pub async fn tenants(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let rows = sqlx::query("SELECT * FROM tenants WHERE deleting = 0 AND id > $1 ORDER BY id LIMIT $2")
            .bind(page.after_text())
            .bind(page.fetch())
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(tenant_of).collect::<Result<Vec<_>>>()?;
        Ok(page.page(items, |t| t.id.to_string()))
    }

    /// Renames a tenant.
    pub async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let name = valid_name("tenant", name)?;
        sqlx::query("UPDATE tenants SET name = $1, updated_at = $2 WHERE id = $3 AND deleting = 0")
            .bind(&name)
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.tenant(id).await
    }

    /// Suspends (`true`) or resumes a tenant. A suspended tenant's keys and tokens are
    /// refused; its data stays.
    pub async fn set_suspended(&self, id: &TenantId, suspended: bool) -> Result<Tenant> {
        sqlx::query("UPDATE tenants SET suspended = $1, updated_at = $2 WHERE id = $3 AND deleting = 0")
            .bind(i64::from(suspended))
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.tenant(id).await
    }

    /// First step of deleting a tenant: hides it (it stops syncing at once) and returns
    /// its databases, whose data the caller removes before [`ControlPlane::purge_tenant`].
    /// Calling it again for a tenant already being deleted is allowed (resuming an
    /// interrupted deletion).
    pub async fn begin_tenant_deletion(&self, id: &TenantId) -> Result<Vec<Database>> {
        let n = sqlx::query("UPDATE tenants SET deleting = 1, suspended = 1, updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(Error::NotFound { what: "tenant" });
        }
        let rows = sqlx::query("SELECT * FROM databases WHERE tenant_id = $1 ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(database_of).collect()
    }

    /// Last step of deleting a tenant: removes its rows (databases, keys, identity,
    /// devices, jobs and usage go with it).
    pub async fn purge_tenant(&self, id: &TenantId) -> Result<()> {
        sqlx::query("DELETE FROM tenants WHERE id = $1 AND deleting = 1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    /// A database as [`ControlPlane::create_database`] would store it, not stored:
    /// what a backend check needs before the row exists. A PostgreSQL URL's password
    /// is split out and sealed.
    pub fn new_database(&self, tenant: &TenantId, name: &str, backend: BackendConfig) -> Result<Database> {
        let now = now_ms();
        let id = DatabaseId::generate();
        let (backend, password) = backend.without_password()?;
        let backend_secret = match password {
            None => None,
            Some(p) => Some(self.secret_box()?.seal(p.as_bytes(), id.as_str())?),
        };
        Ok(Database {
            id,
            tenant_id: tenant.clone(),
            name: valid_name("database", name)?,
            backend,
            backend_secret,
            settings: DatabaseSettings::default(),
            created_at: now,
            updated_at: now,
        })
    }

    /// Creates a database for a tenant.
    pub async fn create_database(&self, tenant: &TenantId, name: &str, backend: BackendConfig) -> Result<Database> {
        let d = self.new_database(tenant, name, backend)?;
        self.insert_database(&d).await?;
        Ok(d)
    }

    /// Stores a database made by [`ControlPlane::new_database`].
    pub async fn insert_database(&self, d: &Database) -> Result<()> {
        self.tenant(&d.tenant_id).await?;
        let backend_json = serde_json::to_string(&d.backend).map_err(|e| Error::Invalid(e.to_string()))?;
        let res = sqlx::query(
            "INSERT INTO databases (id, tenant_id, name, backend, settings, created_at, updated_at, backend_secret) \
             VALUES ($1, $2, $3, $4, '{}', $5, $5, $6)",
        )
        .bind(d.id.as_str())
        .bind(d.tenant_id.as_str())
        .bind(&d.name)
        .bind(backend_json)
        .bind(d.created_at)
        .bind(d.backend_secret.clone())
        .execute(&self.pool)
        .await;
        unique_name(res, &d.name)?;
        Ok(())
    }

    /// The full connection URL of a PostgreSQL backend (its password opened); never
    /// log it.
    pub fn backend_url(&self, d: &Database) -> Result<Option<String>> {
        let BackendConfig::Postgres { url, .. } = &d.backend else { return Ok(None) };
        let Some(sealed) = &d.backend_secret else { return Ok(Some(url.clone())) };
        let password = self.secret_box()?.open(sealed, d.id.as_str())?;
        let password = String::from_utf8(password).map_err(|_| Error::Invalid("stored backend password".into()))?;
        let mut parsed = url::Url::parse(url).map_err(|e| Error::Invalid(format!("stored backend url: {e}")))?;
        parsed.set_password(Some(&password)).map_err(|()| Error::Invalid("stored backend url".into()))?;
        Ok(Some(parsed.to_string()))
    }

    fn secret_box(&self) -> Result<&SecretBox> {
        self.secrets
            .as_ref()
            .ok_or_else(|| Error::Invalid("this node has no secrets key to seal passwords with".into()))
    }

    /// A database by id (not one of a tenant being deleted).
    pub async fn database(&self, id: &DatabaseId) -> Result<Database> {
        let row = sqlx::query(
            "SELECT d.* FROM databases d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = $1 AND t.deleting = 0",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(database_of).transpose()?.ok_or(Error::NotFound { what: "database" })
    }

    /// A tenant's database by id: `NotFound` when it belongs to another tenant, so that
    /// callers cannot probe other tenants' ids.
    pub async fn tenant_database(&self, tenant: &TenantId, id: &DatabaseId) -> Result<Database> {
        let db = self.database(id).await?;
        if db.tenant_id != *tenant {
            return Err(Error::NotFound { what: "database" });
        }
        Ok(db)
    }

    /// A page of a tenant's databases, oldest first.
    pub async fn databases(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Database>> {
        self.tenant(tenant).await?;
        let rows = sqlx::query("SELECT * FROM databases WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(tenant.as_str())
            .bind(page.after_text())
            .bind(page.fetch())
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(database_of).collect::<Result<Vec<_>>>()?;
        Ok(page.page(items, |d| d.id.to_string()))
    }

    /// Renames a database or replaces its settings.
    pub async fn update_database(
        &self,
        tenant: &TenantId,
        id: &DatabaseId,
        update: DatabaseUpdate,
    ) -> Result<Database> {
        let db = self.tenant_database(tenant, id).await?;
        let name = match &update.name {
            Some(n) => valid_name("database", n)?,
            None => db.name,
        };
        let settings = update.settings.unwrap_or(db.settings);
        settings.validate()?;
        let settings_json = serde_json::to_string(&settings).map_err(|e| Error::Invalid(e.to_string()))?;
        let res = sqlx::query("UPDATE databases SET name = $1, settings = $2, updated_at = $3 WHERE id = $4")
            .bind(&name)
            .bind(settings_json)
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&self.pool)
            .await;
        unique_name(res, &name)?;
        self.database(id).await
    }

    /// Removes a database's rows (its jobs and devices go with it; usage history stays
    /// with the tenant). The caller removes its data first.
    pub async fn delete_database_row(&self, id: &DatabaseId) -> Result<()> {
        sqlx::query("DELETE FROM databases WHERE id = $1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(())
    }
}

/// Maps a unique violation on a database name to a precise conflict.
fn unique_name(res: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>, name: &str) -> Result<()> {
    match res {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(Error::Conflict(format!("tenant already has a database named '{name}'")))
        }
        other => other.map(|_| ()).map_err(Error::from),
    }
}
