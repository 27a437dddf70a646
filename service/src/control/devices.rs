//! Devices and usage.
//!
//! Every sync request is counted: per device (requests, bytes and changes each way,
//! last download position, user id) and per database and hour (the same counters, and
//! which devices were active). Counting writes nothing on the request path: a node
//! adds to an in-memory [`UsageRecorder`] and flushes it to the control-plane store in
//! one transaction every few seconds and at shutdown, so usage is durable to within one
//! flush interval and never costs a write per request. A failed flush keeps its
//! counters for the next one.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use cloudsync_core::value::shown;

use crate::control::ControlPlane;
use crate::ids::{now_ms, DatabaseId, SiteHex, TenantId};
use crate::page::{Page, PageRequest};
use crate::{Error, Result};

const HOUR_MS: i64 = 3_600_000;

/// A device as the control plane knows it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    /// The device's site id.
    pub site_id: String,
    /// Database.
    pub database_id: DatabaseId,
    /// First request (Unix ms).
    pub first_seen: i64,
    /// Latest request (Unix ms, to within the flush interval).
    pub last_seen: i64,
    /// User id from the JWT it last presented (absent for API keys).
    pub user_id: Option<String>,
    /// Whom its site id is bound to: `user:<JWT user id>` or `key:<API key id>`
    /// (absent until its first request, or after an operator released it).
    pub subject: Option<String>,
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
    /// Highest position of the device's own feed applied centrally, with every earlier
    /// upload finished.
    pub confirmed_upload: Option<String>,
    /// Server position the device last downloaded after (it holds everything before).
    pub confirmed_download: Option<String>,
    /// The latest error of one of its uploads that still stands (a discarded upload's
    /// is an operator's decision, no longer the device's problem), if any.
    pub last_error: Option<String>,
    /// Uploads of its whose rows the database partly refused (of the jobs retained).
    pub refused_uploads: i64,
    /// Applying downloads fails on the device, as it last reported: the code.
    pub receive_error_code: Option<String>,
    /// ... the device's message.
    pub receive_error_message: Option<String>,
    /// ... and since when (Unix ms).
    pub receive_failing_since: Option<i64>,
    /// When it was blocked, if it is.
    pub blocked_at: Option<i64>,
    /// Why it was blocked.
    pub blocked_reason: Option<String>,
}

fn device_of(r: &AnyRow) -> Result<Device> {
    Ok(Device {
        site_id: r.try_get("site_id")?,
        database_id: DatabaseId::parse(r.try_get::<&str, _>("database_id")?)?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        user_id: r.try_get("user_id")?,
        subject: r.try_get("subject")?,
        requests: r.try_get("requests")?,
        bytes_in: r.try_get("bytes_in")?,
        bytes_out: r.try_get("bytes_out")?,
        changes_in: r.try_get("changes_in")?,
        changes_out: r.try_get("changes_out")?,
        confirmed_upload: r.try_get("confirmed_upload")?,
        confirmed_download: r.try_get("last_download")?,
        last_error: r.try_get("last_error")?,
        refused_uploads: r.try_get("refused_uploads")?,
        receive_error_code: r.try_get("receive_error_code")?,
        receive_error_message: r.try_get("receive_error_message")?,
        receive_failing_since: r.try_get("receive_failing_since")?,
        blocked_at: r.try_get("blocked_at")?,
        blocked_reason: r.try_get("blocked_reason")?,
    })
}

const DEVICE_SELECT: &str = "SELECT d.*, \
    (SELECT j.to_cursor FROM jobs j WHERE j.database_id = d.database_id AND j.site_id = d.site_id \
       AND j.state IN ('done', 'dead', 'discarded') AND j.id < coalesce((SELECT min(p.id) FROM jobs p \
       WHERE p.database_id = d.database_id AND p.site_id = d.site_id AND p.state IN ('pending', 'running')), \
       9223372036854775807) ORDER BY j.id DESC LIMIT 1) AS confirmed_upload, \
    (SELECT j.error_message FROM jobs j WHERE j.database_id = d.database_id AND j.site_id = d.site_id \
       AND j.error_message IS NOT NULL AND j.state <> 'discarded' ORDER BY j.id DESC LIMIT 1) AS last_error, \
    (SELECT count(*) FROM jobs j WHERE j.database_id = d.database_id AND j.site_id = d.site_id \
       AND j.refused IS NOT NULL) AS refused_uploads \
    FROM devices d";

