//! The control plane: what the service knows of tenants and their resources, on
//! SQLite or PostgreSQL, one file per resource — [`tenants`], [`databases`], API
//! [`keys`], [`identity`] (JWT settings and verification), [`devices`] (accounting,
//! blocking, usage), the apply [`jobs`] queue, dashboard [`sessions`] and the
//! operator's [`overview`] — each adding its own `impl ControlPlane` block. The types
//! are `crate::model`'s; this module holds only their storage.
//!
//! Two engines, one behaviour: a SQLite file in the data directory (the embedded
//! default) or a PostgreSQL database (`--control-plane-url postgres://…`, for several
//! nodes). Both go through sqlx's `Any` driver; every query is written once, in SQL
//! both engines accept (numbered parameters, integer flags, no engine-specific
//! functions), and each engine has its own migrations, run by sqlx's `Migrator` from
//! one table that pairs them by version (a version cannot exist for one engine only).

pub mod bindings;
mod databases;
pub mod devices;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod overview;
pub mod quotas;
pub mod sessions;
mod tenants;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

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
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "management",
        include_str!("../../migrations/sqlite/0002_management.sql"),
        include_str!("../../migrations/postgres/0002_management.sql"),
    ),
    (
        3,
        "dashboard",
        include_str!("../../migrations/sqlite/0003_dashboard.sql"),
        include_str!("../../migrations/postgres/0003_dashboard.sql"),
    ),
    (
        4,
        "postgres backends",
        include_str!("../../migrations/sqlite/0004_postgres_backends.sql"),
        include_str!("../../migrations/postgres/0004_postgres_backends.sql"),
    ),
    (
        5,
        "bound devices",
        include_str!("../../migrations/sqlite/0005_bound_devices.sql"),
        include_str!("../../migrations/postgres/0005_bound_devices.sql"),
    ),
    (
        6,
        "tenant quotas",
        include_str!("../../migrations/sqlite/0006_tenant_quotas.sql"),
        include_str!("../../migrations/postgres/0006_tenant_quotas.sql"),
    ),
    (
        7,
        "receive failures",
        include_str!("../../migrations/sqlite/0007_receive_failures.sql"),
        include_str!("../../migrations/postgres/0007_receive_failures.sql"),
    ),
    (
        8,
        "schema version",
        include_str!("../../migrations/sqlite/0008_schema_version.sql"),
        include_str!("../../migrations/postgres/0008_schema_version.sql"),
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
}
