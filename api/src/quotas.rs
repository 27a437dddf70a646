//! The tenant quotas each node enforces on requests (`docs/security.md#quotas`):
//! request rates (per tenant and per credential, per node), the day's sync transfer
//! (over all nodes), and the storage a tenant's SQLite databases take. A tenant's
//! limits in force and its usage are cached for [`REFRESH`], so that a request pays
//! no control-plane query for them.
//!
//! Approximate by design, and bounded: a change of a tenant's limits reaches the other
//! nodes within [`REFRESH`]; the day's transfer is what every node flushed to the
//! control plane (each flushes every few seconds, `devices::UsageRecorder`) plus what
//! this node moved since it last read it, never less than it last counted; storage is
//! measured at each refresh, so uploads may pass the limit by what they add within one
//! [`REFRESH`] (each is bounded by the body limits, and each database by
//! `--sqlite-max-database-mb` outright).
//!
//! Memory is bounded too: tenants not seen for a while are forgotten, the rate buckets
//! are pruned of full ones by the node's housekeeping, and there is one keyed limiter
//! per distinct rate, shared by every tenant with that rate.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsync_service::control::quotas::{utc_day, Quota, Quotas};
use cloudsync_service::ids::{now_ms, TenantId};
use governor::clock::Clock;
use governor::DefaultKeyedRateLimiter;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// How long a tenant's limits and usage are used before they are read again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// How long a refresh may take before another request starts one of its own (the
/// first was cancelled, or its store is slow).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// A tenant's limits and usage, as last read.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// The limits in force.
    pub quotas: Quotas,
    /// Start of the UTC day `transfer_bytes` counts (Unix ms).
    pub day: i64,
    /// Sync payload bytes moved today, over all nodes.
    pub transfer_bytes: u64,
    /// Bytes its SQLite databases take on this node's disk.
    pub storage_bytes: u64,
}

struct Entry {
    snapshot: Snapshot,
    read_at: Instant,
    refreshing_since: Option<Instant>,
}

/// One keyed limiter per (rate, burst): every bucket with that rate lives in it.
type Limiters = HashMap<(u32, u32), Arc<DefaultKeyedRateLimiter<String>>>;

/// The quotas this node enforces.
#[derive(Default)]
pub struct Enforcer {
    tenants: Mutex<HashMap<TenantId, Entry>>,
    limiters: Mutex<Limiters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Maps of counters and snapshots, each updated in one step: a poisoned lock is
    // still sound.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const MIB: u64 = 1 << 20;

impl Enforcer {
    /// `tenant`'s limits and usage: cached, or read again past [`REFRESH`] or a new
    /// UTC day. While one request reads them, the others use the previous snapshot.
    pub async fn snapshot(&self, state: &AppState, tenant: &TenantId) -> ApiResult<Snapshot> {
        let now = Instant::now();
        let (today, _) = utc_day(now_ms());
        let previous = {
            let mut tenants = lock(&self.tenants);
            match tenants.get_mut(tenant) {
                Some(e) if e.snapshot.day == today => {
                    let refreshing = e.refreshing_since.is_some_and(|t| now.duration_since(t) < REFRESH_TIMEOUT);
                    if now.duration_since(e.read_at) < REFRESH || refreshing {
                        return Ok(e.snapshot);
                    }
                    e.refreshing_since = Some(now);
                    Some(e.snapshot)
                }
                _ => None,
            }
        };
        let read = Self::read(state, tenant, today).await;
        let mut tenants = lock(&self.tenants);
        match read {
            Ok(mut snapshot) => {
                // Never less than counted before today: what this node moved but had
                // not flushed yet when the store was read is still counted.
                let counted = tenants.get(tenant).map(|e| e.snapshot).or(previous).filter(|c| c.day == today);
                if let Some(c) = counted {
                    snapshot.transfer_bytes = snapshot.transfer_bytes.max(c.transfer_bytes);
                }
                tenants.insert(tenant.clone(), Entry { snapshot, read_at: Instant::now(), refreshing_since: None });
                Ok(snapshot)
            }
            Err(e) => {
                if let Some(entry) = tenants.get_mut(tenant) {
                    entry.refreshing_since = None;
                }
                Err(e)
            }
        }
    }

    async fn read(state: &AppState, tenant: &TenantId, today: i64) -> ApiResult<Snapshot> {
        let quotas = state.control.quotas(tenant, state.limits.quotas).await?;
        let transfer_bytes =
            if quotas.transfer_mb_per_day == 0 { 0 } else { state.control.transfer_since(tenant, today).await? };
        let storage_bytes = if quotas.storage_mb == 0 {
            0
        } else {
            let ids = state.control.database_ids(tenant).await?;
            let sqlite = Arc::clone(&state.backends.sqlite);
            tokio::task::spawn_blocking(move || ids.iter().map(|id| sqlite.stored_bytes(id)).sum::<u64>())
                .await
                .map_err(|e| ApiError::Internal(Box::new(e)))?
        };
        Ok(Snapshot { quotas, day: today, transfer_bytes, storage_bytes })
    }

