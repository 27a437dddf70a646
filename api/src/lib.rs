//! The CloudSync HTTP API.
//!
//! [`router`] builds the whole axum application from an [`AppState`], so tests call it
//! directly. Routes: the sync protocol ([`routes::sync`]), the admin REST API
//! ([`routes::admin`]), the folder store's signed URLs ([`routes::blobs`]), health and
//! metrics ([`routes::health`]). Errors are mapped once, in [`error::ApiError`].
//!
//! This crate does not open stores or parse configuration; the `cloudsync` binary
//! does, and hands the result over in [`AppState`].

pub mod auth;
pub mod error;
pub mod metrics;
pub mod routes {
    //! Route handlers, one module per area.
    pub mod admin;
    pub mod blobs;
    pub mod health;
    pub mod sync;
}

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use cloudsync_tenants::backend::SqliteBackends;
use cloudsync_tenants::ids::DatabaseId;
use cloudsync_tenants::notify::Notifier;
use cloudsync_tenants::payloads::{AnyStore, FolderStore};
use cloudsync_tenants::store::ControlPlane;
use tokio::sync::{watch, Notify};

pub use metrics::Metrics;

/// Request size limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest payload accepted inline in an upload request.
    pub inline_bytes: usize,
    /// Largest payload accepted through a signed upload URL.
    pub upload_bytes: usize,
    /// Largest JSON body of the admin API.
    pub json_bytes: usize,
    /// Download chunk size (uncompressed estimate).
    pub chunk_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { inline_bytes: 1 << 20, upload_bytes: 256 << 20, json_bytes: 1 << 20, chunk_bytes: 4 << 20 }
    }
}

/// Everything handlers share.
pub struct Inner {
    /// Control-plane store.
    pub control: ControlPlane,
    /// Tenant databases.
    pub backends: Arc<SqliteBackends>,
    /// Payload store.
    pub payloads: Arc<AnyStore>,
    /// The folder store, when that is the payload store (its signed URLs are served here).
    pub folder: Option<FolderStore>,
    /// Download wake-ups.
    pub notifier: Arc<Notifier>,
    /// Wakes this node's apply workers.
    pub wake: Arc<Notify>,
    /// The operator's token.
    pub admin_token: String,
    /// Base URL devices use to reach this service.
    pub public_url: String,
    /// Size limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Metrics,
    /// Turns true when the node shuts down (long-polls return at once).
    pub shutdown: watch::Receiver<bool>,
    /// Bounds concurrent blocking database work of requests (a wave of long-polls
    /// woken together queues here instead of opening a connection each).
    pub db_permits: tokio::sync::Semaphore,
}

impl Inner {
    /// Runs blocking tenant-database work on the blocking pool, within a permit.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> cloudsync_tenants::Result<T> + Send + 'static,
    ) -> Result<T, error::ApiError> {
        let _permit = self.db_permits.acquire().await.map_err(|e| error::ApiError::Internal(Box::new(e)))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| error::ApiError::Internal(Box::new(e)))?.map_err(Into::into)
    }
}

/// Permits for blocking database work: enough to keep every core busy while one call
/// waits on I/O, few enough that a burst does not open a connection per request.
pub fn default_db_permits() -> tokio::sync::Semaphore {
    let cores = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2);
    tokio::sync::Semaphore::new((cores * 4).min(cloudsync_tenants::backend::IDLE_PER_DATABASE))
}

/// Shared state of the application (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The single string a device passes to `cloudsync_network_init`.
    pub fn sync_url(&self, db: &DatabaseId) -> String {
        format!("{}/v1/sync/{db}", self.public_url.trim_end_matches('/'))
    }
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.requests.with_label_values(&[route.as_str(), resp.status().as_str()]).inc();
    state.metrics.latency.with_label_values(&[route.as_str()]).observe(started.elapsed().as_secs_f64());
    resp
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let sync = Router::new()
        .route(
            "/v1/sync/{db}/changes",
            post(routes::sync::upload).get(routes::sync::download).layer(DefaultBodyLimit::max(limits.inline_bytes)),
        )
        .route("/v1/sync/{db}/uploads", post(routes::sync::new_upload))
        .route("/v1/sync/{db}/status", get(routes::sync::status));
    let admin = Router::new()
        .route("/v1/tenants", post(routes::admin::create_tenant))
        .route("/v1/tenants/{tenant}/databases", post(routes::admin::create_database))
        .route("/v1/tenants/{tenant}/databases/{db}/schema", post(routes::admin::apply_schema))
        .route("/v1/tenants/{tenant}/api-keys", post(routes::admin::create_api_key))
        .layer(DefaultBodyLimit::max(limits.json_bytes));
    let blobs = Router::new()
        .route("/v1/blobs/{*key}", put(routes::blobs::put).get(routes::blobs::get))
        .layer(DefaultBodyLimit::max(limits.upload_bytes));
    let ops = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics));
    Router::new()
        .merge(sync)
        .merge(admin)
        .merge(blobs)
        .merge(ops)
        .fallback(|| async { error::ApiError::NotFound("route".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}
