//! Tenants (operator only, except reading one's own tenant and its usage).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cloudsync_service::control::devices::Usage;
use cloudsync_service::control::keys::Scope;
use cloudsync_service::control::quotas::{QuotaOverrides, Quotas};
use cloudsync_service::deletion::{self, Deleted};
use cloudsync_service::ids::{now_ms, TenantId};
use cloudsync_service::model::Tenant;
use cloudsync_service::page::Page;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{body, Path, Query};
use crate::AppState;

/// `limit` and `cursor` of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The page requested.
    pub fn page(&self) -> ApiResult<cloudsync_service::page::PageRequest> {
        Ok(cloudsync_service::page::PageRequest::new(self.limit, self.cursor.as_deref())?)
    }
}

/// A time range, Unix milliseconds (default: the last 30 days).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start (inclusive, rounded down to the hour).
    pub from: Option<i64>,
    /// End (exclusive; default now).
    pub to: Option<i64>,
}

impl RangeQuery {
    /// The range, with defaults.
    pub fn range(&self) -> (i64, i64) {
        let to = self.to.unwrap_or_else(|| now_ms() + 1);
        (self.from.unwrap_or(to.saturating_sub(30 * 24 * 3_600_000)), to)
    }
}

/// Confirmation of a deletion.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// The id of the resource being deleted, repeated.
    pub confirm: Option<String>,
}

impl ConfirmQuery {
    /// Requires `confirm` to repeat `id`.
    pub fn require(&self, what: &str, id: &str) -> ApiResult<()> {
        if self.confirm.as_deref() == Some(id) {
            Ok(())
        } else {
            Err(ApiError::ConfirmationRequired(format!(
                "deleting a {what} removes all its data; repeat its id as ?confirm={id}"
            )))
        }
    }
}

/// Body of `POST /v1/tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Display name.
    name: String,
}

/// Body of `PATCH /v1/tenants/{tenant}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// New display name.
    name: String,
}

/// Parses a tenant id from a path (unknown ids are `404`).
pub fn tenant_id(s: &str) -> ApiResult<TenantId> {
    Ok(TenantId::parse(s)?)
}

/// Create a tenant.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, description = "Created", body = Tenant)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<NewTenant>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    caller.operator()?;
    let req = body(b, state.limits.json_bytes)?;
    Ok((StatusCode::CREATED, Json(state.control.create_tenant(&req.name).await?)))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(ListQuery),
    responses((status = 200, description = "A page of tenants", body = Page<Tenant>)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    caller.operator()?;
    let q = q?;
    Ok(Json(state.control.tenants(&q.page()?).await?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = Tenant)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    Ok(Json(state.control.tenant(&tenant).await?))
}

/// Rename a tenant.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", request_body = TenantUpdate,
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The renamed tenant", body = Tenant)))]
pub async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<TenantUpdate>, JsonRejection>,
) -> ApiResult<Json<Tenant>> {
    let tenant = tenant_id(&tenant)?;
    caller.operator()?;
    let req = body(b, state.limits.json_bytes)?;
    Ok(Json(state.control.rename_tenant(&tenant, &req.name).await?))
}

/// Delete a tenant with all its databases, payloads, keys and devices.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id"), ConfirmQuery),
    responses((status = 200, description = "What was deleted", body = Deleted)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<ConfirmQuery>,
) -> ApiResult<Json<Deleted>> {
    let tenant = tenant_id(&tenant)?;
    caller.operator()?;
    let q = q?;
    // No existence check first: a deletion interrupted half-way (the tenant already
    // hidden) is finished by repeating it.
    q.require("tenant", tenant.as_str())?;
    let deleted = deletion::delete_tenant(&state.control, &state.backends, state.payloads.as_ref(), &tenant).await?;
    tracing::info!(%tenant, databases = deleted.databases, "tenant deleted");
    Ok(Json(deleted))
}

/// Suspend a tenant: its keys and tokens are refused until it is resumed.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/suspend", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The suspended tenant", body = Tenant)))]
pub async fn suspend_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let tenant = tenant_id(&tenant)?;
    caller.operator()?;
    Ok(Json(state.control.set_suspended(&tenant, true).await?))
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/resume", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The resumed tenant", body = Tenant)))]
pub async fn resume_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let tenant = tenant_id(&tenant)?;
    caller.operator()?;
    Ok(Json(state.control.set_suspended(&tenant, false).await?))
}

/// A tenant's quotas: in force, those an operator set for it (the others are the
/// node's defaults), and what it uses of those measured in bytes.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TenantQuotas {
    /// The limits in force (0: no limit).
    pub quotas: Quotas,
    /// The limits set for this tenant; a limit not here is the node's default.
    pub overrides: QuotaOverrides,
    /// What it uses now.
    pub used: QuotaUse,
}

/// What a tenant uses of its byte quotas, as the node enforcing them counts (to within
/// a few seconds; `docs/security.md#quotas`).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct QuotaUse {
    /// Sync payload bytes moved today (UTC), over all nodes (counted only while
    /// `transfer_mb_per_day` is limited).
    pub transfer_bytes_today: u64,
    /// Bytes its SQLite databases take (counted only while `storage_mb` is limited).
    pub storage_bytes: u64,
}

/// A tenant's quotas as the API answers them (and the dashboard shows them).
pub async fn quotas_of(state: &AppState, tenant: &TenantId) -> ApiResult<TenantQuotas> {
    let overrides = state.control.quota_overrides(tenant).await?;
    let s = state.quotas.snapshot(state, tenant).await?;
    Ok(TenantQuotas {
        quotas: state.limits.quotas.with(&overrides),
        overrides,
        used: QuotaUse { transfer_bytes_today: s.transfer_bytes, storage_bytes: s.storage_bytes },
    })
}

/// A tenant's quotas (`docs/api.md#quotas`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/quotas", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's quotas", body = TenantQuotas)))]
pub async fn get_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantQuotas>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    state.control.tenant(&tenant).await?;
    Ok(Json(quotas_of(&state, &tenant).await?))
}

/// Set a tenant's quotas (operator only): the limits given replace those set before;
/// a limit left out is the node's default again; 0 is no limit.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/quotas", tag = "tenants", request_body = QuotaOverrides,
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's quotas", body = TenantQuotas)))]
pub async fn set_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<QuotaOverrides>, JsonRejection>,
) -> ApiResult<Json<TenantQuotas>> {
    let tenant = tenant_id(&tenant)?;
    // Another tenant's key learns nothing (404); the tenant's own keys may not raise
    // their quotas (403).
    caller.tenant(&tenant, Scope::Admin)?;
    caller.operator()?;
    let req = body(b, state.limits.json_bytes)?;
    state.control.set_quota_overrides(&tenant, &req).await?;
    state.quotas.forget(&tenant);
    tracing::info!(%tenant, quotas = ?req, "tenant quotas set");
    Ok(Json(quotas_of(&state, &tenant).await?))
}

/// Usage of all of a tenant's databases over a time range.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "usage",
    params(("tenant" = String, Path, description = "Tenant id"), RangeQuery),
    responses((status = 200, description = "Usage in the range", body = Usage)))]
pub async fn tenant_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Usage>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let q = q?;
    state.control.tenant(&tenant).await?;
    let (from, to) = q.range();
    Ok(Json(state.control.usage(&tenant, None, from, to).await?))
}
