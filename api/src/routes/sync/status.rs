//! A device's status: what the server accepted, applied, failed and refused of its
//! uploads.

use axum::extract::State;
use axum::Json;
use cloudsync_protocol::sync::SyncStatus;
use cloudsync_service::control::devices::Activity;
use serde::Deserialize;
use utoipa::IntoParams;

use super::SyncCtx;
use crate::error::ApiResult;
use crate::AppState;

/// Query of a status call.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The device's site id (32 hex characters), unless the `x-cloudsync-site` header
    /// names it (read by [`SyncCtx`]).
    #[serde(default)]
    #[allow(dead_code)]
    site: Option<String>,
}

/// What the server accepted, applied and failed for this device.
#[utoipa::path(get, path = "/v1/sync/{db}/status", tag = "sync",
    params(("db" = String, Path, description = "Database id"), StatusQuery),
    responses((status = 200, description = "The device's status", body = SyncStatus)))]
pub async fn status(State(state): State<AppState>, ctx: SyncCtx) -> ApiResult<Json<SyncStatus>> {
    ctx.record(&state, Activity::default());
    let device = state.control.device_status(&ctx.db.id, &ctx.site).await?;
    let server = state.backends.of(&ctx.db).db_version().await?;
    Ok(Json(SyncStatus { protocol: cloudsync_protocol::sync::VERSION, server_db_version: server, device }))
}
