//! Apply workers: claim jobs, apply their payloads to the tenant database, record the
//! outcome, wake long-polling downloads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::actor::Actor;
use crate::backends::Backends;
use crate::control::jobs::{Job, JobState};
use crate::control::ControlPlane;
use crate::ids::{SiteHex, TenantId};
use crate::notify::Notifier;
use crate::payloads::PayloadStore;
use crate::{Error, Result};
use cloudsync_protocol::ApplyOutcome;

/// How long a claimed job stays ours without a heartbeat.
pub const LEASE: Duration = Duration::from_secs(30);

/// How one attempt at a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and recorded.
    Applied,
    /// Failed; it will be retried after a backoff.
    Retrying,
    /// Failed for good (dead letter).
    Dead,
    /// The outcome could not be recorded (the job will run again after its lease).
    Unrecorded,
}

impl Outcome {
    /// The outcome's name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Retrying => "retrying",
            Outcome::Dead => "dead",
            Outcome::Unrecorded => "unrecorded",
        }
    }
}

/// Told of every attempt at a job (the service's metrics); must return quickly.
pub trait Observer: Send + Sync {
    /// An attempt ended with `outcome` after `elapsed`, applying `changes` changes.
    fn attempt(&self, outcome: Outcome, elapsed: Duration, changes: i64);
    /// A store failed during an attempt (see [`Error::failed_store`]).
    fn store_error(&self, store: &'static str);
    /// An applied job of `tenant` had `rows` rows its database refused (constraints,
    /// row policies): the rest was applied, these never will be.
    fn refused(&self, tenant: &TenantId, rows: u64);
}

/// Observes nothing.
impl Observer for () {
    fn attempt(&self, _: Outcome, _: Duration, _: i64) {}
    fn store_error(&self, _: &'static str) {}
    fn refused(&self, _: &TenantId, _: u64) {}
}

/// Everything a worker needs, shared by the workers of a node.
pub struct Context<P> {
    /// Control plane.
    pub control: ControlPlane,
    /// Tenant databases.
    pub backends: Arc<Backends>,
    /// Payload store.
    pub payloads: Arc<P>,
    /// Download wake-ups.
    pub notifier: Arc<Notifier>,
    /// Signalled when a job is enqueued on this node.
    pub wake: Arc<Notify>,
    /// This node's lease owner id.
    pub node: String,
    /// Told of every attempt.
    pub observer: Arc<dyn Observer>,
    /// How long one attempt may run (`Budgets::job`): past it the apply is stopped and
    /// the job fails with `time_budget_exceeded`, for good, and its lease is no longer
    /// renewed, so a worker stuck past it anyway loses the job to another.
    pub max_attempt: Duration,
}

/// Starts `n` workers; they stop (releasing their leases) when `shutdown` turns true.
pub fn spawn<P: PayloadStore + 'static>(
    n: usize,
    ctx: Arc<Context<P>>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let ctx = Arc::clone(&ctx);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let owner = format!("{}/{i}", ctx.node);
                loop {
                    if *shutdown.borrow() {
                        break;
                    }
                    match ctx.control.claim(&owner, LEASE).await {
                        Ok(Some(job)) => run(&ctx, &owner, job).await,
                        Ok(None) => {
                            tokio::select! {
                                () = ctx.wake.notified() => {}
                                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "claiming a job failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                match ctx.control.release(&owner).await {
                    Ok(n) if n > 0 => tracing::info!(owner, released = n, "released job leases"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(owner, error = %e, "releasing job leases failed"),
                }
            })
        })
        .collect()
}

/// One attempt at `job`, in a span naming it (every log line of the attempt carries it).
async fn run<P: PayloadStore>(ctx: &Context<P>, owner: &str, job: Job) {
    let span = tracing::info_span!("job", id = job.id, database = %job.database_id, site = %job.site_id);
    attempt(ctx, owner, job).instrument(span).await;
}

async fn attempt<P: PayloadStore>(ctx: &Context<P>, owner: &str, job: Job) {
    let started = std::time::Instant::now();
    // Keep the lease alive while the apply runs, up to its time budget.
    let heartbeat = {
        let control = ctx.control.clone();
        let owner = owner.to_string();
        let id = job.id;
        let until = started + ctx.max_attempt;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if std::time::Instant::now() >= until {
                    tracing::warn!("the job ran past its time budget: its lease is no longer renewed");
                    break;
                }
                if !matches!(control.extend_lease(id, &owner, LEASE).await, Ok(true)) {
                    break;
                }
            }
        })
    };
    let outcome = match tokio::time::timeout(ctx.max_attempt, apply(ctx, &job)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::TimeBudget(ctx.max_attempt)),
    };
    heartbeat.abort();
    let store_error = |e: &Error| {
        if let Some(store) = e.failed_store() {
            ctx.observer.store_error(store);
        }
    };
    let (result, changes) = match outcome {
        Ok((tenant, ApplyOutcome { applied, refused })) => {
            let applied = i64::try_from(applied).unwrap_or(i64::MAX);
            let recorded = ctx.control.complete(job.id, owner, applied, &refused).await;
            ctx.notifier.notify(&job.database_id);
            match recorded {
                Ok(()) => {
                    if refused.is_empty() {
                        tracing::info!(applied, ms = started.elapsed().as_millis(), "job applied");
                    } else {
                        ctx.observer.refused(&tenant, u64::try_from(refused.len()).unwrap_or(u64::MAX));
                        tracing::warn!(
                            applied,
                            refused = refused.len(),
                            first = %format!("{}: ({}) {} {}", refused[0].table, refused[0].key, refused[0].sqlstate, refused[0].message),
                            "job applied; the database refused some rows"
                        );
                    }
                    (Outcome::Applied, applied)
                }
                Err(e) => {
                    store_error(&e);
                    tracing::error!(error = %e, "recording a finished job failed; it will be applied again (harmless)");
                    (Outcome::Unrecorded, applied)
                }
            }
        }
        Err(e) => {
            store_error(&e);
            match ctx.control.fail(&job, owner, &e).await {
                Ok(state) => {
                    tracing::warn!(error = %e, code = e.code(), ?state, attempts = job.attempts, "job failed");
                    (if state == JobState::Dead { Outcome::Dead } else { Outcome::Retrying }, 0)
                }
                Err(e2) => {
                    store_error(&e2);
                    tracing::error!(error = %e, store_error = %e2, "recording a failed job failed");
                    (Outcome::Unrecorded, 0)
                }
            }
        }
    };
    ctx.observer.attempt(result, started.elapsed(), changes);
}

/// Applies `job`'s payload; answers with the tenant whose database it was.
async fn apply<P: PayloadStore>(ctx: &Context<P>, job: &Job) -> Result<(TenantId, ApplyOutcome)> {
    let db = ctx.control.database(&job.database_id).await?;
    let bytes = ctx.payloads.get(&job.object_key).await?;
    // The object its upload validated, not another put at the same key since. Hashing
    // is CPU work: off the async runtime.
    let key = job.object_key.clone();
    let bytes = tokio::task::spawn_blocking(move || crate::payloads::verify_object(&key, &bytes).map(|()| bytes))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    let site = SiteHex::parse(&job.site_id)?.0;
    // Jobs queued before identities were recorded act as an API-key device.
    let actor = job.actor.clone().unwrap_or_else(|| {
        let role = db.settings.roles.api_key.clone();
        Actor { claims: serde_json::json!({ "role": role }), role, user_id: None }
    });
    let applied = ctx.backends.of(&db).apply(bytes, site, &actor).await?;
    Ok((db.tenant_id, applied))
}
