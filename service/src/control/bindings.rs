//! Whose a device is: a site id bound to the credential subject of its first sync
//! request (a JWT's user, an API key), blocks by site, user and key, and the cap on new
//! site ids per subject and hour (`docs/protocol.md`, "Devices are who they say they
//! are"). One indexed read per sync request once a device is bound.

use serde::Serialize;
use sqlx::Row;

use crate::control::devices::Device;
use crate::control::quotas::Quotas;
use crate::control::ControlPlane;
use crate::ids::{now_ms, DatabaseId, SiteHex, TenantId};
use crate::{Error, Result};

const HOUR_MS: i64 = 3_600_000;

/// Why a sync request's device is refused ([`ControlPlane::admit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The device, or the user or API key calling, is blocked (with the reason given).
    Blocked(Option<String>),
    /// The site id is bound to another user or API key.
    BoundElsewhere,
    /// The tenant has as many devices as its quota allows.
    TooManyDevices {
        /// Its device quota.
        limit: u32,
    },
    /// The caller bound more new site ids in the past hour than allowed.
    TooManyNewSites {
        /// New site ids allowed per hour.
        limit: u32,
        /// When the oldest of them leaves the window.
        retry_after_secs: u64,
    },
}

/// A device's binding as [`ControlPlane::admit`] reads it.
struct Binding {
    /// The site id is known.
    exists: bool,
    /// Whom it is bound to.
    bound: Option<String>,
    /// Bound to an API key that was revoked or expired since.
    lapsed: bool,
    /// Why the device is blocked, if it is.
    site_block: Option<Option<String>>,
    /// Why the caller is blocked, if it is.
    subject_block: Option<Option<String>>,
}

/// The subject a JWT user's devices are bound to.
pub fn subject_of_user(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The subject an API key's devices are bound to.
pub fn subject_of_key(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// Checks a subject given by an operator: `user:<id>` or `key:<id>`, not empty.
fn parse_subject(subject: &str) -> Result<()> {
    let ok = subject
        .split_once(':')
        .is_some_and(|(kind, id)| matches!(kind, "user" | "key") && !id.is_empty() && id.len() <= 512);
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "a subject is 'user:<JWT user id>' or 'key:<API key id>', got '{}'",
            cloudsync_core::value::shown(subject, 80)
        )))
    }
}

/// A user or API key blocked in a database.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockedSubject {
    /// `user:<JWT user id>` or `key:<API key id>`.
    pub subject: String,
    /// When (Unix ms).
    pub blocked_at: i64,
    /// Why.
    pub reason: Option<String>,
}

