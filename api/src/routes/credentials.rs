//! A tenant's credentials: API keys and the identity provider its devices' JWTs come from.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cloudsync_service::control::identity::{Identity, IdentityInput};
use cloudsync_service::control::keys::{ApiKey, Scope};
use cloudsync_service::ids::ApiKeyId;
use cloudsync_service::page::Page;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tenants::{tenant_id, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{body, Path, Query};
use crate::AppState;

/// Body of `POST /v1/tenants/{tenant}/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Name.
    name: String,
    /// Scopes: `admin` (everything in the tenant), `sync`, `schema`.
    scopes: Vec<String>,
    /// Expiry, Unix ms.
    #[serde(default)]
    expires_at: Option<i64>,
}

/// A new key, with its secret (shown this once).
#[derive(Serialize, ToSchema)]
pub struct NewKeyView {
    #[serde(flatten)]
    api_key: ApiKey,
    /// The secret: present it as `Authorization: Bearer <key>`.
    key: String,
}

/// Create an API key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "credentials", request_body = NewKey,
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 201, description = "Created; the secret is in `key`, once", body = NewKeyView)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<NewKey>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<NewKeyView>)> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let req = body(b, state.limits.json_bytes)?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown scope '{s}' (admin, sync, schema)")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let (api_key, key) = state.control.create_api_key(&tenant, &req.name, &scopes, req.expires_at).await?;
    Ok((StatusCode::CREATED, Json(NewKeyView { api_key, key })))
}

/// List a tenant's API keys (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "credentials",
    params(("tenant" = String, Path, description = "Tenant id"), ListQuery),
    responses((status = 200, description = "A page of keys", body = Page<ApiKey>)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let q = q?;
    Ok(Json(state.control.api_keys(&tenant, &q.page()?).await?))
}

/// Get an API key.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys/{key}", tag = "credentials",
    params(("tenant" = String, Path, description = "Tenant id"), ("key" = String, Path, description = "API key id")),
    responses((status = 200, description = "The key", body = ApiKey)))]
pub async fn get_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    Ok(Json(state.control.api_key(&tenant, &ApiKeyId::parse(&key)?).await?))
}

/// Revoke an API key (effective at once on every node).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{key}", tag = "credentials",
    params(("tenant" = String, Path, description = "Tenant id"), ("key" = String, Path, description = "API key id")),
    responses((status = 200, description = "The revoked key", body = ApiKey)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    Ok(Json(state.control.revoke_api_key(&tenant, &ApiKeyId::parse(&key)?).await?))
}

/// Get the tenant's identity settings (without the secret).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/identity", tag = "credentials",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The settings", body = Identity)))]
pub async fn get_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Identity>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    Ok(Json(state.control.identity(&tenant).await?))
}

/// Set how the tenant's devices' JWTs are verified.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/identity", tag = "credentials", request_body = IdentityInput,
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The settings", body = Identity)))]
pub async fn set_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<IdentityInput>, JsonRejection>,
) -> ApiResult<Json<Identity>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let req = body(b, state.limits.json_bytes)?;
    Ok(Json(state.control.set_identity(&tenant, req, &state.egress).await?))
}

/// Remove the identity settings (the tenant's JWTs stop being accepted).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/identity", tag = "credentials",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Removed")))]
pub async fn delete_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    state.control.delete_identity(&tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}