/// Usage over a time range.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Start of the range (Unix ms, rounded down to the hour).
    pub from: i64,
    /// End of the range (Unix ms, exclusive).
    pub to: i64,
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
    /// Distinct devices (site ids) that made a request in the range.
    pub active_devices: i64,
}

/// One sync request's contribution.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    /// Payload bytes uploaded.
    pub bytes_in: i64,
    /// Payload bytes downloaded.
    pub bytes_out: i64,
    /// Changes uploaded.
    pub changes_in: i64,
    /// Changes downloaded.
    pub changes_out: i64,
    /// The server position a download started after.
    pub download_after: Option<String>,
    /// The user id of the request's JWT.
    pub user_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Pending {
    tenant: Option<TenantId>,
    first_seen: i64,
    last_seen: i64,
    requests: i64,
    activity: Activity,
    hours: Vec<i64>,
}

impl Pending {
    fn absorb(&mut self, other: Pending) {
        if self.requests == 0 {
            self.first_seen = other.first_seen;
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.requests += other.requests;
        self.tenant = self.tenant.take().or(other.tenant);
        let (a, b) = (&mut self.activity, other.activity);
        a.bytes_in += b.bytes_in;
        a.bytes_out += b.bytes_out;
        a.changes_in += b.changes_in;
        a.changes_out += b.changes_out;
        a.download_after = b.download_after.or(a.download_after.take());
        a.user_id = b.user_id.or(a.user_id.take());
        for h in other.hours {
            if !self.hours.contains(&h) {
                self.hours.push(h);
            }
        }
    }
}

/// Counts sync requests in memory until the next [`UsageRecorder::flush`].
#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<(DatabaseId, SiteHex), Pending>>,
}

impl UsageRecorder {
    /// Counts one request of `site` on `db`.
    pub fn record(&self, tenant: &TenantId, db: &DatabaseId, site: SiteHex, activity: Activity) {
        let now = now_ms();
        let entry = Pending {
            tenant: Some(tenant.clone()),
            first_seen: now,
            last_seen: now,
            requests: 1,
            activity,
            hours: vec![now - now.rem_euclid(HOUR_MS)],
        };
        let mut map = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((db.clone(), site)).or_default().absorb(entry);
    }

    /// Writes the counters to the store in one transaction. On failure they are kept
    /// for the next flush.
    pub async fn flush(&self, cp: &ControlPlane) -> Result<usize> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(0);
        }
        let n = taken.len();
        match cp.write_usage(&taken).await {
            Ok(()) => Ok(n),
            Err(e) => {
                let mut map = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (k, v) in taken {
                    map.entry(k).or_default().absorb(v);
                }
                Err(e)
            }
        }
    }
}

