//! A tenant's databases: lifecycle, settings, schema provisioning and usage.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cloudsync_protocol::{Provisioning, Tables};
use cloudsync_service::backends::{parse_omissions, SchemaRequest};
use cloudsync_service::control::devices::Usage;
use cloudsync_service::control::keys::Scope;
use cloudsync_service::deletion::{self, Deleted};
use cloudsync_service::ids::{DatabaseId, TenantId};
use cloudsync_service::model::{BackendConfig, Database, DatabaseUpdate};
use cloudsync_service::ops;
use cloudsync_service::page::Page;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::tenants::{tenant_id, ConfirmQuery, ListQuery, RangeQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{body, Path, Query};
use crate::AppState;

/// A database, with the URL its devices sync with.
#[derive(Serialize, ToSchema)]
pub struct DatabaseView {
    #[serde(flatten)]
    database: Database,
    /// The single string a device passes to `cloudsync_network_init`.
    sync_url: String,
}

impl DatabaseView {
    fn of(state: &AppState, database: Database) -> DatabaseView {
        DatabaseView { sync_url: state.sync_url(&database.id), database }
    }
}

/// Body of `POST /v1/tenants/{tenant}/databases`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDatabase {
    /// Name, unique within the tenant.
    name: String,
    /// Where the central copy lives.
    #[serde(default = "default_backend")]
    backend: BackendConfig,
}

fn default_backend() -> BackendConfig {
    BackendConfig::Sqlite
}

/// Body of the schema endpoint: SQLite `CREATE TABLE` statements and optional per-table algorithms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// `CREATE TABLE` / `CREATE INDEX` statements (SQLite dialect).
    sql: String,
    /// Algorithm per table (`cls`, `gos`, `dws`, `aws`; default `cls`).
    #[serde(default)]
    algo: BTreeMap<String, String>,
    /// `cloudsync_init` flags per table (default 0): 1 allows a single integer key
    /// (a rowid alias: the application must make ids unique across devices), 2 a
    /// `NOT NULL` column without `DEFAULT`.
    #[serde(default)]
    flags: BTreeMap<String, i64>,
    /// Constructs without a faithful PostgreSQL translation to leave out instead of
    /// refusing the schema, each `table.column:kind` or `table:kind` (kind `check`,
    /// `default`, `collate` or `on-conflict`), as a refusal names it
    /// (`docs/translate-ddl.md`). PostgreSQL backends only.
    #[serde(default)]
    omit: Vec<String>,
}

/// Options of the schema endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchemaQuery {
    /// Validate and report the statements and tables without keeping anything.
    pub dry_run: Option<bool>,
}

/// Loads a tenant's database after checking the caller may use it with `scope`.
pub async fn load(state: &AppState, caller: &Caller, tenant: &str, db: &str, scope: Scope) -> ApiResult<Database> {
    let tenant: TenantId = tenant_id(tenant)?;
    caller.tenant(&tenant, scope)?;
    Ok(state.control.tenant_database(&tenant, &DatabaseId::parse(db)?).await?)
}

/// Create a database.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases", tag = "databases", request_body = NewDatabase,
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 201, description = "Created", body = DatabaseView)))]
pub async fn create_database(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Json<NewDatabase>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<DatabaseView>)> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let req = body(b, state.limits.json_bytes)?;
    let db =
        ops::create_database(&state.control, &state.backends, &tenant, &req.name, req.backend, state.limits.quotas)
            .await?;
    Ok((StatusCode::CREATED, Json(DatabaseView::of(&state, db))))
}

/// List a tenant's databases.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases", tag = "databases",
    params(("tenant" = String, Path, description = "Tenant id"), ListQuery),
    responses((status = 200, description = "A page of databases", body = Page<DatabaseView>)))]
pub async fn list_databases(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<DatabaseView>>> {
    let tenant = tenant_id(&tenant)?;
    caller.tenant(&tenant, Scope::Admin)?;
    let q = q?;
    let page = state.control.databases(&tenant, &q.page()?).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(|d| DatabaseView::of(&state, d)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Get a database.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}", tag = "databases",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 200, description = "The database", body = DatabaseView)))]
pub async fn get_database(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
) -> ApiResult<Json<DatabaseView>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    Ok(Json(DatabaseView::of(&state, db)))
}

/// Rename a database or replace its sync settings.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/databases/{db}", tag = "databases", request_body = DatabaseUpdate,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 200, description = "The updated database", body = DatabaseView)))]
pub async fn update_database(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    b: Result<Json<DatabaseUpdate>, JsonRejection>,
) -> ApiResult<Json<DatabaseView>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let req = body(b, state.limits.json_bytes)?;
    if let Some(settings) = &req.settings {
        settings.validate()?;
        state.backends.of(&db).check_settings(settings).await?;
    }
    let updated = state.control.update_database(&db.tenant_id, &db.id, req).await?;
    Ok(Json(DatabaseView::of(&state, updated)))
}

