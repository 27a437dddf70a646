//! Prometheus metrics of a node (`docs/metrics.md` lists them, with their labels).
//!
//! Counters and histograms count what this node did. Gauges that describe shared state
//! (job queue, active devices) are read from the control plane when `/metrics` is
//! scraped, so every node reports the same values for them: aggregate them with `max`,
//! not `sum`.
//!
//! Label values are bounded: routes by the router, statuses by the codes the service
//! answers, actions, directions, states and outcomes by fixed lists, and tenants by
//! [`TENANT_LABELS`] (tenants beyond that many share the label `other`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use cloudsync_service::control::quotas::Quota;
use cloudsync_service::ids::TenantId;
use cloudsync_service::worker::{Observer, Outcome};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Distinct tenant label values per node; further tenants are counted as `other`.
pub const TENANT_LABELS: usize = 500;

/// How a payload crossed the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Uploaded inline in the upload request.
    UploadInline,
    /// Uploaded to a signed URL, then referenced by the upload request.
    UploadSigned,
    /// Downloaded as a chunk.
    Download,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::UploadInline => "upload_inline",
            Action::UploadSigned => "upload_signed",
            Action::Download => "download",
        }
    }

    fn direction(self) -> &'static str {
        match self {
            Action::Download => "out",
            _ => "in",
        }
    }
}