impl ControlPlane {
    async fn write_usage(&self, pending: &HashMap<(DatabaseId, SiteHex), Pending>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Counters of a database or tenant deleted since the request are dropped (the
        // `EXISTS` guards), not retried forever. Per database and hour, summed over
        // devices:
        let mut hours: HashMap<(&DatabaseId, i64), (&TenantId, [i64; 5])> = HashMap::new();
        for ((db, site), p) in pending {
            let Some(tenant) = &p.tenant else { continue };
            let a = &p.activity;
            sqlx::query(
                "INSERT INTO devices (database_id, site_id, first_seen, last_seen, user_id, requests, bytes_in, bytes_out, \
                 changes_in, changes_out, last_download) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
                 WHERE EXISTS (SELECT 1 FROM databases WHERE id = $1) ON CONFLICT (database_id, site_id) DO UPDATE SET \
                 last_seen = CASE WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END, \
                 user_id = coalesce(excluded.user_id, devices.user_id), requests = devices.requests + excluded.requests, \
                 bytes_in = devices.bytes_in + excluded.bytes_in, bytes_out = devices.bytes_out + excluded.bytes_out, \
                 changes_in = devices.changes_in + excluded.changes_in, changes_out = devices.changes_out + excluded.changes_out, \
                 last_download = coalesce(excluded.last_download, devices.last_download)",
            )
            .bind(db.as_str())
            .bind(site.to_string())
            .bind(p.first_seen)
            .bind(p.last_seen)
            .bind(a.user_id.as_deref())
            .bind(p.requests)
            .bind(a.bytes_in)
            .bind(a.bytes_out)
            .bind(a.changes_in)
            .bind(a.changes_out)
            .bind(a.download_after.as_deref())
            .execute(&mut *tx)
            .await?;
            for &hour in &p.hours {
                sqlx::query(
                    "INSERT INTO device_hours (tenant_id, database_id, hour, site_id) SELECT $1, $2, $3, $4 \
                     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) ON CONFLICT (database_id, hour, site_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(db.as_str())
                .bind(hour)
                .bind(site.to_string())
                .execute(&mut *tx)
                .await?;
            }
            // Counters go to the hour of the latest request.
            let hour = p.last_seen - p.last_seen.rem_euclid(HOUR_MS);
            let e = hours.entry((db, hour)).or_insert((tenant, [0; 5]));
            for (acc, v) in e.1.iter_mut().zip([p.requests, a.bytes_in, a.bytes_out, a.changes_in, a.changes_out]) {
                *acc += v;
            }
        }
        for ((db, hour), (tenant, c)) in hours {
            sqlx::query(
                "INSERT INTO usage_hours (tenant_id, database_id, hour, requests, bytes_in, bytes_out, changes_in, changes_out) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
                 ON CONFLICT (database_id, hour) DO UPDATE SET \
                 requests = usage_hours.requests + excluded.requests, bytes_in = usage_hours.bytes_in + excluded.bytes_in, \
                 bytes_out = usage_hours.bytes_out + excluded.bytes_out, changes_in = usage_hours.changes_in + excluded.changes_in, \
                 changes_out = usage_hours.changes_out + excluded.changes_out",
            )
            .bind(tenant.as_str())
            .bind(db.as_str())
            .bind(hour)
            .bind(c[0])
            .bind(c[1])
            .bind(c[2])
            .bind(c[3])
            .bind(c[4])
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A page of a database's devices, by site id.
    pub async fn devices(&self, db: &DatabaseId, page: &PageRequest) -> Result<Page<Device>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.database_id = $1 AND d.site_id > $2 ORDER BY d.site_id LIMIT $3"
        )))
        .bind(db.as_str())
        .bind(page.after_text())
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(device_of).collect::<Result<Vec<_>>>()?;
        Ok(page.page(items, |d| d.site_id.clone()))
    }

    /// One device of a database.
    pub async fn device(&self, db: &DatabaseId, site: &SiteHex) -> Result<Device> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE d.database_id = $1 AND d.site_id = $2")))
                .bind(db.as_str())
                .bind(site.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(device_of).transpose()?.ok_or(Error::NotFound { what: "device" })
    }

    /// Blocks a device (`Some(reason)`) or unblocks it (`None`). A device can be
    /// blocked before it ever syncs.
    pub async fn set_blocked(&self, db: &DatabaseId, site: &SiteHex, reason: Option<&str>) -> Result<Device> {
        let now = now_ms();
        let reason = reason.map(|r| r.chars().take(500).collect::<String>());
        sqlx::query(
            "INSERT INTO devices (database_id, site_id, first_seen, last_seen, blocked_at, blocked_reason) \
             VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (database_id, site_id) DO UPDATE SET \
             blocked_at = CASE WHEN excluded.blocked_at IS NULL THEN NULL ELSE coalesce(devices.blocked_at, excluded.blocked_at) END, \
             blocked_reason = excluded.blocked_reason",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(now)
        .bind(reason.as_ref().map(|_| now))
        .bind(reason.as_deref())
        .execute(&self.pool)
        .await?;
        self.device(db, site).await
    }

    /// The read-rules fingerprint a device is served under, and, while the download
    /// that restarted it under those rules is unfinished, the last checkpoint handed
    /// out in it (`docs/rls.md`).
    pub async fn device_visibility(&self, db: &DatabaseId, site: &SiteHex) -> Result<(Option<String>, Option<String>)> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT visibility, visibility_cursor FROM devices WHERE database_id = $1 AND site_id = $2")
                .bind(db.as_str())
                .bind(site.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.unwrap_or((None, None)))
    }

