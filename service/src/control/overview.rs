//! Aggregates over the control plane for operators: counts, the job queue's health,
//! hourly usage series and recent failures, for the whole service or one tenant or
//! database. The admin dashboard and the `/metrics` gauges read these.

use serde::Serialize;
use sqlx::Row;

use crate::control::jobs::Job;
use crate::control::ControlPlane;
use crate::ids::{now_ms, DatabaseId, TenantId};
use crate::{Error, Result};

const HOUR_MS: i64 = 3_600_000;

/// What to aggregate over.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// One tenant (all of them when `None`).
    pub tenant: Option<&'a TenantId>,
    /// One database of that tenant.
    pub database: Option<&'a DatabaseId>,
}

impl<'a> Scope<'a> {
    /// The whole service.
    pub fn all() -> Scope<'static> {
        Scope::default()
    }

    /// One tenant.
    pub fn tenant(tenant: &'a TenantId) -> Scope<'a> {
        Scope { tenant: Some(tenant), database: None }
    }

    /// One database.
    pub fn database(tenant: &'a TenantId, database: &'a DatabaseId) -> Scope<'a> {
        Scope { tenant: Some(tenant), database: Some(database) }
    }

    fn tenant_str(&self) -> &str {
        self.tenant.map_or("", TenantId::as_str)
    }

    fn database_str(&self) -> &str {
        self.database.map_or("", DatabaseId::as_str)
    }
}

/// Jobs by state, and how long the oldest waiting one has waited.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct QueueHealth {
    /// Waiting (new or backing off).
    pub pending: i64,
    /// Being applied.
    pub running: i64,
    /// Applied.
    pub done: i64,
    /// Failed for good.
    pub dead: i64,
    /// Dropped by an operator.
    pub discarded: i64,
    /// Waiting jobs that have failed at least once (retrying).
    pub retrying: i64,
    /// Applied jobs some of whose rows the database refused (`done`, not whole).
    pub refused: i64,
    /// Age of the oldest pending or running job (ms), if any.
    pub oldest_waiting_ms: Option<i64>,
}

/// Headline numbers.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Overview {
    /// Tenants (not being deleted).
    pub tenants: i64,
    /// Databases.
    pub databases: i64,
    /// Devices ever seen.
    pub devices: i64,
    /// Devices seen in the last hour.
    pub active_hour: i64,
    /// Devices seen in the last 24 hours.
    pub active_day: i64,
    /// Devices that last reported applying downloads fails on them.
    pub receive_failing: i64,
    /// The job queue.
    pub queue: QueueHealth,
}

/// Usage in one hour.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct UsageHour {
    /// Start of the hour (Unix ms).
    pub hour: i64,
    /// Sync requests.
    pub requests: i64,
    /// Payload bytes uploaded.
    pub bytes_in: i64,
    /// Payload bytes downloaded.
    pub bytes_out: i64,
    /// Changes uploaded.
    pub changes_in: i64,
    /// Changes downloaded.
    pub changes_out: i64,
}

/// A failed job with the tenant it belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct FailedJob {
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The job.
    pub job: Job,
}

// Filters shared by the queries below: `$1` tenant id or '', `$2` database id or ''.
const IN_SCOPE: &str = "($1 = '' OR db.tenant_id = $1) AND ($2 = '' OR db.id = $2)";

