//! Operations that span the control plane and the tenant databases, written once for
//! every front end (the REST API and the dashboard call these, not each other).

use cloudsync_protocol::Provisioning;

use crate::backends::{Backends, SchemaRequest};
use crate::control::quotas::{Quota, Quotas};
use crate::control::ControlPlane;
use crate::ids::TenantId;
use crate::model::{BackendConfig, Database};
use crate::{Error, Result};

/// Creates a database. A PostgreSQL backend is checked first (reachable, extension
/// created) and only then recorded; a SQLite backend is recorded first and then its
/// central copy made, so a file never exists without the row that names it (deletion
/// removes data before rows, and finds it through the row). Refused past the tenant's
/// database quota (`quotas`: the node's defaults).
pub async fn create_database(
    control: &ControlPlane,
    backends: &Backends,
    tenant: &TenantId,
    name: &str,
    backend: BackendConfig,
    quotas: Quotas,
) -> Result<Database> {
    let db = control.new_database(tenant, name, backend)?;
    if matches!(db.backend, BackendConfig::Postgres { .. }) {
        backends.of(&db).create().await?;
        control.insert_database(&db).await?;
        within_database_quota(control, &db, quotas).await?;
    } else {
        control.insert_database(&db).await?;
        within_database_quota(control, &db, quotas).await?;
        backends.of(&db).create().await?;
    }
    tracing::info!(database = %db.id, tenant = %db.tenant_id, backend = db.backend.kind(), "database created");
    Ok(db)
}

/// Keeps a database just inserted only within its tenant's quota: claimed, counted,
/// given back when over (concurrent creations never overrun it).
async fn within_database_quota(control: &ControlPlane, db: &Database, defaults: Quotas) -> Result<()> {
    let limit = control.quotas(&db.tenant_id, defaults).await?.databases;
    if limit == 0 || control.database_count(&db.tenant_id).await? <= i64::from(limit) {
        return Ok(());
    }
    control.delete_database_row(&db.id).await?;
    Err(Error::OverQuota { quota: Quota::Databases, limit })
}

/// Provisions schema SQL in a database: guarded and re-emitted (SQLite) or translated
/// (PostgreSQL), then sync enabled on the new tables with `algo` and `flags`; a dry run
/// reports the statements and tables without keeping anything.
/// A call that runs statements counts one more schema version.
pub async fn provision(
    control: &ControlPlane,
    backends: &Backends,
    db: &Database,
    req: SchemaRequest,
) -> Result<Provisioning> {
    let dry_run = req.dry_run;
    let mut done = backends.of(db).provision(req).await?;
    done.schema_version = db.schema_version;
    if !dry_run && !done.statements.is_empty() {
        done.schema_version = control.bump_schema_version(&db.id).await?;
    }
    if !dry_run {
        backends.forget_schema(&db.id);
        tracing::info!(database = %db.id, tables = done.tables.len(), "tables provisioned");
    }
    Ok(done)
}