    /// Records that a device is served under `fingerprint`: `cursor` is the last
    /// checkpoint handed out in the pass that restarted it, `None` once that pass
    /// reached its end.
    pub async fn set_device_visibility(
        &self,
        db: &DatabaseId,
        site: &SiteHex,
        fingerprint: &str,
        cursor: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO devices (database_id, site_id, first_seen, last_seen, visibility, visibility_cursor) \
             VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (database_id, site_id) DO UPDATE SET \
             visibility = excluded.visibility, visibility_cursor = excluded.visibility_cursor",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(now)
        .bind(fingerprint)
        .bind(cursor)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a device's report of its receiving (`failure`: applying downloads fails
    /// on it; None: it applies again). A run of failures keeps the time of its first
    /// report. The code and message are the device's: cut to 64 and 500 characters,
    /// control characters dropped.
    pub async fn set_receive_failure(
        &self,
        db: &DatabaseId,
        site: &SiteHex,
        failure: Option<(&str, &str)>,
    ) -> Result<()> {
        let now = now_ms();
        let (code, message) = match failure {
            Some((code, message)) => (Some(shown(code, 64)), Some(shown(message, 500))),
            None => (None, None),
        };
        let since = code.as_ref().map(|_| now);
        sqlx::query(
            "INSERT INTO devices (database_id, site_id, first_seen, last_seen, receive_error_code, receive_error_message, \
             receive_failing_since) VALUES ($1, $2, $3, $3, $4, $5, $6) ON CONFLICT (database_id, site_id) DO UPDATE SET \
             receive_error_code = excluded.receive_error_code, receive_error_message = excluded.receive_error_message, \
             receive_failing_since = CASE WHEN excluded.receive_failing_since IS NULL THEN NULL \
               ELSE coalesce(devices.receive_failing_since, excluded.receive_failing_since) END",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(now)
        .bind(code)
        .bind(message)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Usage of a tenant (all its databases) or of one database, between `from`
    /// (rounded down to the hour) and `to` (exclusive), in Unix ms.
    pub async fn usage(&self, tenant: &TenantId, db: Option<&DatabaseId>, from: i64, to: i64) -> Result<Usage> {
        if from >= to {
            return Err(Error::Invalid("the range is empty: 'from' must be before 'to'".into()));
        }
        let from = from.saturating_sub(from.rem_euclid(HOUR_MS));
        let db_filter = db.map(DatabaseId::as_str).unwrap_or("");
        let row = sqlx::query(
            "SELECT CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests, \
             CAST(coalesce(sum(bytes_in), 0) AS BIGINT) AS bytes_in, CAST(coalesce(sum(bytes_out), 0) AS BIGINT) AS bytes_out, \
             CAST(coalesce(sum(changes_in), 0) AS BIGINT) AS changes_in, \
             CAST(coalesce(sum(changes_out), 0) AS BIGINT) AS changes_out FROM usage_hours \
             WHERE tenant_id = $1 AND ($2 = '' OR database_id = $2) AND hour >= $3 AND hour < $4",
        )
        .bind(tenant.as_str())
        .bind(db_filter)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT DISTINCT site_id FROM device_hours \
             WHERE tenant_id = $1 AND ($2 = '' OR database_id = $2) AND hour >= $3 AND hour < $4) AS active",
        )
        .bind(tenant.as_str())
        .bind(db_filter)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            from,
            to,
            requests: row.try_get("requests")?,
            bytes_in: row.try_get("bytes_in")?,
            bytes_out: row.try_get("bytes_out")?,
            changes_in: row.try_get("changes_in")?,
            changes_out: row.try_get("changes_out")?,
            active_devices: active,
        })
    }
}
