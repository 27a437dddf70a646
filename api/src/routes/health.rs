//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the control-plane store answers and the node is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    state.control.ping().await.map_err(|e| ApiError::Unavailable(format!("control-plane store: {e}")))?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
