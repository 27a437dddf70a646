//! A device's status: what the server accepted, applied, failed and refused of its
//! uploads; and the device's own report of applying downloads.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cloudsync_protocol::sync::{DeviceSchema, ReceiveReport, SyncStatus};
use cloudsync_service::control::devices::Activity;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{SiteHeader, SyncCtx};
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
    Ok(Json(SyncStatus {
        protocol: cloudsync_protocol::sync::VERSION,
        server_db_version: server,
        schema_version: ctx.db.schema_version,
        device,
    }))
}

/// The device reports that applying downloads fails on it (`failure`), or applies again
/// (`failure: null`): shown in its status (`receive`) and on the dashboard, so a device
/// that stopped receiving is seen where it syncs. The code and message are the
/// device's own, kept cut to 64 and 500 characters.
#[utoipa::path(put, path = "/v1/sync/{db}/receive", tag = "sync", request_body = ReceiveReport,
    params(("db" = String, Path, description = "Database id"), SiteHeader),
    responses((status = 204, description = "Recorded")))]
pub async fn receive(
    State(state): State<AppState>,
    ctx: SyncCtx,
    b: Result<Json<ReceiveReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let report = crate::extract::body(b, state.limits.json_bytes)?;
    ctx.record(&state, Activity::default());
    let failure = report.failure.as_ref().map(|f| (f.code.as_str(), f.message.as_str()));
    state.control.set_receive_failure(&ctx.db.id, &ctx.site, failure).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The central database's synced tables as SQLite DDL: what a device that applies the
/// server's schema changes itself (`cloudsync_network_set_schema_auto(1)`) creates or
/// adds when a download names tables or columns it lacks (`docs/schema-changes.md`).
#[utoipa::path(get, path = "/v1/sync/{db}/schema", tag = "sync",
    params(("db" = String, Path, description = "Database id"), StatusQuery),
    responses((status = 200, description = "The synced tables as SQLite DDL", body = DeviceSchema)))]
pub async fn device_schema(State(state): State<AppState>, ctx: SyncCtx) -> ApiResult<Json<DeviceSchema>> {
    ctx.record(&state, Activity::default());
    let tables = state.backends.of(&ctx.db).device_schema().await?;
    Ok(Json(DeviceSchema { tables }))
}
