//! A database's devices and apply jobs.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cloudsync_service::control::bindings::BlockedSubject;
use cloudsync_service::control::devices::Device;
use cloudsync_service::control::jobs::{Job, JobState};
use cloudsync_service::control::keys::Scope;
use cloudsync_service::ids::SiteHex;
use cloudsync_service::page::Page;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::databases::load;
use super::tenants::ListQuery;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{body, Path, Query};
use crate::AppState;

/// List a database's devices.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/devices", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"), ListQuery),
    responses((status = 200, description = "A page of devices, by site id", body = Page<Device>)))]
pub async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<Device>>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let q = q?;
    Ok(Json(state.control.devices(&db.id, &q.page()?).await?))
}

/// Get a device.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/devices/{site}", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("site" = String, Path, description = "Site id (32 hex characters)")),
    responses((status = 200, description = "The device", body = Device)))]
pub async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, site)): Path<(String, String, String)>,
) -> ApiResult<Json<Device>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(state.control.device(&db.id, &SiteHex::parse(&site)?).await?))
}

/// Body of a block request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Why (shown to the device in its error).
    #[serde(default)]
    reason: Option<String>,
}

/// Block a device: its sync requests are refused with `403 device_blocked`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/devices/{site}/block", tag = "devices", request_body = Block,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("site" = String, Path, description = "Site id (32 hex characters)")),
    responses((status = 200, description = "The blocked device", body = Device)))]
pub async fn block_device(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, site)): Path<(String, String, String)>,
    b: Result<Json<Block>, JsonRejection>,
) -> ApiResult<Json<Device>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let site = SiteHex::parse(&site)?;
    let req = body(b, state.limits.json_bytes)?;
    let reason = req.reason.unwrap_or_else(|| "blocked by an administrator".into());
    Ok(Json(state.control.set_blocked(&db.id, &site, Some(&reason)).await?))
}

/// Unblock a device.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/devices/{site}/unblock", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("site" = String, Path, description = "Site id (32 hex characters)")),
    responses((status = 200, description = "The device", body = Device)))]
pub async fn unblock_device(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, site)): Path<(String, String, String)>,
) -> ApiResult<Json<Device>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(state.control.set_blocked(&db.id, &SiteHex::parse(&site)?, None).await?))
}

/// Release a device's binding: its site id is bound to whoever syncs with it next
/// (`docs/protocol.md`, "Devices are who they say they are").
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/devices/{site}/release", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("site" = String, Path, description = "Site id (32 hex characters)")),
    responses((status = 200, description = "The device, unbound", body = Device)))]
pub async fn release_device(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, site)): Path<(String, String, String)>,
) -> ApiResult<Json<Device>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(state.control.release_device(&db.id, &SiteHex::parse(&site)?).await?))
}

/// A user or API key to block or unblock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectBlock {
    /// `user:<JWT user id>` or `key:<API key id>` (as a device's `subject` shows).
    subject: String,
    /// Why (shown to its devices in their errors; blocking only).
    #[serde(default)]
    reason: Option<String>,
}

/// The users and API keys blocked in a database (at most 1000, most recent first).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/blocked", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 200, description = "Blocked users and keys", body = Vec<BlockedSubject>)))]
pub async fn list_blocked(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
) -> ApiResult<Json<Vec<BlockedSubject>>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(state.control.blocked_subjects(&db.id).await?))
}

/// Block a user or an API key: every sync request it makes to this database is
/// refused with `403 device_blocked`, whatever site id it uses.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/blocked", tag = "devices", request_body = SubjectBlock,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 200, description = "The block", body = BlockedSubject)))]
pub async fn block_subject(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    b: Result<Json<SubjectBlock>, JsonRejection>,
) -> ApiResult<Json<BlockedSubject>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let req = body(b, state.limits.json_bytes)?;
    let reason = req.reason.unwrap_or_else(|| "blocked by an administrator".into());
    Ok(Json(state.control.block_subject(&db.id, &req.subject, &reason).await?))
}

/// Unblock a user or an API key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/blocked/remove", tag = "devices", request_body = SubjectBlock,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 204, description = "Unblocked")))]
pub async fn unblock_subject(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    b: Result<Json<SubjectBlock>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let req = body(b, state.limits.json_bytes)?;
    state.control.unblock_subject(&db.id, &req.subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filter of a job list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Items per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn job_id(s: &str) -> ApiResult<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::NotFound("job".into()))
}

/// List a database's apply jobs, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/jobs", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"), JobsQuery),
    responses((status = 200, description = "A page of jobs", body = Page<Job>)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Page<Job>>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let q = q?;
    let page = ListQuery { limit: q.limit, cursor: q.cursor }.page()?;
    Ok(Json(state.control.jobs(&db.id, q.state, &page).await?))
}

/// Get a job.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/jobs/{job}", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("job" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = Job)))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, job)): Path<(String, String, String)>,
) -> ApiResult<Json<Job>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(state.control.job(&db.id, job_id(&job)?).await?))
}

/// Retry a failed or backing-off job now, with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/jobs/{job}/retry", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("job" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job, pending", body = Job)))]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, job)): Path<(String, String, String)>,
) -> ApiResult<Json<Job>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let job = state.control.retry_job(&db.id, job_id(&job)?).await?;
    state.wake.notify_one();
    Ok(Json(job))
}

/// Discard a waiting or dead job without applying it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/jobs/{job}/discard", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("job" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job, discarded", body = Job)))]
pub async fn discard_job(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, job)): Path<(String, String, String)>,
) -> ApiResult<Json<Job>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let job = state.control.discard_job(&db.id, job_id(&job)?).await?;
    state.wake.notify_one();
    Ok(Json(job))
}