impl ControlPlane {
    /// The job queue's health.
    pub async fn queue_health(&self, scope: Scope<'_>) -> Result<QueueHealth> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT j.state AS state, CAST(count(*) AS BIGINT) AS n, \
             CAST(sum(CASE WHEN j.attempts > 0 THEN 1 ELSE 0 END) AS BIGINT) AS retried, \
             CAST(sum(CASE WHEN j.refused IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS refused, \
             CAST(min(j.created_at) AS BIGINT) AS oldest \
             FROM jobs j JOIN databases db ON db.id = j.database_id WHERE {IN_SCOPE} GROUP BY j.state"
        )))
        .bind(scope.tenant_str())
        .bind(scope.database_str())
        .fetch_all(&self.pool)
        .await?;
        let mut q = QueueHealth::default();
        let mut oldest: Option<i64> = None;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            match r.try_get::<&str, _>("state")? {
                "pending" => {
                    q.pending = n;
                    q.retrying = r.try_get::<Option<i64>, _>("retried")?.unwrap_or(0);
                }
                "running" => q.running = n,
                "done" => {
                    q.done = n;
                    q.refused = r.try_get::<Option<i64>, _>("refused")?.unwrap_or(0);
                }
                "dead" => q.dead = n,
                "discarded" => q.discarded = n,
                _ => continue,
            }
            if matches!(r.try_get::<&str, _>("state")?, "pending" | "running") {
                let o: Option<i64> = r.try_get("oldest")?;
                oldest = match (oldest, o) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        q.oldest_waiting_ms = oldest.map(|t| (now_ms() - t).max(0));
        Ok(q)
    }

    /// Headline numbers for the whole service, a tenant or a database.
    pub async fn overview(&self, scope: Scope<'_>) -> Result<Overview> {
        let now = now_ms();
        let tenants: i64 = sqlx::query_scalar(
            "SELECT CAST(count(*) AS BIGINT) FROM tenants WHERE deleting = 0 AND ($1 = '' OR id = $1)",
        )
        .bind(scope.tenant_str())
        .fetch_one(&self.pool)
        .await?;
        let databases: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(count(*) AS BIGINT) FROM databases db WHERE {IN_SCOPE}"
        )))
        .bind(scope.tenant_str())
        .bind(scope.database_str())
        .fetch_one(&self.pool)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(count(*) AS BIGINT) AS devices, \
             CAST(coalesce(sum(CASE WHEN d.last_seen >= $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS hour, \
             CAST(coalesce(sum(CASE WHEN d.last_seen >= $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS day, \
             CAST(coalesce(sum(CASE WHEN d.receive_error_code IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS receiving \
             FROM devices d JOIN databases db ON db.id = d.database_id WHERE {IN_SCOPE}"
        )))
        .bind(scope.tenant_str())
        .bind(scope.database_str())
        .bind(now - HOUR_MS)
        .bind(now - 24 * HOUR_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(Overview {
            tenants,
            databases,
            devices: row.try_get("devices")?,
            active_hour: row.try_get("hour")?,
            active_day: row.try_get("day")?,
            receive_failing: row.try_get("receiving")?,
            queue: self.queue_health(scope).await?,
        })
    }

    /// Usage per hour from `from` (rounded down to the hour) to `to` (exclusive); hours
    /// without traffic are present with zeros, so the series is regular.
    pub async fn usage_series(&self, scope: Scope<'_>, from: i64, to: i64) -> Result<Vec<UsageHour>> {
        if from >= to {
            return Err(Error::Invalid("the range is empty: 'from' must be before 'to'".into()));
        }
        let from = from - from.rem_euclid(HOUR_MS);
        if (to - from) / HOUR_MS > 24 * 366 {
            return Err(Error::Invalid("a usage series covers at most a year of hours".into()));
        }
        let rows = sqlx::query(
            "SELECT hour, CAST(sum(requests) AS BIGINT) AS requests, CAST(sum(bytes_in) AS BIGINT) AS bytes_in, \
             CAST(sum(bytes_out) AS BIGINT) AS bytes_out, CAST(sum(changes_in) AS BIGINT) AS changes_in, \
             CAST(sum(changes_out) AS BIGINT) AS changes_out FROM usage_hours \
             WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR database_id = $2) AND hour >= $3 AND hour < $4 \
             GROUP BY hour ORDER BY hour",
        )
        .bind(scope.tenant_str())
        .bind(scope.database_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut by_hour = std::collections::BTreeMap::new();
        for r in rows {
            let h = UsageHour {
                hour: r.try_get("hour")?,
                requests: r.try_get("requests")?,
                bytes_in: r.try_get("bytes_in")?,
                bytes_out: r.try_get("bytes_out")?,
                changes_in: r.try_get("changes_in")?,
                changes_out: r.try_get("changes_out")?,
            };
            by_hour.insert(h.hour, h);
        }
        let mut series = Vec::new();
        let mut hour = from;
        while hour < to {
            series.push(by_hour.remove(&hour).unwrap_or(UsageHour { hour, ..UsageHour::default() }));
            hour += HOUR_MS;
        }
        Ok(series)
    }

    /// The most recently failed jobs (retrying or dead), newest failure first.
    pub async fn recent_failures(&self, scope: Scope<'_>, limit: u32) -> Result<Vec<FailedJob>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT j.*, db.tenant_id AS owner FROM jobs j JOIN databases db ON db.id = j.database_id \
             WHERE {IN_SCOPE} AND j.error_message IS NOT NULL AND j.state IN ('pending', 'running', 'dead') \
             ORDER BY j.updated_at DESC, j.id DESC LIMIT $3"
        )))
        .bind(scope.tenant_str())
        .bind(scope.database_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailedJob {
                    tenant_id: TenantId::parse(r.try_get::<&str, _>("owner")?)?,
                    job: crate::control::jobs::job_of(r)?,
                })
            })
            .collect()
    }
}
