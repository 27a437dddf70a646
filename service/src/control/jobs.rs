//! The durable apply queue.
//!
//! An upload becomes a row in `jobs` (committed with `synchronous = FULL` before the
//! upload is acknowledged). Workers **claim** a job with a lease; only the oldest
//! unfinished job of a database can be claimed, so jobs of one database apply strictly
//! in upload order while different databases proceed in parallel. A failed job is
//! retried with exponential backoff while its error is retryable, up to
//! [`MAX_ATTEMPTS`]; otherwise it moves to the visible dead-letter state `dead`, with
//! its error kept, and stops blocking the jobs behind it (merges commute, so order only
//! matters for fairness). A lease that expires (the worker died) makes the job
//! claimable again: applying a payload twice is harmless.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use cloudsync_protocol::RefusedRow;

use crate::actor::Actor;
use crate::control::ControlPlane;
use crate::ids::{now_ms, DatabaseId, SiteHex};
use crate::page::{Page, PageRequest};
use crate::{Error, Result};

/// Attempts before a retryable failure becomes a dead letter.
pub const MAX_ATTEMPTS: i64 = 8;

/// State of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting (new, or retrying after a backoff).
    Pending,
    /// Claimed by a worker (until its lease expires).
    Running,
    /// Applied.
    Done,
    /// Failed for good; the error is kept.
    Dead,
    /// Dropped by an operator without being applied.
    Discarded,
}

impl JobState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Discarded => "discarded",
        }
    }

    fn parse(s: &str) -> Result<JobState> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            "discarded" => JobState::Discarded,
            other => return Err(Error::Invalid(format!("unknown job state {other}"))),
        })
    }
}

/// A job as stored.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Id (increasing in upload order).
    pub id: i64,
    /// Target database.
    pub database_id: DatabaseId,
    /// Uploading device.
    pub site_id: String,
    /// Where the payload is in the payload store.
    pub object_key: String,
    /// Payload size.
    pub bytes: i64,
    /// Device feed position the payload starts after.
    pub from_cursor: String,
    /// Device feed position the payload ends at.
    pub to_cursor: String,
    /// State.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error code, if any.
    pub error_code: Option<String>,
    /// Last error message, if any.
    pub error_message: Option<String>,
    /// Whether the last error was retryable.
    pub retryable: Option<bool>,
    /// Changes applied (when done).
    pub applied: Option<i64>,
    /// Rows the database refused when the job was applied (the rest was applied).
    pub refused: Vec<RefusedRow>,
    /// Who uploaded it; the job is applied as them.
    #[serde(skip)]
    pub actor: Option<Actor>,
    /// Upload time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

