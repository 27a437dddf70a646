//! The sync protocol, version 1 (specified in `docs/protocol.md`; its wire types are
//! `cloudsync_protocol::sync`'s).
//!
//! | call | does | in |
//! |---|---|---|
//! | `POST {sync_url}/changes` | upload: a payload inline, or a reference to one uploaded through a signed URL; answered `202` once its apply job is durable | `upload` |
//! | `POST {sync_url}/uploads` | a signed URL to upload a large payload to the payload store | `upload` |
//! | `GET {sync_url}/changes?after=…&wait_ms=…` | download: the next chunk of changes the device did not write; long-polls when there is none | `download` |
//! | `GET {sync_url}/status` | what the server accepted, applied and failed for this device | `status` |
//! | `POST {sync_url}/visibility` | which of the rows a device holds its user may no longer read | `visibility` |
//!
//! Every handler starts from a [`SyncCtx`]: the caller authenticated, the database it
//! may sync with, the identity it syncs as (a JWT's role allowed by the database) and
//! the device — bound to the caller, not blocked — resolved once, in that order, before
//! the handler reads anything else of the request.

mod download;
mod status;
mod upload;
mod visibility;

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use cloudsync_core::feed::Checkpoint;
use cloudsync_service::actor::Actor;
use cloudsync_service::control::bindings::Refused;
use cloudsync_service::control::devices::Activity;
use cloudsync_service::control::keys::Scope;
use cloudsync_service::control::quotas::Quota;
use cloudsync_service::ids::{DatabaseId, SiteHex};
use cloudsync_service::model::Database;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub use cloudsync_protocol::sync::header::{CHANGES, CURSOR, FROM, MORE, SITE, TO, UNREADABLE};
pub use cloudsync_protocol::sync::{MAX_VISIBILITY_KEYS, PAYLOAD_TYPE};
pub use download::*;
pub use status::*;
pub use upload::*;
pub use visibility::*;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::AppState;

/// Longest a download may wait for new changes.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A sync request's context, resolved once before its handler runs: the caller
/// (authenticated and rate limited), the database it may sync with (checked against
/// the caller's scope), the identity its changes are applied and its downloads read
/// with (refused when the database does not allow a JWT's role), and the device, by
/// the site id of its `x-cloudsync-site` header or its `site` query parameter: bound
/// to the caller on its first request and refused to anyone else, not blocked (by
/// site, user or key).
pub struct SyncCtx {
    /// Who is calling.
    pub caller: Caller,
    /// The database addressed.
    pub db: Database,
    /// Whom the request acts as.
    pub actor: Actor,
    /// The device.
    pub site: SiteHex,
    /// The credential's subject (`user:…`, `key:…`) the device is bound to.
    pub subject: String,
}

impl FromRequestParts<AppState> for SyncCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(db) = Path::<String>::from_request_parts(parts, state).await?;
        let unknown = |e: ApiError| match e {
            ApiError::NotFound(_) => ApiError::UnknownDatabase,
            other => other,
        };
        let id = DatabaseId::parse(&db).map_err(|e| unknown(e.into()))?;
        let db = state.control.database(&id).await.map_err(|e| unknown(e.into()))?;
        caller.database(&db, Scope::Sync).map_err(unknown)?;
        let actor = caller.actor(&db)?;
        let site = SiteHex::parse(&site_of(parts)?)?;
        let subject = caller.subject().ok_or_else(|| ApiError::Forbidden("sync endpoints are for devices".into()))?;
        let refused = state
            .control
            .admit(&db.tenant_id, &db.id, &site, &subject, state.limits.new_sites_per_hour, state.limits.quotas)
            .await?;
        match refused {
            None => Ok(SyncCtx { caller, db, actor, site, subject }),
            Some(Refused::TooManyDevices { limit }) => Err(ApiError::OverQuota { quota: Quota::Devices, limit }),
            Some(Refused::Blocked(reason)) => Err(ApiError::DeviceBlocked(reason.filter(|r| !r.is_empty()))),
            Some(Refused::BoundElsewhere) => Err(ApiError::SiteBound),
            Some(Refused::TooManyNewSites { limit, retry_after_secs }) => {
                Err(ApiError::TooManyNewSites { limit, retry_after_secs })
            }
        }
    }
}

impl SyncCtx {
    /// Counts this request in the device's and the database's usage, and its bytes in
    /// the tenant's transfer of the day.
    fn record(&self, state: &AppState, mut activity: Activity) {
        activity.user_id = self.caller.user_id().map(str::to_string);
        let bytes = activity.bytes_in.saturating_add(activity.bytes_out);
        state.quotas.count_transfer(&self.db.tenant_id, u64::try_from(bytes).unwrap_or(0));
        state.usage.record(&self.db.tenant_id, &self.db.id, self.site, activity);
    }

    /// Refuses a transfer past the tenant's quotas: its transfer of the day and, for an
    /// upload (`storing`), the storage its SQLite databases take.
    async fn within_quotas(&self, state: &AppState, storing: bool) -> ApiResult<()> {
        state.quotas.check_transfer(state, &self.db.tenant_id).await?;
        if storing {
            state.quotas.check_storage(state, &self.db.tenant_id).await?;
        }
        Ok(())
    }
}

/// The `site` query parameter, where a call may name the device.
#[derive(Deserialize)]
struct SiteParam {
    site: Option<String>,
}

/// The device's site id: its header, else the `site` query parameter; both given and
/// different is refused rather than guessed between.
fn site_of(parts: &Parts) -> ApiResult<String> {
    let from_header = match parts.headers.get(SITE) {
        Some(v) => Some(v.to_str().map_err(|_| ApiError::BadRequest(format!("header {SITE} is not text")))?),
        None => None,
    };
    let from_query =
        axum::extract::Query::<SiteParam>::try_from_uri(&parts.uri).ok().and_then(|axum::extract::Query(q)| q.site);
    match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => {
            Err(ApiError::BadRequest(format!("header {SITE} and query parameter site name different devices")))
        }
        (Some(h), _) => Ok(h.to_string()),
        (None, Some(q)) => Ok(q),
        (None, None) => Err(ApiError::BadRequest(format!("missing header {SITE}"))),
    }
}

/// Parses a feed checkpoint (`docs/protocol.md`): `<db_version>[.<seq>]`, or
/// `<after>~<base>` partway through a pass (`0`: the beginning).
pub fn parse_cursor(s: &str) -> ApiResult<Checkpoint> {
    Checkpoint::parse(s).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid cursor '{}' (expected <db_version>[.<seq>] or <after>~<base>, as the server handed out)",
            cloudsync_core::value::shown(s, 40)
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
