//! Uploads: a payload inline or by reference to a signed upload URL, validated, stored
//! and queued as an apply job before it is acknowledged.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use cloudsync_protocol::sync::{Accepted, NewUpload, UploadRef, UploadTicket};
use cloudsync_service::backends::Schema;
use cloudsync_service::control::devices::Activity;
use cloudsync_service::control::jobs::NewJob;
use cloudsync_service::ids::SiteHex;
use cloudsync_service::model::Database;
use cloudsync_service::payloads::{Op, PayloadStore};

use super::{cursor_text, header, parse_cursor, too_large, Payload, SiteHeader, SyncCtx, UploadHeaders, FROM, TO};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::metrics::Action;
use crate::AppState;

/// Checks a payload before it is accepted: it must decode within the size limit,
/// every change in it must have been written by the uploading device, none may
/// touch a download-only table, and every table and column it names must be in the
/// database's `schema`. Runs off the async runtime.
fn validate(bytes: &[u8], site: &SiteHex, db: &Database, max_raw: u64, schema: &Schema) -> ApiResult<u64> {
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
    // A device whose schema is ahead of the database's keeps its changes until the
    // database has what they name: refused whole here, never accepted and then lost.
    let unknown = cloudsync_core::engine::unknown_in(&cs, schema);
    if !unknown.is_empty() {
        return Err(ApiError::SchemaMismatch(shown_names(unknown)));
    }
    Ok(cs.change_count() as u64)
}

/// Names a payload brought, as an answer may show them: the device chose them, so at
/// most [`SHOWN_NAMES`] of them, each cut to 64 characters without control characters,
/// and how many more there are.
fn shown_names(names: std::collections::BTreeSet<String>) -> Vec<String> {
    let total = names.len();
    let mut shown: Vec<String> =
        names.into_iter().take(SHOWN_NAMES).map(|n| format!("'{}'", cloudsync_core::value::shown(&n, 64))).collect();
    if total > SHOWN_NAMES {
        shown.push(format!("{} more", total - SHOWN_NAMES));
    }
    shown
}

/// Names of tables and columns an answer lists at most.
const SHOWN_NAMES: usize = 10;

/// Upload changes: a payload inline, or a reference to one put at a signed upload URL.
/// Answered once its apply job is durable.
#[utoipa::path(post, path = "/v1/sync/{db}/changes", tag = "sync",
    params(("db" = String, Path, description = "Database id"), UploadHeaders),
    request_body(content((Payload = "application/vnd.cloudsync.payload"), (UploadRef = "application/json"))),
    responses((status = 202, description = "Accepted: the apply job is durable", body = Accepted),
        (status = 409, description = "Names tables or columns the database does not have yet (`schema_mismatch`); nothing accepted", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    ctx: SyncCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let (db, site) = (&ctx.db, ctx.site);
    ctx.within_quotas(&state, true).await?;
    let from = parse_cursor(header(&headers, FROM)?)?;
    let to = parse_cursor(header(&headers, TO)?)?;
    let body = body.map_err(|e| too_large(e, state.limits.inline_bytes))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let schema = state.backends.schema(db).await?;
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
            cloudsync_service::Error::NotFound { .. } => ApiError::BadRequest("the object was never uploaded".into()),
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
        cloudsync_service::payloads::verify_object(&object_key, &bytes)?;
        validate(&bytes, &site_v, &db_v, max_raw, &schema).map(|changes| (changes, object_key, bytes))
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
            actor: job_actor(&ctx),
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
    ctx.record(&state, activity);
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
    ctx: SyncCtx,
    b: Result<Json<NewUpload>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<UploadTicket>)> {
    let (db, site) = (&ctx.db, ctx.site);
    ctx.within_quotas(&state, true).await?;
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
    let object = cloudsync_service::payloads::object_key(db.id.as_str(), &site.to_string(), &sha256);
    let ttl = Duration::from_secs(900);
    let url = state.payloads.presign(&object, Op::Put { len: req.bytes }, ttl).await?;
    Ok((StatusCode::CREATED, Json(UploadTicket { object, upload_url: url, expires_in: ttl.as_secs() })))
}

/// Whom an apply job acts for, with only the claims it can need: on a SQLite backend
/// those its write policies read; a PostgreSQL backend's row-level security may read
/// any claim.
fn job_actor(ctx: &SyncCtx) -> cloudsync_service::actor::Actor {
    match ctx.db.backend {
        cloudsync_service::model::BackendConfig::Sqlite => {
            let policies = ctx.db.settings.write_policies();
            ctx.actor.for_job(policies.iter().map(|(_, p)| p.as_str()))
        }
        cloudsync_service::model::BackendConfig::Postgres { .. } => ctx.actor.clone(),
    }
}
