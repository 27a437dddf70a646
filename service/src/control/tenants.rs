//! Tenants: creation, listing, renaming, suspension and the two-step deletion (the
//! caller removes each database's data between the steps).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::databases::database_of;
use super::{valid_name, ControlPlane};
use crate::ids::{now_ms, TenantId};
use crate::model::{Database, Tenant};
use crate::page::{Page, PageRequest};
use crate::{Error, Result};

fn tenant_of(r: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::parse(r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        suspended: r.try_get::<i64, _>("suspended")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl ControlPlane {
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
}
