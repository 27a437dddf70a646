//! `/v1/blobs/<key>`: the signed-URL endpoint of the folder payload store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use cloudsync_tenants::payloads::{Op, PayloadStore};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::sync::too_large;
use crate::routes::sync::Payload;
use crate::AppState;

/// The query of a signed URL.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signed {
    /// `put` or `get`.
    op: String,
    /// Expiry, Unix ms.
    expires: i64,
    /// HMAC-SHA256 signature, hex.
    sig: String,
}

fn check(state: &AppState, key: &str, op: Op, q: &Signed) -> ApiResult<()> {
    let folder = state.folder.as_ref().ok_or_else(|| ApiError::NotFound("blob".into()))?;
    if q.op != op.name() || !folder.verify(key, op, q.expires, &q.sig) {
        return Err(ApiError::Forbidden("invalid or expired signed URL".into()));
    }
    Ok(())
}

/// Upload a payload to a signed URL of the folder payload store.
#[utoipa::path(put, path = "/v1/blobs/{*key}", tag = "sync",
    params(("key" = String, Path, description = "Object key"), Signed),
    request_body(content = Payload, content_type = "application/octet-stream"),
    responses((status = 201, description = "Stored"), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Invalid or expired signature", body = ErrorBody),
        (status = 404, description = "No folder store on this node", body = ErrorBody),
        (status = 413, description = "Payload over the upload limit", body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    check(&state, &key, Op::Put, &q?)?;
    let bytes = body.map_err(|e| too_large(e, state.limits.upload_bytes))?;
    state.payloads.put(&key, bytes.to_vec()).await?;
    Ok(StatusCode::CREATED)
}

/// Download a payload from a signed URL of the folder payload store.
#[utoipa::path(get, path = "/v1/blobs/{*key}", tag = "sync",
    params(("key" = String, Path, description = "Object key"), Signed),
    responses((status = 200, description = "The payload", body = Payload, content_type = "application/octet-stream"),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Invalid or expired signature", body = ErrorBody),
        (status = 404, description = "No such object", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
) -> ApiResult<Vec<u8>> {
    check(&state, &key, Op::Get, &q?)?;
    Ok(state.payloads.get(&key).await?)
}
