//! The sync protocol, version 1 (specified in `docs/protocol.md`).
//!
//! | call | does |
//! |---|---|
//! | `POST {sync_url}/changes` | upload: a payload inline, or a reference to one uploaded through a signed URL; answered `202` once its apply job is durable |
//! | `POST {sync_url}/uploads` | a signed URL to upload a large payload to the payload store |
//! | `GET {sync_url}/changes?after=…&wait_ms=…` | download: the next chunk of changes the device did not write; long-polls when there is none |
//! | `GET {sync_url}/status` | what the server accepted, applied and failed for this device |
//!
//! One file, over 500 lines: the sync protocol's routes (upload, download, status,
//! visibility) share their authorization, device and cursor helpers; splitting them
//! into `routes/sync/` with a request-context extractor is planned (issue "one home for
//! each concept").

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudsync_core::feed::Checkpoint;
use cloudsync_tenants::devices::Activity;
use cloudsync_tenants::ids::{DatabaseId, SiteHex};
use cloudsync_tenants::jobs::NewJob;
use cloudsync_tenants::keys::Scope;
use cloudsync_tenants::model::Database;
use cloudsync_tenants::payloads::{Op, PayloadStore};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::metrics::Action;
use crate::AppState;

pub use cloudsync_protocol::sync::header::{CHANGES, CURSOR, FROM, MORE, SITE, TO};
use cloudsync_protocol::sync::{
    header::MORE_FOLLOWS, Accepted, Invisible, NewUpload, SyncStatus, UploadRef, UploadTicket, VisibilityCheck,
};
pub use cloudsync_protocol::sync::{MAX_VISIBILITY_KEYS, PAYLOAD_TYPE};

/// Longest a download may wait for new changes.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Parses a feed checkpoint (`docs/protocol.md`): `<db_version>[.<seq>]`, or
/// `<after>~<base>` partway through a pass (`0`: the beginning).
pub fn parse_cursor(s: &str) -> ApiResult<Checkpoint> {
    Checkpoint::parse(s).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid cursor '{}' (expected <db_version>[.<seq>] or <after>~<base>, as the server handed out)",
            s.chars().take(40).filter(|c| !c.is_control()).collect::<String>()
        ))
    })
}

/// Formats a feed checkpoint.
pub fn cursor_text(c: Checkpoint) -> String {
    c.to_string()
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

/// Loads the database and checks the caller may sync with it.
async fn authorize(state: &AppState, caller: &Caller, db: &str) -> ApiResult<Database> {
    let db = state.control.database(&DatabaseId::parse(db)?).await?;
    caller.database(&db, Scope::Sync)?;
    Ok(db)
}

/// Checks the device may sync (it is not blocked).
async fn device(state: &AppState, db: Database, site: &str) -> ApiResult<(Database, SiteHex)> {
    let site = SiteHex::parse(site)?;
    if let Some(reason) = state.control.blocked(&db.id, &site).await? {
        return Err(ApiError::DeviceBlocked(Some(reason).filter(|r| !r.is_empty())));
    }
    Ok((db, site))
}

/// Counts a sync request in the device's and the database's usage.
fn record(state: &AppState, caller: &Caller, db: &Database, site: SiteHex, mut activity: Activity) {
    activity.user_id = caller.user_id().map(str::to_string);
    state.usage.record(&db.tenant_id, &db.id, site, activity);
}

/// A payload (the binary format of `docs/payload-format.md`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Payload(pub Vec<u8>);

/// The headers every upload carries.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct UploadHeaders {
    /// The device's site id (32 hex characters).
    #[serde(rename = "x-cloudsync-site")]
    #[param(rename = "x-cloudsync-site")]
    site: String,
    /// Device feed position the payload starts after (`<db_version>.<seq>`).
    #[serde(rename = "x-cloudsync-from")]
    #[param(rename = "x-cloudsync-from")]
    from: String,
    /// Device feed position the payload ends at.
    #[serde(rename = "x-cloudsync-to")]
    #[param(rename = "x-cloudsync-to")]
    to: String,
}

