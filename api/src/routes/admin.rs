//! The minimal admin REST API: tenants, databases, schema provisioning, API keys.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cloudsync_tenants::ids::{DatabaseId, TenantId};
use cloudsync_tenants::keys::Scope;
use cloudsync_tenants::store::BackendConfig;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Unwraps a JSON body, turning extractor rejections into our error shape: `413`
/// over `limit`, `400` for anything else.
pub fn body<T>(b: Result<Json<T>, JsonRejection>, limit: usize) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(limit),
        _ => ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text())),
    })
}

/// Body of `POST /v1/tenants`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
}

/// `POST /v1/tenants` (admin token).
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<NewTenant>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.operator()?;
    let req = body(b, state.limits.json_bytes)?;
    let t = state.control.create_tenant(&req.name).await?;
    Ok((StatusCode::CREATED, Json(json!(t))))
}

/// Body of `POST /v1/tenants/{tenant}/databases`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDatabase {
    name: String,
    backend: BackendConfig,
}

/// `POST /v1/tenants/{tenant_id}/databases`.
pub async fn create_database(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<NewDatabase>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = TenantId::parse(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let req = body(b, state.limits.json_bytes)?;
    let db = state.control.create_database(&tenant, &req.name, req.backend).await?;
    let backends = std::sync::Arc::clone(&state.backends);
    let id = db.id.clone();
    state.blocking(move || backends.create(&id)).await?;
    let mut v = json!(db);
    v["sync_url"] = json!(state.sync_url(&db.id));
    Ok((StatusCode::CREATED, Json(v)))
}

/// Body of the schema endpoint: SQLite `CREATE TABLE` statements and optional per-table algorithms.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    sql: String,
    #[serde(default)]
    algo: BTreeMap<String, String>,
}

/// `POST /v1/tenants/{tenant_id}/databases/{database_id}/schema`: runs `CREATE TABLE`
/// statements in the central database and enables sync on the new tables.
pub async fn apply_schema(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, database)): Path<(String, String)>,
    b: Result<Json<Schema>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let tenant = TenantId::parse(&tenant)?;
    caller.tenant(&tenant, Scope::Schema)?;
    let db = state.control.tenant_database(&tenant, &DatabaseId::parse(&database)?).await?;
    let req = body(b, state.limits.json_bytes)?;
    let backends = std::sync::Arc::clone(&state.backends);
    let tables = state.blocking(move || backends.provision(&db.id, &req.sql, &req.algo)).await?;
    Ok(Json(json!({ "tables": tables })))
}

/// Body of `POST /v1/tenants/{tenant}/api-keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// `POST /v1/tenants/{tenant_id}/api-keys`: the secret is in the response, once.
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<NewKey>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = TenantId::parse(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let req = body(b, state.limits.json_bytes)?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown scope '{s}' (admin, sync, schema)")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let (key, secret) = state.control.create_api_key(&tenant, &req.name, &scopes, req.expires_at).await?;
    let mut v = json!(key);
    v["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)))
}
