//! Apply workers: claim jobs, apply their payloads to the tenant database, record the
//! outcome, wake long-polling downloads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::backend::SqliteBackends;
use crate::ids::SiteHex;
use crate::jobs::Job;
use crate::notify::Notifier;
use crate::payloads::PayloadStore;
use crate::store::ControlPlane;
use crate::{Error, Result};

/// How long a claimed job stays ours without a heartbeat.
pub const LEASE: Duration = Duration::from_secs(30);

/// Everything a worker needs, shared by the workers of a node.
pub struct Context<P> {
    /// Control plane.
    pub control: ControlPlane,
    /// Tenant databases.
    pub backends: Arc<SqliteBackends>,
    /// Payload store.
    pub payloads: Arc<P>,
    /// Download wake-ups.
    pub notifier: Arc<Notifier>,
    /// Signalled when a job is enqueued on this node.
    pub wake: Arc<Notify>,
    /// This node's lease owner id.
    pub node: String,
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

async fn run<P: PayloadStore>(ctx: &Context<P>, owner: &str, job: Job) {
    let span = tracing::info_span!("job", id = job.id, database = %job.database_id, site = %job.site_id);
    let _enter = span.enter();
    let started = std::time::Instant::now();
    // Keep the lease alive while the apply runs.
    let heartbeat = {
        let control = ctx.control.clone();
        let owner = owner.to_string();
        let id = job.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if !matches!(control.extend_lease(id, &owner, LEASE).await, Ok(true)) {
                    break;
                }
            }
        })
    };
    let outcome = apply(ctx, &job).await;
    heartbeat.abort();
    match outcome {
        Ok(applied) => {
            if let Err(e) = ctx.control.complete(job.id, owner, applied).await {
                tracing::error!(error = %e, "recording a finished job failed; it will be applied again (harmless)");
            }
            ctx.notifier.notify(&job.database_id);
            tracing::info!(applied, ms = started.elapsed().as_millis(), "job applied");
        }
        Err(e) => match ctx.control.fail(&job, owner, &e).await {
            Ok(state) => tracing::warn!(error = %e, code = e.code(), ?state, attempts = job.attempts, "job failed"),
            Err(e2) => tracing::error!(error = %e, store_error = %e2, "recording a failed job failed"),
        },
    }
}

async fn apply<P: PayloadStore>(ctx: &Context<P>, job: &Job) -> Result<i64> {
    let bytes = ctx.payloads.get(&job.object_key).await?;
    let site = SiteHex::parse(&job.site_id)?.0;
    let backends = Arc::clone(&ctx.backends);
    let db = job.database_id.clone();
    let report = tokio::task::spawn_blocking(move || backends.apply(&db, &bytes, site))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    Ok(i64::try_from(report.applied).unwrap_or(i64::MAX))
}