/// The header identifying the device.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct SiteHeader {
    /// The device's site id (32 hex characters).
    #[serde(rename = "x-cloudsync-site")]
    #[param(rename = "x-cloudsync-site")]
    site: String,
}

/// Checks a payload before it is accepted: it must decode within the size limit,
/// every change in it must have been written by the uploading device, and none may
/// touch a download-only table. Runs off the async runtime.
fn validate(bytes: &[u8], site: &SiteHex, db: &Database, max_raw: u64) -> ApiResult<u64> {
    let cs = cloudsync_core::payload::decode_limited(bytes, max_raw).map_err(|e| match e {
        cloudsync_core::DecodeError::FrameTooLarge { size, limit, .. } => {
            ApiError::DecompressedTooLarge { size, limit }
        }
        e => ApiError::BadRequest(format!("invalid payload: {e}")),
    })?;
    if let Some(other) = cs.sites.iter().find(|s| **s != site.0) {
        return Err(ApiError::Forbidden(format!(
            "the payload contains changes written by site {other}; a device uploads only its own changes"
        )));
    }
    if let Some(t) = db.settings.download_only().find(|t| cs.tables.iter().any(|d| d.name.eq_ignore_ascii_case(t))) {
        return Err(ApiError::Forbidden(format!(
            "table '{t}' is download-only in this database; devices cannot change it"
        )));
    }
    Ok(cs.change_count() as u64)
}

/// Upload changes: a payload inline, or a reference to one put at a signed upload URL.
/// Answered once its apply job is durable.
#[utoipa::path(post, path = "/v1/sync/{db}/changes", tag = "sync",
    params(("db" = String, Path, description = "Database id"), UploadHeaders),
    request_body(content((Payload = "application/vnd.cloudsync.payload"), (UploadRef = "application/json"))),
    responses((status = 202, description = "Accepted: the apply job is durable", body = Accepted)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let db = authorize(&state, &caller, &db).await?;
    let (db, site) = device(&state, db, header(&headers, SITE)?).await?;
    // Refused before anything is stored when the device's role is not allowed.
    let actor = caller.actor(&db)?;
    let from = parse_cursor(header(&headers, FROM)?)?;
    let to = parse_cursor(header(&headers, TO)?)?;
    let body = body.map_err(|e| too_large(e, state.limits.inline_bytes))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // At most one upload per core is fetched and decoded at once: with the size
    // limits, that bounds what uploads hold in memory.
    let _permit = state.decoding.acquire().await.map_err(|e| ApiError::Internal(Box::new(e)))?;
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
    let (site_v, db_v, max_raw) = (site, db.clone(), state.limits.payload_raw_bytes);
    let (changes, object_key, bytes) = tokio::task::spawn_blocking(move || {
        // Hashing is CPU work too. A referenced object is the one its upload URL was
        // issued for (and the one the job applies: the worker checks it again); an
        // inline upload's key names no hash.
        cloudsync_tenants::payloads::verify_object(&object_key, &bytes)?;
        validate(&bytes, &site_v, &db_v, max_raw).map(|changes| (changes, object_key, bytes))
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))??;
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
            actor,
        })
        .await?;
    state.wake.notify_one();
    let action = if is_json { Action::UploadSigned } else { Action::UploadInline };
    state.metrics.payload(&db.tenant_id, action, len, changes);
    let activity = Activity {
        bytes_in: i64::try_from(len).unwrap_or(i64::MAX),
        changes_in: i64::try_from(changes).unwrap_or(i64::MAX),
        ..Activity::default()
    };
    record(&state, &caller, &db, site, activity);
    Ok((StatusCode::ACCEPTED, Json(Accepted { job: job.id, accepted: job.to_cursor, changes })))
}

/// Get a signed URL to upload a large payload to the payload store, for exactly the
/// announced size and hash (the object's key names the hash).
#[utoipa::path(post, path = "/v1/sync/{db}/uploads", tag = "sync", request_body = NewUpload,
    params(("db" = String, Path, description = "Database id"), SiteHeader),
    responses((status = 201, description = "A signed upload URL", body = UploadTicket),
        (status = 413, description = "Announced over the upload limit", body = ErrorBody)))]
