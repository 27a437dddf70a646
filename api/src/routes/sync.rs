//! The sync protocol, version 1 (specified in `docs/protocol.md`).
//!
//! | call | does |
//! |---|---|
//! | `POST {sync_url}/changes` | upload: a payload inline, or a reference to one uploaded through a signed URL; answered `202` once its apply job is durable |
//! | `POST {sync_url}/uploads` | a signed URL to upload a large payload to the payload store |
//! | `GET {sync_url}/changes?after=…&wait_ms=…` | download: the next chunk of changes the device did not write; long-polls when there is none |
//! | `GET {sync_url}/status` | what the server accepted, applied and failed for this device |

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudsync_core::Cursor;
use cloudsync_tenants::ids::{DatabaseId, SiteHex};
use cloudsync_tenants::jobs::NewJob;
use cloudsync_tenants::keys::Scope;
use cloudsync_tenants::payloads::{Op, PayloadStore};
use cloudsync_tenants::store::Database;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The device's site id (32 hex characters).
pub const SITE: &str = "x-cloudsync-site";
/// Device feed position an upload starts after.
pub const FROM: &str = "x-cloudsync-from";
/// Device feed position an upload ends at.
pub const TO: &str = "x-cloudsync-to";
/// Server feed position a download chunk ends at.
pub const CURSOR: &str = "x-cloudsync-cursor";
/// `1` when more changes follow the chunk.
pub const MORE: &str = "x-cloudsync-more";
/// Number of changes in the chunk.
pub const CHANGES: &str = "x-cloudsync-changes";
/// Media type of payloads.
pub const PAYLOAD_TYPE: &str = "application/vnd.cloudsync.payload";

/// Longest a download may wait for new changes.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Parses a cursor `<db_version>.<seq>` (`0` alone means the beginning).
pub fn parse_cursor(s: &str) -> ApiResult<Cursor> {
    let bad = || ApiError::BadRequest(format!("invalid cursor '{s}' (expected <db_version>.<seq>)"));
    match s.split_once('.') {
        Some((d, q)) => Ok(Cursor::new(d.parse().map_err(|_| bad())?, q.parse().map_err(|_| bad())?)),
        None => Ok(Cursor::new(s.parse().map_err(|_| bad())?, 0)),
    }
}

/// Formats a cursor.
pub fn cursor_text(c: Cursor) -> String {
    format!("{}.{}", c.db_version, c.seq)
}

/// Maps a body-reading failure: over the limit is `413`, anything else `400`.
pub fn too_large(e: BytesRejection, limit: usize) -> ApiError {
    match e {
        BytesRejection::FailedToBufferBody(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(limit)
        }
        other => ApiError::BadRequest(format!("cannot read the request body: {}", other.body_text())),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("missing header {name}")))?
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("header {name} is not text")))
}

/// Loads the database and checks the caller may sync with it; records the device.
async fn device(state: &AppState, caller: &Caller, db: &str, site: &str) -> ApiResult<(Database, SiteHex)> {
    let db = state.control.database(&DatabaseId::parse(db)?).await?;
    caller.database(&db, Scope::Sync)?;
    let site = SiteHex::parse(site)?;
    state.control.touch_device(&db.id, &site).await?;
    Ok((db, site))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRef {
    object: String,
}

/// Checks a payload before it is accepted: it must decode, and every change in it must
/// have been written by the uploading device.
fn validate(bytes: &[u8], site: &SiteHex) -> ApiResult<u64> {
    let cs =
        cloudsync_core::payload::decode(bytes).map_err(|e| ApiError::BadRequest(format!("invalid payload: {e}")))?;
    if let Some(other) = cs.sites.iter().find(|s| **s != site.0) {
        return Err(ApiError::Forbidden(format!(
            "the payload contains changes written by site {other}; a device uploads only its own changes"
        )));
    }
    Ok(cs.change_count() as u64)
}

/// `POST {sync_url}/changes`.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (db, site) = device(&state, &caller, &db, header(&headers, SITE)?).await?;
    let from = parse_cursor(header(&headers, FROM)?)?;
    let to = parse_cursor(header(&headers, TO)?)?;
    let body = body.map_err(|e| too_large(e, state.limits.inline_bytes))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (object_key, bytes) = if is_json {
        let r: UploadRef =
            serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        let prefix = format!("{}/{}/", db.id, site);
        if !r.object.starts_with(&prefix) {
            return Err(ApiError::BadRequest("the object was not issued for this database and device".into()));
        }
        let bytes = state.payloads.get(&r.object).await.map_err(|e| match e {
            cloudsync_tenants::Error::NotFound { .. } => ApiError::BadRequest("the object was never uploaded".into()),
            other => other.into(),
        })?;
        (r.object, bytes)
    } else {
        let key = format!("{}/{}/{}.csyn", db.id, site, uuid::Uuid::now_v7().simple());
        (key, body.to_vec())
    };
    let changes = validate(&bytes, &site)?;
    let len = bytes.len();
    if !is_json {
        state.payloads.put(&object_key, bytes).await?;
    }
    let job = state
        .control
        .enqueue(NewJob {
            database_id: db.id.clone(),
            site,
            object_key,
            bytes: i64::try_from(len).unwrap_or(i64::MAX),
            from_cursor: cursor_text(from),
            to_cursor: cursor_text(to),
        })
        .await?;
    state.wake.notify_one();
    state.metrics.uploads.inc();
    state.metrics.bytes_in.inc_by(len as u64);
    state.metrics.changes_in.inc_by(changes);
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job.id, "accepted": job.to_cursor, "changes": changes }))))
}

