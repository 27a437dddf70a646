//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

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

/// Prometheus metrics (text exposition format). With `--metrics-token`, only for
/// `Authorization: Bearer <that token>`; with `--metrics-listen`, not here (404) but on
/// that address.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"),
        (status = 401, description = "The metrics token is required (`unauthorized`)", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.metrics_access.separate {
        return Err(ApiError::NotFound("route".into()));
    }
    metrics_here(State(state), headers).await
}

/// `/metrics` where it is served: checks the token, if one is set.
pub async fn metrics_here(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.metrics_access.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            return Err(ApiError::Unauthorized("/metrics needs the metrics token (Authorization: Bearer …)".into()));
        }
    }
    state.metrics.refresh(&state).await;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response())
}
