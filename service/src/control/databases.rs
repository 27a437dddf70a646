//! Databases: the rows that name a tenant's central databases, their backends (a
//! PostgreSQL URL's password sealed apart) and settings.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{valid_name, ControlPlane};
use crate::ids::{now_ms, DatabaseId, TenantId};
use crate::model::{BackendConfig, Database, DatabaseSettings, DatabaseUpdate};
use crate::page::{Page, PageRequest};
use crate::secrets::SecretBox;
use crate::{Error, Result};

pub(super) fn database_of(r: &AnyRow) -> Result<Database> {
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
        schema_version: r.try_get("schema_version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl ControlPlane {
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
            schema_version: 0,
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

    /// Counts one more change of `id`'s schema; its new version.
    pub async fn bump_schema_version(&self, id: &DatabaseId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "UPDATE databases SET schema_version = schema_version + 1, updated_at = $1 WHERE id = $2 \
             RETURNING schema_version",
        )
        .bind(now_ms())
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?)
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