    /// `tenant`'s limits in force.
    pub async fn quotas(&self, state: &AppState, tenant: &TenantId) -> ApiResult<Quotas> {
        Ok(self.snapshot(state, tenant).await?.quotas)
    }

    /// Forgets what this node read of `tenant` (its limits were just changed here).
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.tenants).remove(tenant);
    }

    /// Takes one request of `credential` (its rate-limit bucket) in `tenant` from both
    /// buckets, the credential's first; `429 rate_limited` when either is empty.
    pub async fn take_request(&self, state: &AppState, tenant: &TenantId, credential: &str) -> ApiResult<()> {
        let quotas = self.quotas(state, tenant).await?;
        let per_credential = Quota::RequestsPerSecondPerCredential;
        self.take(state, per_credential, quotas.get(per_credential), credential)?;
        self.take(state, Quota::RequestsPerSecond, quotas.requests_per_second, &format!("tenant:{tenant}"))
    }

    fn take(&self, state: &AppState, quota: Quota, rate: u32, bucket: &str) -> ApiResult<()> {
        let Some(per_second) = NonZeroU32::new(rate) else { return Ok(()) };
        // The node's own per-credential rate keeps its configured burst; any other
        // rate bursts to twice itself.
        let node_rate = quota == Quota::RequestsPerSecondPerCredential
            && rate == state.limits.quotas.requests_per_second_per_credential;
        let burst = if node_rate && state.limits.credential_burst >= rate {
            state.limits.credential_burst
        } else {
            rate.saturating_mul(2)
        };
        let limiter = Arc::clone(lock(&self.limiters).entry((rate, burst)).or_insert_with(|| {
            let burst = NonZeroU32::new(burst).unwrap_or(per_second);
            Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(per_second).allow_burst(burst)))
        }));
        if let Err(not_until) = limiter.check_key(&bucket.to_string()) {
            let wait = not_until.wait_time_from(limiter.clock().now());
            state.metrics.rate_limited.inc();
            return Err(ApiError::OverRate {
                quota,
                limit: rate,
                retry_after_secs: crate::lockout::retry_after_secs(wait),
            });
        }
        Ok(())
    }

    /// Refuses a sync transfer once `tenant` moved its bytes for the UTC day (`429
    /// transfer_quota_exceeded`, with `Retry-After` until the next day).
    pub async fn check_transfer(&self, state: &AppState, tenant: &TenantId) -> ApiResult<()> {
        let s = self.snapshot(state, tenant).await?;
        let limit = s.quotas.transfer_mb_per_day;
        if limit == 0 || s.transfer_bytes < u64::from(limit) * MIB {
            return Ok(());
        }
        let (_, retry_after_secs) = utc_day(now_ms());
        Err(ApiError::OverRate { quota: Quota::TransferMbPerDay, limit, retry_after_secs })
    }

    /// Counts `bytes` of sync payloads `tenant` moved through this node.
    pub fn count_transfer(&self, tenant: &TenantId, bytes: u64) {
        if let Some(e) = lock(&self.tenants).get_mut(tenant) {
            e.snapshot.transfer_bytes = e.snapshot.transfer_bytes.saturating_add(bytes);
        }
    }

    /// Refuses an upload once `tenant`'s SQLite databases hold its storage (`507
    /// storage_quota_exceeded`); nothing of it is kept.
    pub async fn check_storage(&self, state: &AppState, tenant: &TenantId) -> ApiResult<()> {
        let s = self.snapshot(state, tenant).await?;
        let limit = s.quotas.storage_mb;
        if limit == 0 || s.storage_bytes < u64::from(limit) * MIB {
            return Ok(());
        }
        Err(ApiError::OverQuota { quota: Quota::StorageMb, limit })
    }

    /// Forgets tenants not seen for a while, rate buckets that are full again, and
    /// limiters no bucket uses (the node's housekeeping calls it).
    pub fn prune(&self) {
        lock(&self.tenants).retain(|_, e| e.read_at.elapsed() < REFRESH * 6);
        lock(&self.limiters).retain(|_, limiter| {
            limiter.retain_recent();
            !limiter.is_empty() || Arc::strong_count(limiter) > 1
        });
    }

    /// Rate-limit buckets held (for tests and metrics).
    pub fn buckets(&self) -> usize {
        lock(&self.limiters).values().map(|l| l.len()).sum()
    }
}
