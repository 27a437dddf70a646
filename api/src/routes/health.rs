//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the control-plane store answers and the node is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    state.control.ping().await.map_err(|e| ApiError::Unavailable(format!("control-plane store: {e}")))?;
    Ok("ready")
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.refresh(&state).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