pub async fn new_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    headers: HeaderMap,
    b: Result<Json<NewUpload>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<UploadTicket>)> {
    let db = authorize(&state, &caller, &db).await?;
    let (db, site) = device(&state, db, header(&headers, SITE)?).await?;
    let req = crate::extract::body(b, state.limits.json_bytes)?;
    if req.bytes > u64::try_from(state.limits.upload_bytes).unwrap_or(u64::MAX) {
        return Err(ApiError::TooLarge(state.limits.upload_bytes));
    }
    let sha256: [u8; 32] = hex::decode(&req.sha256)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest("sha256 must be 64 hex characters".into()))?;
    // The key names the hash, the URL the size: the object validated and applied is
    // the one announced here.
    let object = cloudsync_tenants::payloads::object_key(db.id.as_str(), &site.to_string(), &sha256);
    let ttl = Duration::from_secs(900);
    let url = state.payloads.presign(&object, Op::Put { len: req.bytes }, ttl).await?;
    Ok((StatusCode::CREATED, Json(UploadTicket { object, upload_url: url, expires_in: ttl.as_secs() })))
}

/// Query of a download.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The device's site id (32 hex characters).
    site: String,
    /// Server position to continue after (`<db_version>.<seq>`; default the beginning).
    #[serde(default)]
    after: Option<String>,
    /// Wait up to this long (ms, at most 60000) for changes when there are none.
    #[serde(default)]
    #[param(minimum = 0)]
    wait_ms: Option<u64>,
    /// Largest chunk wanted (bytes; clamped to the server's chunk size).
    #[serde(default)]
    #[param(minimum = 0)]
    max_bytes: Option<usize>,
}

/// Download the next chunk of changes the device did not write; long-polls with
/// `wait_ms`. The chunk's end position is in `x-cloudsync-cursor`.
#[utoipa::path(get, path = "/v1/sync/{db}/changes", tag = "sync",
    params(("db" = String, Path, description = "Database id"), DownloadQuery),
    responses(
        (status = 200, description = "A chunk of changes", body = Payload, content_type = "application/vnd.cloudsync.payload",
            headers(("x-cloudsync-cursor" = String, description = "Position the chunk ends at"),
                ("x-cloudsync-more" = String, description = "`1` when more changes follow"),
                ("x-cloudsync-changes" = u64, description = "Changes in the chunk"))),
        (status = 204, description = "No changes (within `wait_ms`)",
            headers(("x-cloudsync-cursor" = String, description = "The current position")))))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let db = authorize(&state, &caller, &db).await?;
    let q = q?;
    let (db, site) = device(&state, db, &q.site).await?;
    let actor = caller.actor(&db)?;
    let mut after = q.after.as_deref().map(parse_cursor).transpose()?.unwrap_or(Checkpoint::ZERO);
    // When the rules deciding what this device may read changed since it was last served
    // (or it never stored a checkpoint of the pass that restarted it), it starts over:
    // rows that became visible reach it although they did not change (docs/rls.md).
    // While that pass runs, only the last checkpoint it handed out continues it; any
    // other (a response lost, a checkpoint from before) starts it again, which merges
    // make harmless.
    let mut restart_pass = None;
    if let Some(rules) = state.backends.of(&db).visibility().await? {
        let (seen, last) = state.control.device_visibility(&db.id, &site).await?;
        let continuing = match last.as_deref().map(parse_cursor).transpose()? {
            Some(last) => seen.as_deref() == Some(rules.as_str()) && last == after,
            None => seen.as_deref() == Some(rules.as_str()),
        };
        if !continuing {
            after = Checkpoint::ZERO;
        }
        if !continuing || last.is_some() {
            restart_pass = Some(rules);
        }
    }
    let max_bytes = q.max_bytes.unwrap_or(state.limits.chunk_bytes).clamp(1024, state.limits.chunk_bytes);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading, so a change applied in between is not missed.
    let mut changed = state.notifier.subscribe(&db.id);
    let mut shutdown = state.shutdown.clone();
    loop {
        let chunk = state.backends.of(&db).changes(after, site.0, max_bytes, &actor).await?;
        if let Some(rules) = &restart_pass {
            let last = chunk.more.then(|| cursor_text(chunk.next));
            state.control.set_device_visibility(&db.id, &site, rules, last.as_deref()).await?;
            if !chunk.more {
                restart_pass = None;
            }
        }
        let mut activity = Activity { download_after: Some(cursor_text(after)), ..Activity::default() };
        if let Some(payload) = chunk.payload {
            activity.bytes_out = i64::try_from(payload.len()).unwrap_or(i64::MAX);
            activity.changes_out = i64::try_from(chunk.changes).unwrap_or(i64::MAX);
            record(&state, &caller, &db, site, activity);
            state.metrics.payload(&db.tenant_id, Action::Download, payload.len(), chunk.changes);
            let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, PAYLOAD_TYPE)], payload).into_response();
            let h = resp.headers_mut();
            h.insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.next)).map_err(|e| ApiError::Internal(Box::new(e)))?,
            );
            h.insert(MORE, HeaderValue::from_static(if chunk.more { MORE_FOLLOWS } else { "0" }));
            h.insert(CHANGES, HeaderValue::from(chunk.changes));
            return Ok(resp);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *shutdown.borrow() {
            record(&state, &caller, &db, site, activity);
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.next)).map_err(|e| ApiError::Internal(Box::new(e)))?,
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

