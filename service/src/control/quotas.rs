//! Quotas: how much of the service one tenant may take. The node's settings give the
//! defaults ([`Quotas`]); an operator may set any of them for one tenant
//! ([`QuotaOverrides`], stored in `tenant_quotas`). Where each is enforced:
//! databases when one is created (here, claim-then-count), devices when a new site id
//! is admitted (`bindings`), long-polls per node in the API.

use serde::{Deserialize, Serialize};

use super::ControlPlane;
use crate::ids::{now_ms, TenantId};
use crate::{Error, Result};

/// A tenant's limits; 0 is "no limit".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quotas {
    /// Databases.
    pub databases: u32,
    /// Devices (site ids) over all its databases.
    pub devices: u32,
    /// Downloads waiting for changes at once, per node.
    pub long_polls: u32,
    /// Downloads waiting at once for one credential (a JWT user, an API key), per
    /// node.
    pub long_polls_per_credential: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { databases: 100, devices: 100_000, long_polls: 1000, long_polls_per_credential: 100 }
    }
}

/// The limits an operator set for one tenant; the others are the node's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOverrides {
    /// Databases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub databases: Option<u32>,
    /// Devices over all its databases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<u32>,
    /// Waiting downloads at once, per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_polls: Option<u32>,
    /// Waiting downloads at once for one credential, per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_polls_per_credential: Option<u32>,
}

impl Quotas {
    /// These defaults with `o` set over them.
    pub fn with(self, o: &QuotaOverrides) -> Quotas {
        Quotas {
            databases: o.databases.unwrap_or(self.databases),
            devices: o.devices.unwrap_or(self.devices),
            long_polls: o.long_polls.unwrap_or(self.long_polls),
            long_polls_per_credential: o.long_polls_per_credential.unwrap_or(self.long_polls_per_credential),
        }
    }
}

/// Which quota a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// [`Quotas::databases`].
    Databases,
    /// [`Quotas::devices`].
    Devices,
    /// [`Quotas::long_polls`].
    LongPolls,
    /// [`Quotas::long_polls_per_credential`].
    LongPollsPerCredential,
}

impl Quota {
    /// Its name in settings, the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Quota::Databases => "databases",
            Quota::Devices => "devices",
            Quota::LongPolls => "long_polls",
            Quota::LongPollsPerCredential => "long_polls_per_credential",
        }
    }

    /// The stable error code of a request refused by it.
    pub fn code(self) -> &'static str {
        match self {
            Quota::Databases => "database_quota_exceeded",
            Quota::Devices => "device_quota_exceeded",
            Quota::LongPolls | Quota::LongPollsPerCredential => "too_many_long_polls",
        }
    }
}

impl ControlPlane {
    /// The limits an operator set for `tenant` (none: every default applies).
    pub async fn quota_overrides(&self, tenant: &TenantId) -> Result<QuotaOverrides> {
        let text: Option<String> = sqlx::query_scalar("SELECT quotas FROM tenant_quotas WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match text {
            None => Ok(QuotaOverrides::default()),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| Error::Invalid(format!("stored quotas of tenant {tenant} do not read back: {e}"))),
        }
    }

    /// The limits in force for `tenant`: `defaults` (the node's) with those an
    /// operator set over them.
    pub async fn quotas(&self, tenant: &TenantId, defaults: Quotas) -> Result<Quotas> {
        Ok(defaults.with(&self.quota_overrides(tenant).await?))
    }

    /// Sets the limits of `tenant` (replacing those set before; a limit left out is
    /// the node's default again).
    pub async fn set_quota_overrides(&self, tenant: &TenantId, quotas: &QuotaOverrides) -> Result<()> {
        self.tenant(tenant).await?;
        let text = serde_json::to_string(quotas).map_err(|e| Error::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO tenant_quotas (tenant_id, quotas, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET quotas = excluded.quotas, updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(text)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Databases of `tenant`, those being deleted included (their names and data are
    /// still held).
    pub async fn database_count(&self, tenant: &TenantId) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM databases WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Devices of `tenant` over all its databases.
    pub async fn device_count(&self, tenant: &TenantId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM devices d JOIN databases b ON b.id = d.database_id WHERE b.tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await?)
    }
}
