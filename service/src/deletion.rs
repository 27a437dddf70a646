//! Deleting databases and tenants with their data.
//!
//! Data goes first (payload objects, then the database file), rows last, and every
//! step is idempotent: a deletion interrupted by a crash is finished by running it
//! again, and never leaves data without the row that lets an operator find it. A tenant
//! is hidden before its data is removed, so it stops syncing at once.

use crate::backends::Backends;
use crate::control::ControlPlane;
use crate::ids::TenantId;
use crate::model::Database;
use crate::payloads::PayloadStore;
use crate::Result;

/// What a deletion removed.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    /// Databases deleted.
    pub databases: u64,
    /// Payload objects deleted.
    pub payload_objects: u64,
}

/// Deletes a database: its payload objects, its file (a PostgreSQL backend is the
/// tenant's and keeps its data), then its rows (jobs and devices with it).
pub async fn delete_database<P: PayloadStore>(
    cp: &ControlPlane,
    backends: &Backends,
    payloads: &P,
    db: &Database,
) -> Result<Deleted> {
    let objects = payloads.delete_prefix(db.id.as_str()).await?;
    backends.of(db).delete().await?;
    cp.delete_database_row(&db.id).await?;
    Ok(Deleted { databases: 1, payload_objects: objects })
}

/// Deletes a tenant and everything it owns.
pub async fn delete_tenant<P: PayloadStore>(
    cp: &ControlPlane,
    backends: &Backends,
    payloads: &P,
    tenant: &TenantId,
) -> Result<Deleted> {
    let mut total = Deleted::default();
    for db in cp.begin_tenant_deletion(tenant).await? {
        let d = delete_database(cp, backends, payloads, &db).await?;
        total.databases += d.databases;
        total.payload_objects += d.payload_objects;
    }
    cp.purge_tenant(tenant).await?;
    Ok(total)
}
