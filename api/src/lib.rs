//! The CloudSync HTTP API.
//!
//! [`router`] builds the whole axum application from an [`AppState`], so tests call it
//! directly. Routes: the sync protocol ([`routes::sync`]), tenant management
//! ([`routes::tenants`], [`routes::databases`], [`routes::credentials`],
//! [`routes::devices`]), the folder store's signed URLs ([`routes::blobs`]), health and
//! metrics ([`routes::health`]), and the OpenAPI document generated from them
//! ([`openapi`]). Errors are mapped once, in [`error::ApiError`]; callers are
//! authenticated once, in [`auth::Caller`].
//!
//! This crate does not open stores or parse configuration; the `cloudsync` binary
//! does, and hands the result over in [`AppState`].

pub mod auth;
pub mod error;
pub mod extract;
pub mod hygiene;
pub mod lockout;
pub mod longpolls;
pub mod metrics;
pub mod openapi;
pub mod quotas;
pub mod routes {
    //! Route handlers, one module per area.
    pub mod blobs;
    pub mod credentials;
    pub mod databases;
    pub mod devices;
    pub mod health;
    pub mod sync;
    pub mod tenants;
}

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cloudsync_service::backends::Backends;
use cloudsync_service::control::devices::UsageRecorder;
use cloudsync_service::control::identity::Verifier;
use cloudsync_service::control::ControlPlane;
use cloudsync_service::ids::DatabaseId;
use cloudsync_service::notify::Notifier;
use cloudsync_service::payloads::{AnyStore, FolderStore};
use secrecy::SecretString;
use tokio::sync::{watch, Notify};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Most bytes an uploaded payload may declare once decompressed, in all.
    pub payload_raw_bytes: u64,
    /// New site ids one user or API key may start syncing with per hour, across its
    /// tenant's databases (0: no limit).
    pub new_sites_per_hour: u32,
    /// Every tenant's quotas unless an operator set its own.
    pub quotas: cloudsync_service::control::quotas::Quotas,
    /// Burst of the node's per-credential request rate (`--rate-burst`; below that
    /// rate, or for a rate set per tenant: twice the rate).
    pub credential_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inline_bytes: 1 << 20,
            upload_bytes: 256 << 20,
            json_bytes: 256 << 10,
            chunk_bytes: 4 << 20,
            payload_raw_bytes: 64 << 20,
            new_sites_per_hour: 100,
            quotas: cloudsync_service::control::quotas::Quotas::default(),
            credential_burst: 0,
        }
    }
}

/// Everything handlers share.
pub struct Inner {
    /// Control-plane store.
    pub control: ControlPlane,
    /// Tenant databases.
    pub backends: Arc<Backends>,
    /// Payload store.
    pub payloads: Arc<AnyStore>,
    /// The folder store, when that is the payload store (its signed URLs are served here).
    pub folder: Option<FolderStore>,
    /// Download wake-ups.
    pub notifier: Arc<Notifier>,
    /// Wakes this node's apply workers.
    pub wake: Arc<Notify>,
    /// The operator's token (never printed).
    pub admin_token: SecretString,
    /// Base URL devices use to reach this service.
    pub public_url: String,
    /// Size limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Metrics,
    /// Turns true when the node shuts down (long-polls return at once).
    pub shutdown: watch::Receiver<bool>,
    /// Verifies tenants' JWTs (caches JWKS documents).
    pub verifier: Verifier,
    /// Where tenant-supplied URLs may lead (the verifier and the PostgreSQL backends
    /// hold the same policy).
    pub egress: Arc<cloudsync_service::egress::Egress>,
    /// Sync-request counters, flushed to the control plane periodically.
    pub usage: UsageRecorder,
    /// Tenants' quotas, as this node enforces them.
    pub quotas: quotas::Enforcer,
    /// Payloads being read and decoded for an upload at once ([`decode_permit_count`]):
    /// with [`Limits::payload_raw_bytes`], what uploads may hold in memory.
    pub decoding: tokio::sync::Semaphore,
    /// Who may read `/metrics`, and where.
    pub metrics_access: MetricsAccess,
    /// Downloads waiting on this node, by tenant and credential.
    pub long_polls: longpolls::LongPolls,
    /// Failed authentications per client address (`None`: not limited).
    pub lockout: Option<lockout::Lockout>,
    /// The header the operator's proxy puts the client's address in (`None`: the
    /// connection's peer is the client).
    pub client_address_header: Option<axum::http::HeaderName>,
}

/// Who may read `/metrics` (`docs/metrics.md`).
#[derive(Default)]
pub struct MetricsAccess {
    /// A bearer token it requires (None: none).
    pub token: Option<SecretString>,
    /// Served only by [`metrics_router`] on its own address: the application's
    /// `/metrics` answers 404.
    pub separate: bool,
}

