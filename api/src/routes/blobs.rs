//! `/v1/blobs/<key>`: the signed-URL endpoint of the folder payload store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cloudsync_tenants::payloads::{Op, PayloadStore};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::routes::sync::too_large;
use crate::AppState;

/// The query of a signed URL.
#[derive(Deserialize)]
pub struct Signed {
    op: String,
    expires: i64,
    sig: String,
}

fn check(state: &AppState, key: &str, op: Op, q: &Signed) -> ApiResult<()> {
    let folder = state.folder.as_ref().ok_or_else(|| ApiError::NotFound("blob".into()))?;
    if q.op != op.name() || !folder.verify(key, op, q.expires, &q.sig) {
        return Err(ApiError::Forbidden("invalid or expired signed URL".into()));
    }
    Ok(())
}

/// `PUT /v1/blobs/<key>?op=put&expires=…&sig=…`.
pub async fn put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    check(&state, &key, Op::Put, &q)?;
    let bytes = body.map_err(|e| too_large(e, state.limits.upload_bytes))?;
    state.metrics.bytes_in.inc_by(bytes.len() as u64);
    state.payloads.put(&key, bytes.to_vec()).await?;
    Ok(StatusCode::CREATED)
}

/// `GET /v1/blobs/<key>?op=get&expires=…&sig=…`.
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
) -> ApiResult<Vec<u8>> {
    check(&state, &key, Op::Get, &q)?;
    Ok(state.payloads.get(&key).await?)
}
