//! `/v1/blobs/<key>`: the signed-URL endpoint of the folder payload store.

use axum::extract::State;
use axum::http::StatusCode;
use cloudsync_service::payloads::{Op, PayloadStore};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::sync::Payload;
use crate::AppState;

/// The query of a signed URL.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signed {
    /// `put` or `get`.
    op: String,
    /// The size an upload URL was issued for (`put` only).
    #[serde(default)]
    len: Option<u64>,
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

/// Upload a payload to a signed URL of the folder payload store. The signature and the
/// declared length are checked before the body is read; the body is streamed to the
/// store and kept only if it has exactly the size and the hash the URL was issued for.
/// Keys name the hash of their bytes, so a replayed or retried upload stores nothing new.
#[utoipa::path(put, path = "/v1/blobs/{*key}", tag = "sync",
    params(("key" = String, Path, description = "Object key"), Signed),
    request_body(content = Payload, content_type = "application/octet-stream"),
    responses((status = 201, description = "Stored"), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Invalid or expired signature", body = ErrorBody),
        (status = 404, description = "No folder store on this node", body = ErrorBody),
        (status = 411, description = "No Content-Length", body = ErrorBody),
        (status = 413, description = "Payload over the upload limit", body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    use http_body_util::BodyExt;
    let q = q?;
    let len = q.len.ok_or_else(|| ApiError::Forbidden("invalid or expired signed URL".into()))?;
    check(&state, &key, Op::Put { len }, &q)?;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or(ApiError::LengthRequired)?;
    if declared > u64::try_from(state.limits.upload_bytes).unwrap_or(u64::MAX) {
        return Err(ApiError::TooLarge(state.limits.upload_bytes));
    }
    if declared != len {
        return Err(ApiError::BadRequest(format!("the URL was issued for {len} bytes, the body declares {declared}")));
    }
    let folder = state.folder.as_ref().ok_or_else(|| ApiError::NotFound("blob".into()))?;
    let Some(mut object) = folder.create(&key, len).await? else {
        // Stored already, with exactly these bytes (the key names their hash).
        return Ok(StatusCode::CREATED);
    };
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            object.write(&data).await?;
        }
    }
    object.finish().await?;
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