/// Body of the policy endpoint: a table's row policies (SQLite backends).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Which rows a device may read: a SQL expression over the row's columns and
    /// `auth_uid()`, `auth_role()`, `auth_claim('path')`; absent or null: every row.
    #[serde(default)]
    read: Option<String>,
    /// Which rows a device may create, change or delete (checked before and after
    /// each change); absent or null: every row.
    #[serde(default)]
    write: Option<String>,
}

/// Set a table's row policies (SQLite backends; `docs/rls.md`). Each expression is
/// checked against the table before it is stored.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/databases/{db}/tables/{table}/policy", tag = "databases",
    request_body = Policy,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"),
        ("table" = String, Path, description = "Synced table")),
    responses((status = 200, description = "The updated database", body = DatabaseView)))]
pub async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db, table)): Path<(String, String, String)>,
    b: Result<Json<Policy>, JsonRejection>,
) -> ApiResult<Json<DatabaseView>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let req = body(b, state.limits.json_bytes)?;
    // Policies are for tables this database syncs, under their own names.
    let table = state.backends.of(&db).synced_table(&table).await?;
    let mut settings = db.settings.clone();
    let entry = settings.tables.entry(table.clone()).or_default();
    entry.read_policy = req.read.filter(|p| !p.trim().is_empty());
    entry.write_policy = req.write.filter(|p| !p.trim().is_empty());
    settings.validate()?;
    state.backends.of(&db).check_settings(&settings).await?;
    let update = DatabaseUpdate { name: None, settings: Some(settings) };
    let updated = state.control.update_database(&db.tenant_id, &db.id, update).await?;
    tracing::info!(database = %db.id, table, "row policies set");
    Ok(Json(DatabaseView::of(&state, updated)))
}

/// Delete a database with its data, payloads, jobs and devices.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/databases/{db}", tag = "databases",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"), ConfirmQuery),
    responses((status = 200, description = "What was deleted", body = Deleted)))]
pub async fn delete_database(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    Query(q): Query<ConfirmQuery>,
) -> ApiResult<Json<Deleted>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let q = q?;
    q.require("database", db.id.as_str())?;
    let deleted = deletion::delete_database(&state.control, &state.backends, state.payloads.as_ref(), &db).await?;
    tracing::info!(database = %db.id, tenant = %db.tenant_id, "database deleted");
    Ok(Json(deleted))
}

/// Provision tables: runs SQLite `CREATE TABLE` statements in the central database
/// (translated for a PostgreSQL backend, `docs/translate-ddl.md`; tables that exist
/// there get their new columns) and enables sync on the new tables, all or nothing. With `?dry_run=true` nothing is
/// kept: the answer says what would be run and synced.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/databases/{db}/schema", tag = "databases", request_body = Schema,
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"), SchemaQuery),
    responses((status = 200, description = "The statements run and the tables provisioned", body = Provisioning)))]
pub async fn apply_schema(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
    b: Result<Json<Schema>, JsonRejection>,
) -> ApiResult<Json<Provisioning>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Schema).await?;
    let dry_run = q?.dry_run.unwrap_or(false);
    let req = body(b, state.limits.json_bytes)?;
    let omit = parse_omissions(req.omit.iter().map(String::as_str)).map_err(ApiError::BadRequest)?;
    let req = SchemaRequest { sql: req.sql, algos: req.algo, flags: req.flags, omit, dry_run };
    Ok(Json(ops::provision(&state.control, &state.backends, &db, req).await?))
}

/// The synced tables of a database, with their algorithm, columns and row count.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/tables", tag = "databases",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id")),
    responses((status = 200, description = "The synced tables", body = Tables)))]
pub async fn list_tables(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
) -> ApiResult<Json<Tables>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let tables = state.backends.of(&db).tables().await?;
    Ok(Json(Tables { tables }))
}

/// Usage of one database over a time range.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/databases/{db}/usage", tag = "usage",
    params(("tenant" = String, Path, description = "Tenant id"), ("db" = String, Path, description = "Database id"), RangeQuery),
    responses((status = 200, description = "Usage in the range", body = Usage)))]
pub async fn database_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, db)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Usage>> {
    let db = load(&state, &caller, &tenant, &db, Scope::Admin).await?;
    let q = q?;
    let (from, to) = q.range();
    Ok(Json(state.control.usage(&db.tenant_id, Some(&db.id), from, to).await?))
}