impl ControlPlane {
    /// Admits a sync request of `subject` (see [`subject_of_user`], [`subject_of_key`])
    /// for the device `site` of database `db` (of `tenant`), or says why not: one
    /// indexed read per request once the device is bound.
    ///
    /// A site id is bound to the subject of its first request; another subject is
    /// refused it, so no one can read a device's status, upload as it or reset its
    /// download state — except that a binding to an API key that was revoked or expired
    /// moves to the next subject (a rotated key's devices keep working with the new
    /// key). A device, or a user or key, that is blocked is refused. A subject
    /// may bind at most `new_sites_per_hour` site ids of the tenant's databases in any
    /// hour (0: no limit), and the tenant at most its device quota (`quotas`: the
    /// node's defaults): claiming is a write, then a count, then a release when over,
    /// so concurrent claims never exceed either.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        db: &DatabaseId,
        site: &SiteHex,
        subject: &str,
        new_sites_per_hour: u32,
        quotas: Quotas,
    ) -> Result<Option<Refused>> {
        // Twice at most: a claim that lost a race reads the winner's binding.
        for _ in 0..2 {
            let b = self.binding(db, site, subject).await?;
            if let Some(reason) = b.subject_block.or(b.site_block) {
                return Ok(Some(Refused::Blocked(reason)));
            }
            match b.bound {
                Some(bound) if bound == subject => return Ok(None),
                Some(_) if !b.lapsed => return Ok(Some(Refused::BoundElsewhere)),
                Some(lapsed) => {
                    // Bound to an API key since revoked or expired (a rotated key): the
                    // device is not new, so it moves without counting as one.
                    let moved = sqlx::query(
                        "UPDATE devices SET subject = $3, bound_at = first_seen \
                         WHERE database_id = $1 AND site_id = $2 AND subject = $4",
                    )
                    .bind(db.as_str())
                    .bind(site.to_string())
                    .bind(subject)
                    .bind(&lapsed)
                    .execute(&self.pool)
                    .await?;
                    if moved.rows_affected() == 1 {
                        return Ok(None);
                    }
                    continue;
                }
                None => {}
            }
            let exists = b.exists;
            let now = now_ms();
            let claimed = if exists {
                // A device known before bindings (or released by an operator): bound
                // since it was first seen, so upgrading a fleet is not a burst of new
                // site ids.
                sqlx::query(
                    "UPDATE devices SET subject = $3, bound_at = first_seen \
                     WHERE database_id = $1 AND site_id = $2 AND subject IS NULL",
                )
                .bind(db.as_str())
                .bind(site.to_string())
                .bind(subject)
                .execute(&self.pool)
                .await?
            } else {
                sqlx::query(
                    "INSERT INTO devices (database_id, site_id, first_seen, last_seen, subject, bound_at) \
                     VALUES ($1, $2, $4, $4, $3, $4) ON CONFLICT (database_id, site_id) DO NOTHING",
                )
                .bind(db.as_str())
                .bind(site.to_string())
                .bind(subject)
                .bind(now)
                .execute(&self.pool)
                .await?
            };
            if claimed.rows_affected() == 0 {
                continue;
            }
            if !exists {
                // A new device: within the tenant's device quota, counted after the
                // claim like the cap below.
                let limit = self.quotas(tenant, quotas).await?.devices;
                if limit > 0 && self.device_count(tenant).await? > i64::from(limit) {
                    self.unclaim(db, site, subject).await?;
                    return Ok(Some(Refused::TooManyDevices { limit }));
                }
            }
            if new_sites_per_hour == 0 {
                return Ok(None);
            }
            let since = now - HOUR_MS;
            let (recent, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT count(*), min(d.bound_at) FROM devices d JOIN databases b ON b.id = d.database_id \
                 WHERE b.tenant_id = $1 AND d.subject = $2 AND d.bound_at > $3",
            )
            .bind(tenant.as_str())
            .bind(subject)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
            if recent <= i64::from(new_sites_per_hour) {
                return Ok(None);
            }
            self.unclaim(db, site, subject).await?;
            let retry_ms = oldest.map_or(HOUR_MS, |o| o + HOUR_MS - now).clamp(1000, HOUR_MS);
            return Ok(Some(Refused::TooManyNewSites {
                limit: new_sites_per_hour,
                retry_after_secs: u64::try_from((retry_ms + 999) / 1000).unwrap_or(3600),
            }));
        }
        Err(Error::Conflict("the device's binding changed twice during one request; retry".into()))
    }

    /// What [`ControlPlane::admit`] decides on, in one indexed read.
    async fn binding(&self, db: &DatabaseId, site: &SiteHex, subject: &str) -> Result<Binding> {
        let row = sqlx::query(
            "SELECT d.site_id, d.subject, d.blocked_at, d.blocked_reason, \
             b.blocked_at AS subject_blocked_at, b.reason AS subject_reason, \
             k.id AS key_id, k.revoked_at AS key_revoked_at, k.expires_at AS key_expires_at \
             FROM (SELECT 1 AS one) o \
             LEFT JOIN devices d ON d.database_id = $1 AND d.site_id = $2 \
             LEFT JOIN blocked_subjects b ON b.database_id = $1 AND b.subject = $3 \
             LEFT JOIN api_keys k ON d.subject LIKE 'key:%' AND k.id = substr(d.subject, 5)",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(subject)
        .fetch_one(&self.pool)
        .await?;
        let blocked = |at: &str, why: &str| -> Result<Option<Option<String>>> {
            Ok(row.try_get::<Option<i64>, _>(at)?.map(|_| row.try_get::<Option<String>, _>(why)).transpose()?)
        };
        let bound: Option<String> = row.try_get("subject")?;
        let key_live = row.try_get::<Option<String>, _>("key_id")?.is_some()
            && row.try_get::<Option<i64>, _>("key_revoked_at")?.is_none()
            && row.try_get::<Option<i64>, _>("key_expires_at")?.is_none_or(|at| at > now_ms());
        Ok(Binding {
            exists: row.try_get::<Option<String>, _>("site_id")?.is_some(),
            lapsed: bound.as_deref().is_some_and(|b| b.starts_with("key:")) && !key_live,
            bound,
            site_block: blocked("blocked_at", "blocked_reason")?,
            subject_block: blocked("subject_blocked_at", "subject_reason")?,
        })
    }

    /// Gives back a claim over the limit: the row goes if the claim made it (nothing
    /// was counted on it yet), else only the binding.
    async fn unclaim(&self, db: &DatabaseId, site: &SiteHex, subject: &str) -> Result<()> {
        let gone = sqlx::query(
            "DELETE FROM devices WHERE database_id = $1 AND site_id = $2 AND subject = $3 AND requests = 0 \
             AND blocked_at IS NULL AND visibility IS NULL",
        )
        .bind(db.as_str())
        .bind(site.to_string())
        .bind(subject)
        .execute(&self.pool)
        .await?;
        if gone.rows_affected() == 0 {
            sqlx::query(
                "UPDATE devices SET subject = NULL, bound_at = NULL \
                 WHERE database_id = $1 AND site_id = $2 AND subject = $3",
            )
            .bind(db.as_str())
            .bind(site.to_string())
            .bind(subject)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Releases a device's binding (an operator's action): its next request binds it
    /// to whoever makes it. For a site id that moved to a new user legitimately, or a
    /// device reinstalled with its old database under another account.
    pub async fn release_device(&self, db: &DatabaseId, site: &SiteHex) -> Result<Device> {
        let done =
            sqlx::query("UPDATE devices SET subject = NULL, bound_at = NULL WHERE database_id = $1 AND site_id = $2")
                .bind(db.as_str())
                .bind(site.to_string())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound { what: "device" });
        }
        self.device(db, site).await
    }

    /// Blocks a user or an API key (`user:<id>`, `key:<id>`) from syncing with `db`,
    /// whatever site id it uses; blocking again changes the reason.
    pub async fn block_subject(&self, db: &DatabaseId, subject: &str, reason: &str) -> Result<BlockedSubject> {
        parse_subject(subject)?;
        let reason = reason.chars().take(500).collect::<String>();
        sqlx::query(
            "INSERT INTO blocked_subjects (database_id, subject, blocked_at, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (database_id, subject) DO UPDATE SET reason = excluded.reason",
        )
        .bind(db.as_str())
        .bind(subject)
        .bind(now_ms())
        .bind(&reason)
        .execute(&self.pool)
        .await?;
        let (blocked_at, reason): (i64, Option<String>) =
            sqlx::query_as("SELECT blocked_at, reason FROM blocked_subjects WHERE database_id = $1 AND subject = $2")
                .bind(db.as_str())
                .bind(subject)
                .fetch_one(&self.pool)
                .await?;
        Ok(BlockedSubject { subject: subject.to_string(), blocked_at, reason })
    }

    /// Unblocks a user or an API key; not found when it was not blocked.
    pub async fn unblock_subject(&self, db: &DatabaseId, subject: &str) -> Result<()> {
        parse_subject(subject)?;
        let done = sqlx::query("DELETE FROM blocked_subjects WHERE database_id = $1 AND subject = $2")
            .bind(db.as_str())
            .bind(subject)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound { what: "blocked subject" });
        }
        Ok(())
    }

    /// The users and API keys blocked in `db`, most recently blocked first.
    pub async fn blocked_subjects(&self, db: &DatabaseId) -> Result<Vec<BlockedSubject>> {
        let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT subject, blocked_at, reason FROM blocked_subjects WHERE database_id = $1 \
             ORDER BY blocked_at DESC, subject LIMIT 1000",
        )
        .bind(db.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(subject, blocked_at, reason)| BlockedSubject { subject, blocked_at, reason })
            .collect())
    }
}