/// `POST {sync_url}/uploads`: a signed URL for a large payload.
pub async fn new_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (db, site) = device(&state, &caller, &db, header(&headers, SITE)?).await?;
    let object = format!("{}/{}/{}.csyn", db.id, site, uuid::Uuid::now_v7().simple());
    let ttl = Duration::from_secs(900);
    let url = state.payloads.presign(&object, Op::Put, ttl).await?;
    Ok((StatusCode::CREATED, Json(json!({ "object": object, "upload_url": url, "expires_in": ttl.as_secs() }))))
}

/// Query of a download.
#[derive(Deserialize)]
pub struct DownloadQuery {
    site: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    wait_ms: Option<u64>,
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// `GET {sync_url}/changes?site=…&after=…&wait_ms=…&max_bytes=…`.
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let (db, site) = device(&state, &caller, &db, &q.site).await?;
    let after = q.after.as_deref().map(parse_cursor).transpose()?.unwrap_or(Cursor::ZERO);
    let max_bytes = q.max_bytes.unwrap_or(state.limits.chunk_bytes).clamp(1024, state.limits.chunk_bytes);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading, so a change applied in between is not missed.
    let mut changed = state.notifier.subscribe(&db.id);
    let mut shutdown = state.shutdown.clone();
    loop {
        let backends = std::sync::Arc::clone(&state.backends);
        let id = db.id.clone();
        let chunk = state.blocking(move || backends.changes(&id, after, site.0, max_bytes)).await?;
        if let Some(payload) = chunk.payload {
            state.metrics.downloads.inc();
            state.metrics.bytes_out.inc_by(payload.len() as u64);
            state.metrics.changes_out.inc_by(chunk.changes);
            let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, PAYLOAD_TYPE)], payload).into_response();
            let h = resp.headers_mut();
            h.insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.cursor)).map_err(|e| ApiError::Internal(Box::new(e)))?,
            );
            h.insert(MORE, HeaderValue::from_static(if chunk.more { "1" } else { "0" }));
            h.insert(CHANGES, HeaderValue::from(chunk.changes));
            return Ok(resp);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *shutdown.borrow() {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.cursor)).map_err(|e| ApiError::Internal(Box::new(e)))?,
            );
            return Ok(resp);
        }
        // Woken by an apply on this node; polled once a second for applies on others.
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep((deadline - now).min(Duration::from_secs(1))) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Query of a status call.
#[derive(Deserialize)]
pub struct StatusQuery {
    site: String,
}

/// `GET {sync_url}/status?site=…`.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (db, site) = device(&state, &caller, &db, &q.site).await?;
    let device = state.control.device_status(&db.id, &site).await?;
    let backends = std::sync::Arc::clone(&state.backends);
    let id = db.id.clone();
    let server = tokio::task::spawn_blocking(move || backends.db_version(&id))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    Ok(Json(json!({ "protocol": 1, "server_db_version": server, "device": device })))
}
