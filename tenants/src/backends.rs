//! Every tenant database, whatever its backend: one async interface over the SQLite
//! files this service manages ([`crate::backend::SqliteBackends`], blocking, run on
//! tokio's blocking pool within a permit) and tenants' own PostgreSQL databases
//! ([`crate::postgres::PgBackends`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudsync_core::feed::Checkpoint;
use cloudsync_core::SiteId;
use cloudsync_sqlite::payload::Chunk;
use tokio::sync::Semaphore;

use crate::actor::Actor;
use crate::actor::Applied;
use crate::backend::{Provisioning, SqliteBackends, TableInfo};
use crate::model::{BackendConfig, Database};
use crate::postgres::PgBackends;
use crate::store::ControlPlane;
use crate::{Error, Result};

/// The tenant databases of this node.
pub struct Backends {
    /// SQLite files in the data directory.
    pub sqlite: Arc<SqliteBackends>,
    /// Tenants' PostgreSQL databases.
    pub postgres: PgBackends,
    control: ControlPlane,
    permits: Semaphore,
    permit_count: usize,
}

impl Backends {
    /// `permits` bounds concurrent blocking SQLite calls.
    pub fn new(sqlite: SqliteBackends, postgres: PgBackends, control: ControlPlane, permits: usize) -> Backends {
        let permit_count = permits.max(1);
        Backends { sqlite: Arc::new(sqlite), postgres, control, permits: Semaphore::new(permit_count), permit_count }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteBackends) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(|e| Error::Task(e.to_string()))?;
        let sqlite = Arc::clone(&self.sqlite);
        tokio::task::spawn_blocking(move || f(&sqlite)).await.map_err(|e| Error::Task(e.to_string()))?
    }

    fn url(&self, db: &Database) -> Result<String> {
        self.control.backend_url(db)?.ok_or_else(|| Error::Invalid("not a PostgreSQL backend".into()))
    }

    /// Makes a new database's central copy (SQLite), or checks the tenant's
    /// PostgreSQL database is usable (reachable, extension created, schemas exist).
    pub async fn create(&self, db: &Database) -> Result<()> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| s.create(&id)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.check(&self.url(db)?, &db.backend).await,
        }
    }

    /// Removes a database's central copy. A PostgreSQL backend is the tenant's: its
    /// data stays; only this node's connections to it are closed.
    pub async fn delete(&self, db: &Database) -> Result<()> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| s.delete(&id)).await
            }
            BackendConfig::Postgres { .. } => {
                self.postgres.forget(&db.id);
                Ok(())
            }
        }
    }

    /// Creates tables (SQLite DDL; translated for PostgreSQL) and enables sync on them.
    pub async fn provision(
        &self,
        db: &Database,
        sql: String,
        algos: BTreeMap<String, String>,
        flags: BTreeMap<String, i64>,
        dry_run: bool,
    ) -> Result<Provisioning> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| s.provision(&id, &sql, &algos, &flags, dry_run)).await
            }
            BackendConfig::Postgres { .. } => {
                self.postgres.provision(&db.id, &self.url(db)?, &db.backend, &sql, &algos, &flags, dry_run).await
            }
        }
    }

    /// The canonical name of the synced table `name`, or `NotFound`.
    pub async fn synced_table(&self, db: &Database, name: &str) -> Result<String> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let (id, name) = (db.id.clone(), name.to_string());
                self.blocking(move |s| s.synced_table(&id, &name)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.synced_table(&db.id, &self.url(db)?, name).await,
        }
    }

    /// The synced tables, with row counts.
    pub async fn tables(&self, db: &Database) -> Result<Vec<TableInfo>> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| s.tables(&id)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.tables(&db.id, &self.url(db)?).await,
        }
    }

    /// Applies a payload uploaded by `site` and stored at `object_key`, acting as
    /// `actor`. Every change in it must have been written by `site`: a device cannot
    /// speak for another. The payload is checked against the hash its key names (the
    /// object its upload validated, not another put at the same key since), decoded and
    /// its sites checked once, here, for either backend.
    pub async fn apply(
        &self,
        db: &Database,
        object_key: &str,
        payload: Vec<u8>,
        site: SiteId,
        actor: &Actor,
    ) -> Result<Applied> {
        // Hashing and decoding are CPU work: off the async runtime.
        let key = object_key.to_string();
        let (cs, payload) = tokio::task::spawn_blocking(move || {
            crate::payloads::verify_object(&key, &payload)?;
            cloudsync_core::payload::decode(&payload).map(|cs| (cs, payload)).map_err(Error::from)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        if let Some(other) = cs.sites.iter().find(|s| **s != site) {
            return Err(Error::Invalid(format!(
                "payload contains changes attributed to site {other}, but was uploaded by {site}"
            )));
        }
        match &db.backend {
            BackendConfig::Sqlite => {
                let (id, actor, policies) = (db.id.clone(), actor.clone(), db.settings.write_policies());
                self.blocking(move |s| s.apply(&id, &cs, &actor, &policies)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.apply(&db.id, &self.url(db)?, &payload, &cs, actor).await,
        }
    }

    /// The next chunk of changes after `after` that `device` did not write, as
    /// `actor` may see them.
    pub async fn changes(
        &self,
        db: &Database,
        after: Checkpoint,
        device: SiteId,
        max_bytes: usize,
        actor: &Actor,
    ) -> Result<Chunk> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let (id, actor, policies) = (db.id.clone(), actor.clone(), db.settings.read_policies());
                self.blocking(move |s| s.changes(&id, after, device, max_bytes, &actor, &policies)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.changes(&db.id, &self.url(db)?, after, device, actor).await,
        }
    }

    /// Checks the row policies of `settings` against `db`: they compile against
    /// their tables (SQLite); a PostgreSQL backend has none (its own row-level
    /// security decides).
    pub async fn check_settings(&self, db: &Database, settings: &crate::model::DatabaseSettings) -> Result<()> {
        let policies: Vec<(String, String)> =
            settings.read_policies().into_iter().chain(settings.write_policies()).collect();
        if policies.is_empty() {
            return Ok(());
        }
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| {
                    for (table, expr) in &policies {
                        s.check_policy(&id, table, expr)?;
                    }
                    Ok(())
                })
                .await
            }
            BackendConfig::Postgres { .. } => Err(Error::Invalid(
                "row policies are for SQLite backends; on PostgreSQL, use the database's row-level security \
                 (CREATE POLICY), which devices' changes are applied under"
                    .into(),
            )),
        }
    }

    /// Of `keys` (a device's rows of `table`, payload-encoded), those that exist
    /// centrally but `actor` may not read: what a device flags as no longer visible
    /// (`docs/rls.md`).
    pub async fn invisible(
        &self,
        db: &Database,
        actor: &Actor,
        table: String,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let policy = db
                    .settings
                    .read_policies()
                    .into_iter()
                    .find(|(t, _)| t.eq_ignore_ascii_case(&table))
                    .map(|(_, p)| p);
                let (id, actor) = (db.id.clone(), actor.clone());
                self.blocking(move |s| s.invisible(&id, &actor, &table, &keys, policy.as_deref())).await
            }
            BackendConfig::Postgres { .. } => {
                self.postgres.invisible(&db.id, &self.url(db)?, actor, &table, &keys).await
            }
        }
    }

    /// A fingerprint of what decides which rows a device may read: the read policies
    /// (SQLite), or the row-level security of the synced tables (PostgreSQL: whether it
    /// is enabled, every policy's command, roles and expressions). None when nothing
    /// restricts reads. When it changes, devices download everything visible again.
    pub async fn visibility(&self, db: &Database) -> Result<Option<String>> {
        use sha2::Digest;
        match &db.backend {
            BackendConfig::Sqlite => {
                let policies = db.settings.read_policies();
                if policies.is_empty() {
                    return Ok(None);
                }
                let text = serde_json::to_string(&policies).map_err(|e| Error::Invalid(e.to_string()))?;
                Ok(Some(hex::encode(sha2::Sha256::digest(text.as_bytes()))))
            }
            BackendConfig::Postgres { .. } => self.postgres.visibility(&db.id, &self.url(db)?).await,
        }
    }

    /// The central database's feed position.
    pub async fn db_version(&self, db: &Database) -> Result<u64> {
        match &db.backend {
            BackendConfig::Sqlite => {
                let id = db.id.clone();
                self.blocking(move |s| s.db_version(&id)).await
            }
            BackendConfig::Postgres { .. } => self.postgres.db_version(&db.id, &self.url(db)?).await,
        }
    }

    /// Blocking SQLite calls running now, and PostgreSQL connections in use.
    pub fn in_use(&self) -> usize {
        self.permit_count.saturating_sub(self.permits.available_permits()) + self.postgres.in_use()
    }

    /// Idle connections held by this node, over all backends.
    pub fn idle_connections(&self) -> usize {
        self.sqlite.idle_connections() + self.postgres.idle_connections()
    }
}
