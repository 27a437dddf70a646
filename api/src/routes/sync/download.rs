//! Downloads: the next bounded chunk of the central feed minus the device's own
//! changes, long-polling when there is none, restarting a device's pass when the rules
//! of what it may read changed.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cloudsync_core::feed::Checkpoint;
use cloudsync_protocol::sync::declared::{self, Declared};
use cloudsync_protocol::sync::header::{MORE_FOLLOWS, SCHEMA, SKIPPED};
use cloudsync_service::control::devices::Activity;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{cursor_text, parse_cursor, Payload, SyncCtx, CHANGES, CURSOR, MAX_WAIT, MORE, PAYLOAD_TYPE, UNREADABLE};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::metrics::Action;
use crate::AppState;

/// Query of a download.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The device's site id (32 hex characters), unless the `x-cloudsync-site` header
    /// names it (read by [`SyncCtx`]).
    #[serde(default)]
    #[allow(dead_code)]
    site: Option<String>,
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
    params(("db" = String, Path, description = "Database id"), DownloadQuery,
        ("x-cloudsync-schema" = Option<String>, Header, description = "The tables and columns the device syncs (`table:column,column;…`, names percent-encoded): changes of others are left out")),
    responses(
        (status = 200, description = "A chunk of changes", body = Payload, content_type = "application/vnd.cloudsync.payload",
            headers(("x-cloudsync-cursor" = String, description = "Position the chunk ends at"),
                ("x-cloudsync-more" = String, description = "`1` when more changes follow"),
                ("x-cloudsync-changes" = u64, description = "Changes in the chunk"),
                ("x-cloudsync-unreadable" = String, description = "Synced tables the role may not read, left out (percent-encoded, comma-separated)"),
                ("x-cloudsync-skipped" = String, description = "Tables and columns (`table.column`) left out because the device's `x-cloudsync-schema` lacks them (percent-encoded, comma-separated)"))),
        (status = 204, description = "No changes (within `wait_ms`)",
            headers(("x-cloudsync-cursor" = String, description = "The current position"),
                ("x-cloudsync-unreadable" = String, description = "Synced tables the role may not read, left out")))))]