/// Which of the rows a device holds exist centrally but are no longer visible to its
/// user (row-level security, row policies): the device flags them (`docs/rls.md`).
/// Only the keys sent are answered about.
#[utoipa::path(post, path = "/v1/sync/{db}/visibility", tag = "sync", request_body = VisibilityCheck,
    params(("db" = String, Path, description = "Database id"), SiteHeader),
    responses((status = 200, description = "The keys no longer visible", body = Invisible)))]
pub async fn visibility(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    headers: HeaderMap,
    b: Result<Json<VisibilityCheck>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Invisible>> {
    let db = authorize(&state, &caller, &db).await?;
    let (db, site) = device(&state, db, header(&headers, SITE)?).await?;
    let actor = caller.actor(&db)?;
    let req = crate::extract::body(b, state.limits.json_bytes)?;
    if req.keys.len() > MAX_VISIBILITY_KEYS {
        return Err(ApiError::BadRequest(format!("at most {MAX_VISIBILITY_KEYS} keys per request")));
    }
    let keys = req
        .keys
        .iter()
        .map(|k| hex::decode(k).map_err(|_| ApiError::BadRequest(format!("key '{k}' is not hex"))))
        .collect::<ApiResult<Vec<_>>>()?;
    record(&state, &caller, &db, site, Activity::default());
    let hidden = state.backends.of(&db).invisible(&actor, req.table, keys).await?;
    Ok(Json(Invisible { hidden: hidden.iter().map(hex::encode).collect() }))
}

/// Query of a status call.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The device's site id (32 hex characters).
    site: String,
}

/// What the server accepted, applied and failed for this device.
#[utoipa::path(get, path = "/v1/sync/{db}/status", tag = "sync",
    params(("db" = String, Path, description = "Database id"), StatusQuery),
    responses((status = 200, description = "The device's status", body = SyncStatus)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(db): Path<String>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<SyncStatus>> {
    let db = authorize(&state, &caller, &db).await?;
    let q = q?;
    let (db, site) = device(&state, db, &q.site).await?;
    record(&state, &caller, &db, site, Activity::default());
    let device = state.control.device_status(&db.id, &site).await?;
    let server = state.backends.of(&db).db_version().await?;
    Ok(Json(SyncStatus { protocol: cloudsync_protocol::sync::VERSION, server_db_version: server, device }))
}