/// `/metrics` alone, for a separate listener (`--metrics-listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics_here))
        .fallback(|| async { error::ApiError::NotFound("route".into()) })
        .with_state(state)
}

/// Uploads decoded at once: one per core (decoding is CPU work off the async runtime).
pub fn decode_permit_count() -> usize {
    std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2)
}

/// Concurrent blocking calls to SQLite tenant databases ([`Backends::new`]): enough to
/// keep every core busy while one call waits on I/O, few enough that a burst (a wave
/// of long-polls woken together) queues instead of opening a connection per request.
pub fn db_permit_count() -> usize {
    let cores = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2);
    (cores * 4).min(cloudsync_service::backends::sqlite::IDLE_PER_DATABASE)
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
    if let Some(error::StoreFailure(store)) = resp.extensions().get::<error::StoreFailure>() {
        state.metrics.store_failed(store);
    }
    if let Some(error::QuotaHit(quota)) = resp.extensions().get::<error::QuotaHit>() {
        state.metrics.quota_hits.with_label_values(&[quota]).inc();
    }
    state.metrics.requests.with_label_values(&[route.as_str(), resp.status().as_str()]).inc();
    state.metrics.latency.with_label_values(&[route.as_str()]).observe(started.elapsed().as_secs_f64());
    resp
}

/// The API's routes and their OpenAPI description, built together.
fn api(limits: Limits) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{blobs, credentials, databases, devices, health, sync, tenants};
    let (sync_routes, sync_doc) = OpenApiRouter::new()
        .routes(routes!(sync::upload, sync::download))
        .routes(routes!(sync::new_upload))
        .routes(routes!(sync::status))
        .routes(routes!(sync::receive))
        .routes(routes!(sync::device_schema))
        .routes(routes!(sync::visibility))
        .split_for_parts();
    let (manage, manage_doc) = OpenApiRouter::new()
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::update_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::suspend_tenant))
        .routes(routes!(tenants::resume_tenant))
        .routes(routes!(tenants::tenant_usage))
        .routes(routes!(tenants::get_quotas, tenants::set_quotas))
        .routes(routes!(databases::create_database, databases::list_databases))
        .routes(routes!(databases::get_database, databases::update_database, databases::delete_database))
        .routes(routes!(databases::apply_schema))
        .routes(routes!(databases::list_tables))
        .routes(routes!(databases::set_policy))
        .routes(routes!(databases::database_usage))
        .routes(routes!(credentials::create_api_key, credentials::list_api_keys))
        .routes(routes!(credentials::get_api_key, credentials::revoke_api_key))
        .routes(routes!(credentials::get_identity, credentials::set_identity, credentials::delete_identity))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::get_device))
        .routes(routes!(devices::block_device))
        .routes(routes!(devices::unblock_device))
        .routes(routes!(devices::release_device))
        .routes(routes!(devices::list_blocked, devices::block_subject))
        .routes(routes!(devices::unblock_subject))
        .routes(routes!(devices::list_jobs))
        .routes(routes!(devices::get_job))
        .routes(routes!(devices::retry_job))
        .routes(routes!(devices::discard_job))
        .split_for_parts();
    let (blob_routes, blob_doc) = OpenApiRouter::new().routes(routes!(blobs::put, blobs::get)).split_for_parts();
    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();
    let mut doc = openapi::ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    for part in [sync_doc, manage_doc, blob_doc, ops_doc] {
        doc.merge(part);
    }
    let router = Router::new()
        .merge(sync_routes.layer(DefaultBodyLimit::max(limits.inline_bytes)))
        .merge(manage.layer(DefaultBodyLimit::max(limits.json_bytes)))
        .merge(blob_routes.layer(DefaultBodyLimit::max(limits.upload_bytes)))
        .merge(ops);
    (router, openapi::finish(doc))
}

/// The OpenAPI document of the API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api(Limits::default()).1
}

/// The header carrying a request's id (taken from the request when it has one, else
/// generated), on every response and in every log line of the request.
pub const REQUEST_ID: &str = "x-request-id";

/// The whole application.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The whole application with `extra` routes (the admin dashboard), which share its
/// metrics, request ids, tracing and fallbacks.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    let (routes, doc) = api(state.limits);
    let json = Arc::new(doc.to_json().unwrap_or_default());
    let page = Arc::new(openapi::html(&doc));
    let request_id = header::HeaderName::from_static(REQUEST_ID);
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        })
        .on_request(())
        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG))
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN));
    Router::new()
        .merge(routes)
        .merge(extra)
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json.as_str().to_owned()) }),
        )
        .route("/docs", get(move || async move { axum::response::Html(page.as_str().to_owned()) }))
        .fallback(|| async { error::ApiError::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async {
            let mut resp = error::ApiError::BadRequest("method not allowed on this route".into()).into_response();
            *resp.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
            resp
        })
        .layer(axum::middleware::from_fn(hygiene::check))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