pub async fn download(
    State(state): State<AppState>,
    ctx: SyncCtx,
    headers: HeaderMap,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let (db, site) = (&ctx.db, ctx.site);
    let q = q?;
    let declared = declared_schema(&headers)?;
    ctx.within_quotas(&state, false).await?;
    let actor = &ctx.actor;
    let mut after = q.after.as_deref().map(parse_cursor).transpose()?.unwrap_or(Checkpoint::ZERO);
    // When the rules deciding what this device may read changed since it was last served
    // (or it never stored a checkpoint of the pass that restarted it), it starts over:
    // rows that became visible reach it although they did not change (docs/rls.md).
    // While that pass runs, only the last checkpoint it handed out continues it; any
    // other (a response lost, a checkpoint from before) starts it again, which merges
    // make harmless.
    let mut restart_pass = None;
    if let Some(rules) = state.backends.of(db).visibility().await? {
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
    // A download that may wait counts against the tenant's long-poll quotas until it
    // answers, and subscribes before reading, so a change applied in between is not
    // missed. While it waits it costs no query: the database's one shared watcher
    // reads its feed position for everyone waiting on it (`service::notify`).
    let mut waiting = if wait.is_zero() {
        None
    } else {
        let quotas = state.quotas.quotas(&state, &db.tenant_id).await?;
        let place = state
            .long_polls
            .enter(&db.tenant_id, &ctx.subject, quotas)
            .map_err(|(quota, limit)| ApiError::OverQuota { quota, limit })?;
        Some((place, state.notifier.subscribe_watched(db, &state.backends)))
    };
    // Tables the role may not read at all are left out, and the device told so (a
    // misconfigured grant is visible where it syncs, not a silent gap).
    let unreadable = names_header(state.backends.of(db).unreadable(actor).await?.iter().map(String::as_str))?;
    // A device that declared its schema gets only what it has; only one that lacks
    // something of the central schema pays for leaving it out.
    let declared = match declared {
        Some(d) if !lacks_any(&d, &*state.backends.schema(db).await?) => None,
        d => d.map(std::sync::Arc::new),
    };
    let mut shutdown = state.shutdown.clone();
    loop {
        let chunk = state.backends.of(db).changes(after, site.0, max_bytes, actor).await?;
        if let Some(rules) = &restart_pass {
            let last = chunk.more.then(|| cursor_text(chunk.next));
            state.control.set_device_visibility(&db.id, &site, rules, last.as_deref()).await?;
            if !chunk.more {
                restart_pass = None;
            }
        }
        let mut activity = Activity { download_after: Some(cursor_text(after)), ..Activity::default() };
        if let Some(payload) = chunk.payload {
            let (payload, changes, skipped) = match &declared {
                Some(d) => known_only(&state, payload, std::sync::Arc::clone(d)).await?,
                None => (payload, chunk.changes, None),
            };
            activity.bytes_out = i64::try_from(payload.len()).unwrap_or(i64::MAX);
            activity.changes_out = i64::try_from(changes).unwrap_or(i64::MAX);
            ctx.record(&state, activity);
            state.metrics.payload(&db.tenant_id, Action::Download, payload.len(), changes);
            let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, PAYLOAD_TYPE)], payload).into_response();
            let h = resp.headers_mut();
            h.insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.next)).map_err(|e| ApiError::Internal(Box::new(e)))?,
            );
            h.insert(MORE, HeaderValue::from_static(if chunk.more { MORE_FOLLOWS } else { "0" }));
            h.insert(CHANGES, HeaderValue::from(changes));
            if let Some(v) = &unreadable {
                h.insert(UNREADABLE, v.clone());
            }
            if let Some(v) = skipped {
                h.insert(SKIPPED, v);
            }
            return Ok(resp);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *shutdown.borrow() {
            ctx.record(&state, activity);
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().insert(
                CURSOR,
                HeaderValue::from_str(&cursor_text(chunk.next)).map_err(|e| ApiError::Internal(Box::new(e)))?,
            );
            if let Some(v) = unreadable {
                resp.headers_mut().insert(UNREADABLE, v);
            }
            return Ok(resp);
        }
        // Woken by an apply on this node, or by the watcher for changes made elsewhere.
        let Some((_, changed)) = waiting.as_mut() else { continue };
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The device's declared schema ([`SCHEMA`]), if it sent one.
fn declared_schema(headers: &HeaderMap) -> ApiResult<Option<Declared>> {
    let Some(v) = headers.get(SCHEMA) else { return Ok(None) };
    let text = v.to_str().map_err(|_| ApiError::BadRequest(format!("{SCHEMA}: not ASCII")))?;
    declared::parse(text).map(Some).map_err(|e| ApiError::BadRequest(format!("{SCHEMA}: {e}")))
}

/// Whether `declared` lacks a table or column of `central`.
fn lacks_any(declared: &Declared, central: &cloudsync_service::backends::Schema) -> bool {
    central.iter().any(|(table, columns)| declared.get(table).is_none_or(|d| !columns.is_subset(d)))
}

/// A chunk without what the device's declared schema lacks: the payload, its changes,
/// and the [`SKIPPED`] header naming what was left out (None when nothing was).
/// Decoding takes a place of `state.decoding`, as an upload's does, off the runtime.
async fn known_only(
    state: &AppState,
    payload: Vec<u8>,
    declared: std::sync::Arc<Declared>,
) -> ApiResult<(Vec<u8>, u64, Option<HeaderValue>)> {
    let _permit = state.decoding.acquire().await.map_err(|e| ApiError::Internal(Box::new(e)))?;
    let (payload, changes, skipped) = tokio::task::spawn_blocking(move || {
        let cs = cloudsync_core::payload::decode(&payload).map_err(|e| ApiError::Internal(Box::new(e)))?;
        Ok::<_, ApiError>(match cloudsync_core::engine::known_only(&cs, &declared) {
            Ok(Some((kept, skipped))) => {
                let bytes = cloudsync_core::payload::PayloadEncoder::encode(&kept, Default::default());
                (bytes, kept.change_count() as u64, skipped)
            }
            Ok(None) => (payload, cs.change_count() as u64, Default::default()),
            Err(e) => return Err(ApiError::Internal(Box::new(e))),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))??;
    Ok((payload, changes, names_header(skipped.iter().map(String::as_str))?))
}

/// A header listing names ([`UNREADABLE`], [`SKIPPED`]); None when there are none.
fn names_header<'a>(names: impl IntoIterator<Item = &'a str>) -> ApiResult<Option<HeaderValue>> {
    let value = cloudsync_protocol::sync::names::encode(names);
    if value.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&value).map(Some).map_err(|e| ApiError::Internal(Box::new(e)))
}