pub(crate) fn job_of(r: &sqlx::any::AnyRow) -> Result<Job> {
    Ok(Job {
        id: r.try_get("id")?,
        database_id: DatabaseId::parse(r.try_get::<&str, _>("database_id")?)?,
        site_id: r.try_get("site_id")?,
        object_key: r.try_get("object_key")?,
        bytes: r.try_get("bytes")?,
        from_cursor: r.try_get("from_cursor")?,
        to_cursor: r.try_get("to_cursor")?,
        state: JobState::parse(r.try_get::<&str, _>("state")?)?,
        attempts: r.try_get("attempts")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        retryable: r.try_get::<Option<i64>, _>("retryable")?.map(|v| v != 0),
        applied: r.try_get("applied")?,
        refused: match r.try_get::<Option<String>, _>("refused")? {
            Some(j) => serde_json::from_str(&j).map_err(|e| Error::Invalid(format!("stored refused rows: {e}")))?,
            None => Vec::new(),
        },
        actor: match r.try_get::<Option<String>, _>("actor")? {
            Some(j) => Some(serde_json::from_str(&j).map_err(|e| Error::Invalid(format!("stored actor: {e}")))?),
            None => None,
        },
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A new upload to apply.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Target database.
    pub database_id: DatabaseId,
    /// Uploading device.
    pub site: SiteHex,
    /// Payload location.
    pub object_key: String,
    /// Payload size.
    pub bytes: i64,
    /// Device feed position the payload starts after.
    pub from_cursor: String,
    /// Device feed position the payload ends at.
    pub to_cursor: String,
    /// Who uploaded it.
    pub actor: Actor,
}

pub use cloudsync_protocol::sync::{DeviceStatus, Failure, ReceiveFailing, Refusal};

/// Backoff before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(2u64.saturating_pow(exp).min(300))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ControlPlane {
    /// Records an upload as a pending job. Returns once the row is committed.
    pub async fn enqueue(&self, job: NewJob) -> Result<Job> {
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO jobs (database_id, site_id, object_key, bytes, from_cursor, to_cursor, state, attempts, \
             next_attempt_at, created_at, updated_at, actor) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7, $8) \
             RETURNING *",
        )
        .bind(job.database_id.as_str())
        .bind(job.site.to_string())
        .bind(&job.object_key)
        .bind(job.bytes)
        .bind(&job.from_cursor)
        .bind(&job.to_cursor)
        .bind(now)
        .bind(serde_json::to_string(&job.actor).map_err(|e| Error::Invalid(e.to_string()))?)
        .fetch_one(&self.pool)
        .await?;
        job_of(&row)
    }

    /// Claims a claimable job — the head of its database's queue, pending and due, or
    /// running with an expired lease — of the tenant running the fewest jobs now
    /// (service-wide), the oldest first: a tenant flooding the queue across many
    /// databases gets the workers nobody else waits for, and the next free worker goes
    /// to any other tenant with a job waiting. A job holds its worker at most its
    /// budget (`Budgets::job`).
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<Job>> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT j.id FROM jobs j JOIN databases d ON d.id = j.database_id \
                 WHERE ((j.state = 'pending' AND j.next_attempt_at <= $3) OR (j.state = 'running' AND j.lease_until < $3)) \
                   AND j.id = (SELECT min(k.id) FROM jobs k WHERE k.database_id = j.database_id AND k.state IN ('pending', 'running')) \
                 ORDER BY (SELECT count(*) FROM jobs r JOIN databases rd ON rd.id = r.database_id \
                           WHERE rd.tenant_id = d.tenant_id AND r.state = 'running' AND r.lease_until >= $3), j.id \
                 LIMIT 1) \
             AND ((state = 'pending' AND next_attempt_at <= $3) OR (state = 'running' AND lease_until < $3)) \
             RETURNING *",
        )
        .bind(owner)
        .bind(now + ms(lease))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_of).transpose()
    }

    /// Extends the lease of a job this owner holds. False if it lost the job.
    pub async fn extend_lease(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        )
        .bind(now + ms(lease))
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks a job applied.
    pub async fn complete(&self, id: i64, owner: &str, applied: i64, refused: &[RefusedRow]) -> Result<()> {
        let now = now_ms();
        let refused = if refused.is_empty() {
            None
        } else {
            Some(serde_json::to_string(refused).map_err(|e| Error::Invalid(e.to_string()))?)
        };
        sqlx::query(
            "UPDATE jobs SET state = 'done', applied = $1, lease_owner = NULL, lease_until = NULL, updated_at = $2, \
             finished_at = $2, error_code = NULL, error_message = NULL, retryable = NULL, refused = $5 \
             WHERE id = $3 AND lease_owner = $4",
        )
        .bind(applied)
        .bind(now)
        .bind(id)
        .bind(owner)
        .bind(refused)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt: back to pending after a backoff while the error is
    /// retryable and attempts remain, dead otherwise. Returns the new state.
    pub async fn fail(&self, job: &Job, owner: &str, error: &Error) -> Result<JobState> {
        let now = now_ms();
        let retry = error.retryable() && job.attempts < MAX_ATTEMPTS;
        let state = if retry { JobState::Pending } else { JobState::Dead };
        sqlx::query(
            "UPDATE jobs SET state = $1, next_attempt_at = $2, lease_owner = NULL, lease_until = NULL, error_code = $3, \
             error_message = $4, retryable = $5, updated_at = $6, finished_at = $7 WHERE id = $8 AND lease_owner = $9",
        )
        .bind(if retry { "pending" } else { "dead" })
        .bind(now + ms(backoff(job.attempts)))
        .bind(error.code())
        // Devices read it in their status: nothing of the node (the log has it all).
        .bind(error.public_message())
        .bind(i64::from(retry))
        .bind(now)
        .bind(if retry { None } else { Some(now) })
        .bind(job.id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(state)
    }

    /// Prunes jobs finished (applied, dead or discarded) more than `older_than` ago,
    /// with the claims they kept and their refused rows, in every site that has no job
    /// waiting or running — except each site's newest job, from which its status reads
    /// the positions the server accepted and confirmed. Returns the jobs deleted.
    pub async fn prune_jobs(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_ms() - ms(older_than);
        let deleted = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('done', 'dead', 'discarded') AND finished_at < $1 \
             AND id < (SELECT max(k.id) FROM jobs k WHERE k.database_id = jobs.database_id AND k.site_id = jobs.site_id) \
             AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.database_id = jobs.database_id \
                 AND p.site_id = jobs.site_id AND p.state IN ('pending', 'running'))",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        // The newest job of a site stays, without the identity it no longer needs once
        // it can never run again (a dead job can be retried: it keeps whom it acts for,
        // rather than ever running as someone else).
        sqlx::query(
            "UPDATE jobs SET actor = NULL WHERE state IN ('done', 'discarded') AND finished_at < $1 \
             AND actor IS NOT NULL",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(deleted)
    }

    /// Releases every lease `owner` holds (graceful shutdown): its running jobs become
    /// pending again, immediately claimable by another node.
    pub async fn release(&self, owner: &str) -> Result<u64> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = $1, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1 WHERE lease_owner = $2 AND state = 'running'",
        )
        .bind(now)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Operator action: apply a backing-off or dead job again now, with a fresh set of
    /// attempts.
    pub async fn retry_job(&self, db: &DatabaseId, id: i64) -> Result<Job> {
        self.operator_transition(
            db,
            id,
            "state = 'pending', next_attempt_at = $1, attempts = 0, updated_at = $1, finished_at = NULL",
            "retried",
        )
        .await
    }

    /// Operator action: drop a waiting or dead job without applying it.
    pub async fn discard_job(&self, db: &DatabaseId, id: i64) -> Result<Job> {
        self.operator_transition(db, id, "state = 'discarded', updated_at = $1, finished_at = $1", "discarded").await
    }

    /// Applies `set` (with `$1` = now) to a pending or dead job; `Conflict` in any
    /// other state (a running job belongs to a worker, a finished one is history).
    async fn operator_transition(&self, db: &DatabaseId, id: i64, set: &'static str, verb: &str) -> Result<Job> {
        let sql = format!("UPDATE jobs SET {set} WHERE id = $2 AND database_id = $3 AND state IN ('pending', 'dead')");
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(id)
            .bind(db.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        let job = self.job(db, id).await?;
        if n == 0 {
            return Err(Error::Conflict(format!("job {id} is {} and cannot be {verb}", job.state.name())));
        }
        Ok(job)
    }

    /// A job by id, within a database.
    pub async fn job(&self, db: &DatabaseId, id: i64) -> Result<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND database_id = $2")
            .bind(id)
            .bind(db.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_of).transpose()?.ok_or(Error::NotFound { what: "job" })
    }

    /// A page of a database's jobs, newest first, optionally only those in `state`.
    pub async fn jobs(&self, db: &DatabaseId, state: Option<JobState>, page: &PageRequest) -> Result<Page<Job>> {
        let before = match &page.after {
            None => i64::MAX,
            Some(_) => page.after_int()?,
        };
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE database_id = $1 AND ($2 = '' OR state = $2) AND id < $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(db.as_str())
        .bind(state.map_or("", JobState::name))
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(job_of).collect::<Result<Vec<_>>>()?;
        Ok(page.page(items, |j| j.id.to_string()))
    }

    /// What the server knows of a device's uploads.
    pub async fn device_status(&self, db: &DatabaseId, site: &SiteHex) -> Result<DeviceStatus> {
        let site = site.to_string();
        // One read transaction: the answers must describe one moment, not a job seen
        // running by one query and done by the next.
        let mut tx = self.pool.begin().await?;
        let accepted: Option<String> = sqlx::query_scalar(
            "SELECT to_cursor FROM jobs WHERE database_id = $1 AND site_id = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_optional(&mut *tx)
        .await?;
        let confirmed: Option<String> = sqlx::query_scalar(
            "SELECT to_cursor FROM jobs WHERE database_id = $1 AND site_id = $2 AND state IN ('done', 'dead', 'discarded') AND id < \
             coalesce((SELECT min(id) FROM jobs WHERE database_id = $1 AND site_id = $2 AND state IN ('pending', 'running')), \
             9223372036854775807) ORDER BY id DESC LIMIT 1",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_optional(&mut *tx)
        .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE database_id = $1 AND site_id = $2 AND state IN ('pending', 'running')",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_one(&mut *tx)
        .await?;
        let dead: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE database_id = $1 AND site_id = $2 AND state = 'dead'")
                .bind(db.as_str())
                .bind(&site)
                .fetch_one(&mut *tx)
                .await?;
        let rows = sqlx::query(
            "SELECT id, state, error_code, error_message, retryable, updated_at FROM jobs WHERE database_id = $1 \
             AND site_id = $2 AND error_code IS NOT NULL ORDER BY id DESC LIMIT 20",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_all(&mut *tx)
        .await?;
        let failures = rows
            .iter()
            .map(|r| {
                Ok(Failure {
                    job: r.try_get("id")?,
                    code: r.try_get::<Option<String>, _>("error_code")?.unwrap_or_default(),
                    message: r.try_get::<Option<String>, _>("error_message")?.unwrap_or_default(),
                    retryable: r.try_get::<Option<i64>, _>("retryable")?.unwrap_or(0) != 0,
                    failed_at: r.try_get("updated_at")?,
                    state: r.try_get("state")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT id, refused, finished_at, to_cursor FROM jobs WHERE database_id = $1 AND site_id = $2 \
             AND refused IS NOT NULL ORDER BY id DESC LIMIT 20",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_all(&mut *tx)
        .await?;
        let mut refused = Vec::new();
        for r in &rows {
            let job: i64 = r.try_get("id")?;
            let at: Option<i64> = r.try_get("finished_at")?;
            let upto: String = r.try_get("to_cursor")?;
            let list: Vec<RefusedRow> = serde_json::from_str(&r.try_get::<String, _>("refused")?)
                .map_err(|e| Error::Invalid(format!("stored refused rows: {e}")))?;
            refused.extend(list.into_iter().map(|row| Refusal {
                job,
                row,
                retryable: false,
                refused_at: at.unwrap_or(0),
                upto: upto.clone(),
            }));
        }
        let receive: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT receive_error_code, receive_error_message, receive_failing_since FROM devices \
             WHERE database_id = $1 AND site_id = $2",
        )
        .bind(db.as_str())
        .bind(&site)
        .fetch_optional(&mut *tx)
        .await?;
        let receive = match receive {
            Some((Some(code), message, Some(since))) => {
                Some(ReceiveFailing { code, message: message.unwrap_or_default(), since })
            }
            _ => None,
        };
        tx.commit().await?;
        Ok(DeviceStatus { accepted, confirmed, pending, dead, failures, refused, receive })
    }
}
