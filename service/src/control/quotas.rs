//! Quotas: how much of the service one tenant may take. The node's settings give the
//! defaults ([`Quotas`]); an operator may set any of them for one tenant
//! ([`QuotaOverrides`], stored in `tenant_quotas`). Where each is enforced:
//! databases when one is created (here, claim-then-count), devices when a new site id
//! is admitted (`bindings`); request rates, transfer, storage and long-polls by each
//! node's API (`cloudsync_api::quotas`).

use serde::{Deserialize, Serialize};

use super::ControlPlane;
use crate::ids::{now_ms, DatabaseId, TenantId};
use crate::{Error, Result};

/// How a request over a quota is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something the tenant holds (databases, devices, storage): `507`, until it holds
    /// less or an operator raises the limit.
    Held,
    /// Something per unit of time (requests, transfer): `429` with `Retry-After`.
    Rate,
    /// Downloads waiting at once: `429` with a short `Retry-After`.
    Waiting,
}

/// Declares every quota once: its field in [`Quotas`] and [`QuotaOverrides`], its
/// [`Quota`] variant, default, kind, stable error code and what its limit counts.
macro_rules! quotas {
    ($( $(#[doc = $doc:literal])* $field:ident, $variant:ident, $default:expr, $kind:ident, $code:literal, $unit:literal; )*) => {
        /// A tenant's limits; 0 is "no limit".
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct Quotas {
            $( $(#[doc = $doc])* pub $field: u32, )*
        }

        impl Default for Quotas {
            fn default() -> Self {
                Quotas { $( $field: $default, )* }
            }
        }

        /// The limits an operator set for one tenant; the others are the node's defaults.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(default, deny_unknown_fields)]
        pub struct QuotaOverrides {
            $( $(#[doc = $doc])* #[serde(skip_serializing_if = "Option::is_none")] pub $field: Option<u32>, )*
        }

        /// One of the quotas.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Quota {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Quota {
            /// Every quota, in the order settings, the API and the dashboard list them.
            pub const ALL: &'static [Quota] = &[$( Quota::$variant, )*];

            /// Its name in settings, the API and metrics.
            pub fn name(self) -> &'static str {
                match self { $( Quota::$variant => stringify!($field), )* }
            }

            /// How a request over it is answered.
            pub fn kind(self) -> Kind {
                match self { $( Quota::$variant => Kind::$kind, )* }
            }

            /// The stable error code of a request refused by it.
            pub fn code(self) -> &'static str {
                match self { $( Quota::$variant => $code, )* }
            }

            /// What its limit counts ("databases", "MiB of sync transfer per day (UTC)").
            pub fn unit(self) -> &'static str {
                match self { $( Quota::$variant => $unit, )* }
            }

            /// The quota named `name`.
            pub fn parse(name: &str) -> Option<Quota> {
                Quota::ALL.iter().copied().find(|q| q.name() == name)
            }
        }

        impl Quotas {
            /// The limit of `quota` (0: none).
            pub fn get(&self, quota: Quota) -> u32 {
                match quota { $( Quota::$variant => self.$field, )* }
            }

            /// These defaults with `o` set over them.
            pub fn with(self, o: &QuotaOverrides) -> Quotas {
                Quotas { $( $field: o.$field.unwrap_or(self.$field), )* }
            }
        }

        impl QuotaOverrides {
            /// The limit set for `quota`, if one is.
            pub fn get(&self, quota: Quota) -> Option<u32> {
                match quota { $( Quota::$variant => self.$field, )* }
            }

            /// Sets (or, with `None`, forgets) the limit of `quota`.
            pub fn set(&mut self, quota: Quota, limit: Option<u32>) {
                match quota { $( Quota::$variant => self.$field = limit, )* }
            }
        }
    };
}

quotas! {
    /// Databases.
    databases, Databases, 100, Held, "database_quota_exceeded", "databases";
    /// Devices (site ids) over all its databases.
    devices, Devices, 100_000, Held, "device_quota_exceeded", "devices";
    /// MiB its SQLite databases may hold on the service's disk, all together
    /// (PostgreSQL backends are bounded by their own server).
    storage_mb, StorageMb, 102_400, Held, "storage_quota_exceeded", "MiB of storage";
    /// MiB of sync payloads uploaded and downloaded per UTC day, over all nodes.
    transfer_mb_per_day, TransferMbPerDay, 102_400, Rate, "transfer_quota_exceeded", "MiB of sync transfer per day (UTC)";
    /// Requests per second of all its credentials together, per node.
    requests_per_second, RequestsPerSecond, 1000, Rate, "rate_limited", "requests per second";
    /// Requests per second of one credential (a JWT user, an API key), per node.
    requests_per_second_per_credential, RequestsPerSecondPerCredential, 100, Rate, "rate_limited", "requests per second per user or key";
    /// Downloads waiting for changes at once, per node.
    long_polls, LongPolls, 1000, Waiting, "too_many_long_polls", "waiting downloads";
    /// Downloads waiting at once for one credential (a JWT user, an API key), per
    /// node.
    long_polls_per_credential, LongPollsPerCredential, 100, Waiting, "too_many_long_polls", "waiting downloads per user or key";
}

/// Start of the UTC day of `ms` (Unix ms), and the seconds left until the next.
pub fn utc_day(ms: i64) -> (i64, u64) {
    const DAY_MS: i64 = 86_400_000;
    let start = ms - ms.rem_euclid(DAY_MS);
    (start, u64::try_from((start + DAY_MS - ms + 999) / 1000).unwrap_or(1).max(1))
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

    /// Bytes of sync payloads `tenant`'s devices uploaded and downloaded since
    /// `since_ms`, as flushed to the store by every node (`devices::UsageRecorder`).
    pub async fn transfer_since(&self, tenant: &TenantId, since_ms: i64) -> Result<u64> {
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(sum(bytes_in + bytes_out) AS BIGINT) FROM usage_hours WHERE tenant_id = $1 AND hour >= $2",
        )
        .bind(tenant.as_str())
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(bytes.unwrap_or(0)).unwrap_or(0))
    }

    /// The ids of `tenant`'s databases, those being deleted included.
    pub async fn database_ids(&self, tenant: &TenantId) -> Result<Vec<DatabaseId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM databases WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await?;
        ids.iter().map(|id| DatabaseId::parse(id)).collect()
    }
}
