//! The visibility check: which of the rows a device holds its user may not read
//! centrally.

use axum::extract::State;
use axum::Json;
use cloudsync_protocol::sync::{Invisible, VisibilityCheck};
use cloudsync_service::control::devices::Activity;

use super::{SiteHeader, SyncCtx, MAX_VISIBILITY_KEYS};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Which of the rows a device holds name no central row its user may read (row-level
/// security, row policies; a hidden row and a missing one are answered alike, so this
/// is no existence oracle): the device flags them (`docs/rls.md`). Only the keys sent
/// are answered about.
#[utoipa::path(post, path = "/v1/sync/{db}/visibility", tag = "sync", request_body = VisibilityCheck,
    params(("db" = String, Path, description = "Database id"), SiteHeader),
    responses((status = 200, description = "The keys no longer visible", body = Invisible)))]
pub async fn visibility(
    State(state): State<AppState>,
    ctx: SyncCtx,
    b: Result<Json<VisibilityCheck>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Invisible>> {
    let db = &ctx.db;
    let actor = &ctx.actor;
    let req = crate::extract::body(b, state.limits.json_bytes)?;
    if req.keys.len() > MAX_VISIBILITY_KEYS {
        return Err(ApiError::BadRequest(format!("at most {MAX_VISIBILITY_KEYS} keys per request")));
    }
    let keys = req
        .keys
        .iter()
        .map(|k| hex::decode(k).map_err(|_| ApiError::BadRequest(format!("key '{k}' is not hex"))))
        .collect::<ApiResult<Vec<_>>>()?;
    ctx.record(&state, Activity::default());
    let hidden = state.backends.of(db).invisible(actor, req.table, keys).await?;
    Ok(Json(Invisible { hidden: hidden.iter().map(hex::encode).collect() }))
}
