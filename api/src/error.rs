//! The one error type of the HTTP edge.
//!
//! Every error response is JSON: `{"error": {"code": "...", "message": "..."}}`, with a
//! stable `code` (documented in `docs/protocol.md`). Client errors carry a precise
//! message; server errors carry an opaque one, and the cause chain goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudsync_tenants::Error as CpError;
use serde_json::json;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or malformed credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown resource (or one the caller may not see).
    #[error("{0} not found")]
    NotFound(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A request that conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// A body over the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// A failure of the service itself.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The service is not ready (store unreachable, shutting down).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// Status code and stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl From<CpError> for ApiError {
    fn from(e: CpError) -> Self {
        match e {
            CpError::NotFound { what } => ApiError::NotFound(what.to_string()),
            CpError::Invalid(m) => ApiError::BadRequest(m),
            CpError::Conflict(m) => ApiError::Conflict(m),
            // Schema and payload problems are the caller's to fix: say what is wrong.
            e @ (CpError::Backend(_) | CpError::Payload(_)) if !e.retryable() && e.code() != "internal" => {
                ApiError::BadRequest(e.to_string())
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

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
        (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response()
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
