//! The one error type of the HTTP edge.
//!
//! Every error response is JSON: `{"error": {"code": "...", "message": "..."}}`, with a
//! stable `code` (documented in `docs/protocol.md`). Client errors carry a precise
//! message; server errors carry an opaque one, and the cause chain goes to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudsync_service::control::identity::JwtError;
use cloudsync_service::control::quotas::{Kind, Quota};
use cloudsync_service::Error as CpError;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or malformed credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The tenant is suspended.
    #[error("this tenant is suspended")]
    TenantSuspended,
    /// The device is blocked in this database.
    #[error("this device is blocked in this database{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    DeviceBlocked(Option<String>),
    /// The site id is bound to another user or API key.
    #[error("this site id belongs to another user or API key: a new device (or a new account on a device) needs a new site id; an administrator can release the binding")]
    SiteBound,
    /// The credential started using too many new site ids in the past hour.
    #[error("this credential started using more than {limit} new site ids in the past hour; retry after {retry_after_secs} s")]
    TooManyNewSites {
        /// New site ids allowed per hour.
        limit: u32,
        /// Seconds until one more is allowed.
        retry_after_secs: u64,
    },
    /// Too many failed authentications from the client's address.
    #[error("too many failed authentications from this address; retry after {0} s")]
    TooManyFailedAttempts(u64),
    /// The tenant or credential reached a quota per unit of time (requests per
    /// second, transfer per day): `429` with `Retry-After`.
    #[error("over the quota of {limit} {}; retry after {retry_after_secs} s", .quota.unit())]
    OverRate {
        /// Which.
        quota: Quota,
        /// Its limit.
        limit: u32,
        /// Seconds until a request may succeed again.
        retry_after_secs: u64,
    },
    /// A destructive request without its confirmation.
    #[error("{0}")]
    ConfirmationRequired(String),
    /// Unknown resource (or one the caller may not see).
    #[error("{0} not found")]
    NotFound(String),
    /// A sync URL naming no database of the credential's tenant: the same answer
    /// whether the database does not exist or belongs to another tenant, so ids cannot
    /// be probed, with what to check.
    #[error(
        "database not found: no database with this id belongs to the tenant of this key or token; check the \
         database id in the sync URL, and that the key or token was issued for the tenant that owns the database"
    )]
    UnknownDatabase,
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A request refused for a reason with its own stable code (`invalid_sql`,
    /// `refused_sql`).
    #[error("{message}")]
    Rejected {
        /// The code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The database refused the caller's role (privileges, row-level security): a
    /// configuration of the database for its operator to change, not a malformed
    /// request (`403 permission_denied`).
    #[error("{0}")]
    PermissionDenied(String),
    /// A request that conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// An upload naming tables or columns (`table.column`) the database does not have.
    #[error("this database has no {} yet: the changes stay on the device and are sent again once its schema has them (an operator adds them by provisioning)", .0.join(", "))]
    SchemaMismatch(Vec<String>),
    /// A request without the `Content-Length` it needs.
    #[error("this request needs a Content-Length header")]
    LengthRequired,
    /// A body over the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// A payload declaring more bytes once decompressed than the node decodes.
    #[error("the payload declares {size} bytes once decompressed, over the limit of {limit}; send smaller chunks")]
    DecompressedTooLarge {
        /// What the payload's frames declare, in all (as far as they were summed).
        size: u64,
        /// The node's limit.
        limit: u64,
    },
    /// The tenant reached a quota: `507` for what it holds (databases, devices,
    /// storage), `429` with `Retry-After` for waiting downloads.
    #[error("this tenant reached its quota of {limit} {}; an operator can raise it", .quota.unit())]
    OverQuota {
        /// Which.
        quota: Quota,
        /// Its limit.
        limit: u32,
    },
    /// A tenant database at its size quota (`507`): the write was not kept.
    #[error("{0}")]
    StorageQuota(String),
    /// A failure of the service itself.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The service is not ready (store unreachable, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A store is unavailable for now (`control`, `payload`, `backend`): retry later.
    #[error("{} is unavailable for now; retry later", store_name(.0))]
    StoreUnavailable(&'static str),
}

/// Seconds a device is asked to wait before waiting for changes again, past its
/// tenant's long-poll quota.
pub const LONG_POLL_RETRY_AFTER: u64 = 5;

/// Seconds a client is asked to wait after a store outage.
pub const STORE_RETRY_AFTER: u64 = 2;

fn store_name(store: &str) -> &'static str {
    match store {
        "control" => "the control-plane store",
        "payload" => "the payload store",
        _ => "the database",
    }
}

impl ApiError {
    /// Status code and stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TenantSuspended => (StatusCode::FORBIDDEN, "tenant_suspended"),
            ApiError::DeviceBlocked(_) => (StatusCode::FORBIDDEN, "device_blocked"),
            ApiError::OverRate { quota, .. } => (StatusCode::TOO_MANY_REQUESTS, quota.code()),
            ApiError::TooManyFailedAttempts(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_failed_attempts"),
            ApiError::SiteBound => (StatusCode::FORBIDDEN, "site_bound"),
            ApiError::TooManyNewSites { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_new_sites"),
            ApiError::ConfirmationRequired(_) => (StatusCode::BAD_REQUEST, "confirmation_required"),
            ApiError::NotFound(_) | ApiError::UnknownDatabase => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Rejected { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::SchemaMismatch(_) => (StatusCode::CONFLICT, "schema_mismatch"),
            ApiError::LengthRequired => (StatusCode::LENGTH_REQUIRED, "length_required"),
            ApiError::TooLarge(_) | ApiError::DecompressedTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::StorageQuota(_) => (StatusCode::INSUFFICIENT_STORAGE, "storage_quota_exceeded"),
            ApiError::OverQuota { quota, .. } => match quota.kind() {
                Kind::Held => (StatusCode::INSUFFICIENT_STORAGE, quota.code()),
                Kind::Rate | Kind::Waiting => (StatusCode::TOO_MANY_REQUESTS, quota.code()),
            },
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::StoreUnavailable(store) => (
                StatusCode::SERVICE_UNAVAILABLE,
                match *store {
                    "control" => "control_plane_unavailable",
                    "payload" => "payload_store_unavailable",
                    _ => "database_unavailable",
                },
            ),
        }
    }
}

impl From<CpError> for ApiError {
    fn from(e: CpError) -> Self {
        if let Some(store) = e.unavailable() {
            // An outage a retry may outlast: opaque to the client (paths, hosts),
            // complete in the log.
            tracing::warn!(error = %e, store, "store unavailable");
            return ApiError::StoreUnavailable(store);
        }
        match e {
            CpError::NotFound { what } => ApiError::NotFound(what.to_string()),
            CpError::Invalid(m) => ApiError::BadRequest(m),
            CpError::Conflict(m) => ApiError::Conflict(m),
            CpError::Forbidden(m) => ApiError::Forbidden(m),
            e @ CpError::StorageQuota { .. } => ApiError::StorageQuota(e.public_message()),
            CpError::OverQuota { quota, limit } => ApiError::OverQuota { quota, limit },
            e @ CpError::TimeBudget(_) => ApiError::Rejected { code: e.code(), message: e.public_message() },
            e @ (CpError::Schema(_) | CpError::Egress(_)) => {
                ApiError::Rejected { code: e.code(), message: e.to_string() }
            }
            // Schema and payload problems are the caller's to fix: say what is wrong.
            e @ (CpError::Backend(_) | CpError::Payload(_) | CpError::Sqlite(_) | CpError::Postgres { .. })
                if !e.retryable() && e.code() != "internal" =>
            {
                tracing::info!(error = %e, code = e.code(), "request refused by the database");
                match e.code() {
                    // The sandbox's refusals keep their own codes.
                    code @ ("time_budget_exceeded" | "refused_sql") => {
                        ApiError::Rejected { code, message: e.public_message() }
                    }
                    // The database's privileges or policies: its operator's to change.
                    "permission_denied" => ApiError::PermissionDenied(e.public_message()),
                    _ => ApiError::BadRequest(e.public_message()),
                }
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<JwtError> for ApiError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::NotConfigured | JwtError::Invalid(_) => ApiError::Unauthorized(e.to_string()),
            JwtError::TenantSuspended => ApiError::TenantSuspended,
            JwtError::Unreachable | JwtError::Refused(_) => ApiError::Unavailable(e.to_string()),
            JwtError::Store(inner) => inner.into(),
        }
    }
}

pub use cloudsync_protocol::error::{ErrorBody, ErrorDetail};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(source) = &self {
            // Opaque to the client, complete in the log.
            let mut chain = source.to_string();
            let mut cur = source.source();
            while let Some(s) = cur {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                cur = s.source();
            }
            tracing::error!(error = %chain, "internal error");
        }
        let store = match &self {
            ApiError::Internal(source) => source.downcast_ref::<CpError>().and_then(CpError::failed_store),
            ApiError::StoreUnavailable(store) => Some(*store),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: code.into(), message: self.to_string() } };
        let mut resp = (status, Json(body)).into_response();
        if let Some(store) = store {
            resp.extensions_mut().insert(StoreFailure(store));
        }
        let quota = match &self {
            ApiError::OverQuota { quota, .. } | ApiError::OverRate { quota, .. } => Some(quota.name()),
            ApiError::StorageQuota(_) => Some("storage"),
            ApiError::TooManyNewSites { .. } => Some("new_sites_per_hour"),
            _ => None,
        };
        if let Some(quota) = quota {
            resp.extensions_mut().insert(QuotaHit(quota));
        }
        match self {
            ApiError::OverRate { retry_after_secs: secs, .. }
            | ApiError::TooManyFailedAttempts(secs)
            | ApiError::TooManyNewSites { retry_after_secs: secs, .. } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::StoreUnavailable(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(STORE_RETRY_AFTER));
            }
            ApiError::OverQuota { quota, .. } if quota.kind() != Kind::Held => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(LONG_POLL_RETRY_AFTER));
            }
            _ => {}
        }
        resp
    }
}

/// Marks a response caused by a store failure (`control`, `payload`, `backend`); the
/// metrics middleware counts it.
#[derive(Clone, Copy, Debug)]
pub struct StoreFailure(pub &'static str);

/// Marks a response refused by a quota (its name); the metrics middleware counts it.
#[derive(Clone, Copy, Debug)]
pub struct QuotaHit(pub &'static str);

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
