//! The control-plane store: tenants, databases, API keys and devices.
//!
//! Two engines, one behaviour: a SQLite file in the data directory (the embedded
//! default) or a PostgreSQL database (`--control-plane-url postgres://…`, for several
//! nodes). Both go through sqlx's `Any` driver; every query is written once, in SQL
//! both engines accept (numbered parameters, integer flags, no engine-specific
//! functions), and each engine has its own migrations.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};

use crate::ids::{now_ms, ApiKeyId, DatabaseId, SiteHex, TenantId};
use crate::keys::{self, Scope};
use crate::{Error, Result};

/// A tenant: an operator's customer, owning databases and keys.
#[derive(Clone, Debug, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Suspended tenants cannot sync.
    pub suspended: bool,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// Where a database's central copy lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// A SQLite file managed by the service, in its data directory.
    Sqlite,
}

/// A synced database of a tenant.
#[derive(Clone, Debug, Serialize)]
pub struct Database {
    /// Id.
    pub id: DatabaseId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Backend.
    pub backend: BackendConfig,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// An API key, without its secret.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Expiry (Unix ms), if any.
    pub expires_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key grants `scope` (admin grants everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

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
}

/// Versioned migrations of each engine: `(version, description, SQLite, PostgreSQL)`.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/postgres/0001_init.sql"),
)];

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
    })
}

fn database_of(r: &AnyRow) -> Result<Database> {
    let backend: String = r.try_get("backend")?;
    Ok(Database {
        id: DatabaseId::parse(r.try_get::<&str, _>("id")?)?,
        tenant_id: TenantId::parse(r.try_get::<&str, _>("tenant_id")?)?,
        name: r.try_get("name")?,
        backend: serde_json::from_str(&backend).map_err(|e| Error::Invalid(format!("stored backend config: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_of(r: &AnyRow) -> Result<ApiKey> {
    let scopes: String = r.try_get("scopes")?;
    Ok(ApiKey {
        id: ApiKeyId::parse(r.try_get::<&str, _>("id")?)?,
        tenant_id: TenantId::parse(r.try_get::<&str, _>("tenant_id")?)?,
        name: r.try_get("name")?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
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
        Ok(ControlPlane { pool, engine })
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
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
        let t = Tenant {
            id: TenantId::generate(),
            name: valid_name("tenant", name)?,
            suspended: false,
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO tenants (id, name, suspended, created_at) VALUES ($1, $2, 0, $3)")
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(t.created_at)
            .execute(&self.pool)
            .await?;
        Ok(t)
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: &TenantId) -> Result<Tenant> {
        let row =
            sqlx::query("SELECT * FROM tenants WHERE id = $1").bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(tenant_of).transpose()?.ok_or(Error::NotFound { what: "tenant" })
    }

    /// Creates a database for a tenant.
    pub async fn create_database(&self, tenant: &TenantId, name: &str, backend: BackendConfig) -> Result<Database> {
        self.tenant(tenant).await?;
        let d = Database {
            id: DatabaseId::generate(),
            tenant_id: tenant.clone(),
            name: valid_name("database", name)?,
            backend,
            created_at: now_ms(),
        };
        let backend_json = serde_json::to_string(&d.backend).map_err(|e| Error::Invalid(e.to_string()))?;
        let res =
            sqlx::query("INSERT INTO databases (id, tenant_id, name, backend, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(d.id.as_str())
                .bind(d.tenant_id.as_str())
                .bind(&d.name)
                .bind(backend_json)
                .bind(d.created_at)
                .execute(&self.pool)
                .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::Conflict(format!("tenant already has a database named '{}'", d.name)))
            }
            other => other.map(|_| d).map_err(Error::from),
        }
    }

    /// A database by id.
    pub async fn database(&self, id: &DatabaseId) -> Result<Database> {
        let row =
            sqlx::query("SELECT * FROM databases WHERE id = $1").bind(id.as_str()).fetch_optional(&self.pool).await?;
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

    /// Creates an API key; returns the key and its secret (shown once, stored hashed).
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
    ) -> Result<(ApiKey, String)> {
        self.tenant(tenant).await?;
        if scopes.is_empty() {
            return Err(Error::Invalid("an API key needs at least one scope (admin, sync, schema)".into()));
        }
        let secret = keys::generate();
        let mut scopes = scopes.to_vec();
        scopes.dedup();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant.clone(),
            name: valid_name("API key", name)?,
            scopes,
            created_at: now_ms(),
            expires_at,
        };
        let scopes_text = key.scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(&key.name)
        .bind(keys::digest(&secret))
        .bind(scopes_text)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok((key, secret))
    }

    /// The key a secret belongs to, if it is valid (not revoked, not expired, tenant
    /// not suspended). Records its use.
    pub async fn authenticate_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        if !secret.starts_with(keys::PREFIX) {
            return Ok(None);
        }
        let now = now_ms();
        let row = sqlx::query(
            "SELECT k.* FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2) AND t.suspended = 0",
        )
        .bind(keys::digest(secret))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key_of(&row)?;
        // Recorded at most once a minute per key: a write per request would serialize
        // every device on the control-plane store.
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND coalesce(last_used_at, 0) < $1 - 60000")
            .bind(now)
            .bind(key.id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(Some(key))
    }

    /// Records that a device was seen (last-seen time kept to the nearest 30 s, so a
    /// long-polling device does not write on every request).
    pub async fn touch_device(&self, db: &DatabaseId, site: &SiteHex) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO devices (database_id, site_id, first_seen, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (database_id, site_id) DO UPDATE SET last_seen = excluded.last_seen \
             WHERE devices.last_seen < excluded.last_seen - 30000",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