/// The node's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template and status.
    pub requests: IntCounterVec,
    /// HTTP latency by route template.
    pub latency: HistogramVec,
    /// Payload bytes by tenant and action.
    bytes: IntCounterVec,
    /// Changes by tenant and direction.
    changes: IntCounterVec,
    /// Payloads by action (uploads accepted, download chunks served).
    payloads: IntCounterVec,
    /// Payload sizes by direction.
    payload_size: HistogramVec,
    /// Requests refused by the per-credential rate limit.
    pub rate_limited: IntCounter,
    /// Failed authentications (`failed`) and requests refused from locked-out
    /// addresses (`refused`).
    pub auth_failures: IntCounterVec,
    /// Requests refused by a tenant's quota, by quota.
    pub quota_hits: IntCounterVec,
    /// Failed usage flushes (counters kept for the next flush).
    pub usage_flush_errors: IntCounter,
    /// Rows of applied jobs that tenant databases refused, by tenant.
    refused_rows: IntCounterVec,
    /// Store failures by store.
    store_errors: IntCounterVec,
    /// Job attempts by outcome.
    job_attempts: IntCounterVec,
    /// Duration of job attempts by outcome.
    job_duration: HistogramVec,
    /// Changes applied by jobs.
    job_changes: IntCounter,
    /// Jobs by state (from the control plane).
    jobs: IntGaugeVec,
    /// Age of the oldest waiting job (from the control plane).
    oldest_job: Gauge,
    /// Devices seen within a window (from the control plane).
    active_devices: IntGaugeVec,
    /// Tenants and databases (from the control plane).
    resources: IntGaugeVec,
    /// Connections of this node's pools by pool and state.
    pool: IntGaugeVec,
    /// Waiting downloads and the databases watched for them, on this node.
    long_polls: IntGaugeVec,
    tenants_seen: std::sync::Arc<Mutex<HashSet<String>>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
}

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| must(IntCounterVec::new(Opts::new(name, help), labels));
        let gauge = |name: &str, help: &str, labels: &[&str]| must(IntGaugeVec::new(Opts::new(name, help), labels));
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            must(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels))
        };
        let sizes: Vec<f64> = (6..=28).step_by(2).map(|p| f64::from(1u32 << p)).collect();
        let m = Metrics {
            registry: Registry::new(),
            requests: counter(
                "cloudsync_http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            latency: histogram(
                "cloudsync_http_request_duration_seconds",
                "HTTP request latency by route",
                &["route"],
                LATENCY_BUCKETS.to_vec(),
            ),
            bytes: counter(
                "cloudsync_sync_bytes_total",
                "Payload bytes by tenant and action",
                &["tenant", "action", "direction"],
            ),
            changes: counter(
                "cloudsync_sync_changes_total",
                "Changes by tenant and direction",
                &["tenant", "direction"],
            ),
            payloads: counter(
                "cloudsync_sync_payloads_total",
                "Payloads by action: uploads accepted, download chunks served",
                &["action"],
            ),
            payload_size: histogram(
                "cloudsync_payload_size_bytes",
                "Sizes of uploaded payloads and downloaded chunks",
                &["direction"],
                sizes,
            ),
            rate_limited: must(IntCounter::new(
                "cloudsync_rate_limited_total",
                "Requests refused by the per-credential rate limit",
            )),
            auth_failures: counter(
                "cloudsync_auth_failures_total",
                "Authentications refused as guesses (failed), and requests refused from locked-out addresses (refused)",
                &["outcome"],
            ),
            quota_hits: counter(
                "cloudsync_quota_hits_total",
                "Requests refused by a tenant's quota, by quota",
                &["quota"],
            ),
            refused_rows: counter(
                "cloudsync_refused_rows_total",
                "Rows of applied uploads that the tenant's database refused (constraints, row policies), by tenant",
                &["tenant"],
            ),
            usage_flush_errors: must(IntCounter::new(
                "cloudsync_usage_flush_errors_total",
                "Failed usage flushes (their counters are kept for the next one)",
            )),
            store_errors: counter("cloudsync_store_errors_total", "Store failures by store", &["store"]),
            job_attempts: counter("cloudsync_job_attempts_total", "Job attempts by outcome", &["outcome"]),
            job_duration: histogram(
                "cloudsync_job_duration_seconds",
                "Duration of job attempts (fetch, apply, record) by outcome",
                &["outcome"],
                LATENCY_BUCKETS.to_vec(),
            ),
            job_changes: must(IntCounter::new("cloudsync_job_changes_applied_total", "Changes applied by jobs")),
            jobs: gauge("cloudsync_jobs", "Jobs by state, service-wide (read from the control plane)", &["state"]),
            oldest_job: must(Gauge::new(
                "cloudsync_job_oldest_waiting_seconds",
                "Age of the oldest pending or running job, service-wide (0 when none)",
            )),
            active_devices: gauge(
                "cloudsync_active_devices",
                "Devices seen within the window, service-wide",
                &["window"],
            ),
            resources: gauge(
                "cloudsync_resources",
                "Tenants, databases and devices failing to receive, service-wide",
                &["kind"],
            ),
            pool: gauge("cloudsync_pool_connections", "Connections of this node's pools", &["pool", "state"]),
            long_polls: gauge(
                "cloudsync_long_polls",
                "Downloads waiting for changes on this node, and the databases one watcher each polls for them",
                &["kind"],
            ),
            tenants_seen: std::sync::Arc::default(),
        };
        let build = must(IntGaugeVec::new(
            Opts::new("cloudsync_build_info", "Build information (value 1)"),
            &["version", "rustc"],
        ));
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("CLOUDSYNC_RUSTC").unwrap_or("unknown")])
            .set(1);
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.latency.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.changes.clone()),
            Box::new(m.payloads.clone()),
            Box::new(m.payload_size.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.quota_hits.clone()),
            Box::new(m.usage_flush_errors.clone()),
            Box::new(m.refused_rows.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.job_attempts.clone()),
            Box::new(m.job_duration.clone()),
            Box::new(m.job_changes.clone()),
            Box::new(m.jobs.clone()),
            Box::new(m.oldest_job.clone()),
            Box::new(m.active_devices.clone()),
            Box::new(m.resources.clone()),
            Box::new(m.pool.clone()),
            Box::new(m.long_polls.clone()),
            Box::new(build),
        ];
        for c in collectors {
            must(m.registry.register(c));
        }
        // Series that exist from the start, so dashboards and alerts see zeros, not gaps.
        for outcome in [Outcome::Applied, Outcome::Retrying, Outcome::Dead, Outcome::Unrecorded] {
            m.job_attempts.with_label_values(&[outcome.name()]);
        }
        for outcome in ["failed", "refused"] {
            m.auth_failures.with_label_values(&[outcome]);
        }
        let quotas = Quota::ALL.iter().map(|q| q.name());
        for quota in quotas.chain(["storage", "new_sites_per_hour"]) {
            m.quota_hits.with_label_values(&[quota]);
        }
        for store in ["control", "payload", "backend"] {
            m.store_errors.with_label_values(&[store]);
        }
        for action in [Action::UploadInline, Action::UploadSigned, Action::Download] {
            m.payloads.with_label_values(&[action.name()]);
        }
        m
    }

    /// The label of `tenant`: its id while fewer than [`TENANT_LABELS`] tenants have
    /// been labelled on this node, else `other`.
    fn tenant_label(&self, tenant: &TenantId) -> String {
        let mut seen = self.tenants_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(tenant.as_str()) {
            return tenant.to_string();
        }
        if seen.len() < TENANT_LABELS {
            seen.insert(tenant.to_string());
            return tenant.to_string();
        }
        "other".into()
    }

    /// Counts a payload of `bytes` carrying `changes` changes of `tenant`.
    pub fn payload(&self, tenant: &TenantId, action: Action, bytes: usize, changes: u64) {
        let t = self.tenant_label(tenant);
        let dir = action.direction();
        self.bytes.with_label_values(&[t.as_str(), action.name(), dir]).inc_by(bytes as u64);
        self.changes.with_label_values(&[t.as_str(), dir]).inc_by(changes);
        self.payloads.with_label_values(&[action.name()]).inc();
        #[allow(clippy::cast_precision_loss)] // a histogram observation
        self.payload_size.with_label_values(&[dir]).observe(bytes as f64);
    }

    /// Counts a store failure, when `e` is one.
    pub fn count_store_error(&self, e: &cloudsync_service::Error) {
        if let Some(store) = e.failed_store() {
            self.store_errors.with_label_values(&[store]).inc();
        }
    }

    /// Counts a store failure of `store` (`control`, `payload` or `backend`).
    pub fn store_failed(&self, store: &str) {
        self.store_errors.with_label_values(&[store]).inc();
    }

    /// Refreshes the gauges read from shared state and this node's pools.
    pub async fn refresh(&self, state: &crate::AppState) {
        match state.control.overview(cloudsync_service::control::overview::Scope::all()).await {
            Ok(o) => {
                let q = &o.queue;
                for (s, n) in [
                    ("pending", q.pending - q.retrying),
                    ("retrying", q.retrying),
                    ("running", q.running),
                    ("dead", q.dead),
                ] {
                    self.jobs.with_label_values(&[s]).set(n);
                }
                #[allow(clippy::cast_precision_loss)] // seconds as a gauge
                self.oldest_job.set(q.oldest_waiting_ms.unwrap_or(0) as f64 / 1000.0);
                self.active_devices.with_label_values(&["1h"]).set(o.active_hour);
                self.active_devices.with_label_values(&["24h"]).set(o.active_day);
                self.resources.with_label_values(&["tenants"]).set(o.tenants);
                self.resources.with_label_values(&["databases"]).set(o.databases);
                self.resources.with_label_values(&["devices_failing_to_receive"]).set(o.receive_failing);
            }
            Err(e) => {
                self.count_store_error(&e);
                tracing::warn!(error = %e, "reading the control plane for /metrics failed");
            }
        }
        let pool = state.control.pool();
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool.with_label_values(&["control", "idle"]).set(idle);
        self.pool.with_label_values(&["control", "in_use"]).set(i64::from(pool.size()) - idle);
        self.pool
            .with_label_values(&["backend", "idle"])
            .set(i64::try_from(state.backends.idle_connections()).unwrap_or(i64::MAX));
        self.pool
            .with_label_values(&["backend", "in_use"])
            .set(i64::try_from(state.backends.in_use()).unwrap_or(i64::MAX));
        self.long_polls
            .with_label_values(&["waiting"])
            .set(i64::try_from(state.notifier.waiting()).unwrap_or(i64::MAX));
        self.long_polls
            .with_label_values(&["watched_databases"])
            .set(i64::try_from(state.notifier.watched()).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Observer for Metrics {
    fn attempt(&self, outcome: Outcome, elapsed: Duration, changes: i64) {
        self.job_attempts.with_label_values(&[outcome.name()]).inc();
        self.job_duration.with_label_values(&[outcome.name()]).observe(elapsed.as_secs_f64());
        self.job_changes.inc_by(u64::try_from(changes).unwrap_or(0));
    }

    fn store_error(&self, store: &'static str) {
        self.store_failed(store);
    }

    fn refused(&self, tenant: &TenantId, rows: u64) {
        self.refused_rows.with_label_values(&[&self.tenant_label(tenant)]).inc_by(rows);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
