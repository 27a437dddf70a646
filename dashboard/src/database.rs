//! A database's page: how to connect a device (`crate::connect`), its tables, schema
//! provisioning with a preview, devices (block, unblock), jobs (retry, discard, error
//! detail) and usage; and a job's page.
//!
//! One file, over 500 lines: one page family (a database's overview, settings, tables,
//! devices, jobs) sharing its loaders.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cloudsync_api::error::ApiError;
use cloudsync_api::extract::Path;
use cloudsync_api::AppState;
use cloudsync_protocol::Provisioning;
use cloudsync_service::backends::SchemaRequest;
use cloudsync_service::control::devices::Device;
use cloudsync_service::control::jobs::{Job, JobState};
use cloudsync_service::control::overview::Scope;
use cloudsync_service::ids::{DatabaseId, SiteHex};
use cloudsync_service::model::{Database, Tenant};
use cloudsync_service::page::PageRequest;
use leptos::prelude::*;
use serde::Deserialize;

use crate::admin::Admin;
use crate::pages::{is_input_api_error, usage_charts, PAGE};
use crate::tenant::tenant;
use crate::ui::{bytes, count, crumbs, document, when, when_opt, Csrf, Empty, Layout, Pager};
use crate::{notice, Problem};

/// Query of the database page.
#[derive(Deserialize, Default)]
pub struct DatabaseQuery {
    device_cursor: Option<String>,
    job_cursor: Option<String>,
    job_state: Option<String>,
    hours: Option<i64>,
    notice: Option<String>,
}

/// The schema form's state when the page is shown again.
#[derive(Default)]
struct SchemaState {
    sql: String,
    algos: String,
    omit: String,
    preview: Option<Provisioning>,
    error: Option<String>,
}

pub(crate) async fn load(
    state: &AppState,
    admin: &Admin,
    tenant_id: &str,
    db: &str,
) -> Result<(Tenant, Database), Problem> {
    let t = tenant(state, admin, tenant_id).await?;
    let db = state.control.tenant_database(&t.id, &DatabaseId::parse(db)?).await?;
    Ok((t, db))
}

fn job_state(s: Option<&str>) -> Option<JobState> {
    match s? {
        "pending" => Some(JobState::Pending),
        "running" => Some(JobState::Running),
        "done" => Some(JobState::Done),
        "dead" => Some(JobState::Dead),
        "discarded" => Some(JobState::Discarded),
        _ => None,
    }
}

async fn render(
    state: &AppState,
    admin: &Admin,
    (t, db): (Tenant, Database),
    q: &DatabaseQuery,
    schema: SchemaState,
    fresh_key: Option<String>,
    status: StatusCode,
) -> Result<Response, Problem> {
    let base = format!("/admin/tenants/{}/databases/{}", t.id, db.id);
    let tables = state.backends.of(&db).tables().await.map_err(ApiError::from)?;
    let device_schema = state.backends.of(&db).device_schema().await.map_err(ApiError::from)?;
    let devices = state.control.devices(&db.id, &PageRequest::new(Some(PAGE), q.device_cursor.as_deref())?).await?;
    let filter = job_state(q.job_state.as_deref());
    let jobs = state.control.jobs(&db.id, filter, &PageRequest::new(Some(PAGE), q.job_cursor.as_deref())?).await?;
    let hours = if q.hours == Some(168) { 168 } else { 24 };
    let charts = usage_charts(state, Scope::database(&t.id, &db.id), hours, &base).await?;
    let csrf = admin.csrf.clone();

    let table_list = if tables.is_empty() {
        view! { <Empty text="No synced tables yet. Provision them below with SQLite CREATE TABLE statements."/> }
            .into_any()
    } else {
        let rows = tables
            .into_iter()
            .map(|ti| {
                view! {
                    <tr>
                        <td><code>{ti.table}</code></td>
                        <td>{ti.algo}</td>
                        <td>{ti.key.join(", ")}</td>
                        <td class="wrap">{ti.columns.join(", ")}</td>
                        <td class="num">{count(ti.rows)}</td>
                        <td>{if ti.enabled { "tracked" } else { "disabled" }}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <div class="scroll"><table>
                <thead><tr>
                    <th scope="col">"Table"</th><th scope="col">"Algorithm"</th><th scope="col">"Key"</th>
                    <th scope="col">"Columns"</th><th scope="col">"Rows"</th><th scope="col">"Writes"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        }
        .into_any()
    };

    let preview = schema.preview.map(|p| {
        let statements = p.statements.join(";\n\n") + ";";
        let synced =
            p.tables.into_iter().map(|t| view! { <li><code>{t.table}</code>" with "{t.algo}</li> }).collect_view();
        // What the translation did otherwise than the SQL says.
        let notes = (!p.notes.is_empty()).then(|| {
            let items = p.notes.into_iter().map(|n| view! { <li>{n}</li> }).collect_view();
            view! {
                <p>"Notes:"</p>
                <ul class="notes">{items}</ul>
            }
        });
        view! {
            <div class="preview" role="status" aria-labelledby="preview-h">
                <h3 id="preview-h">"Preview: nothing has been created yet"</h3>
                <p>"These statements will run in the central database, in one transaction:"</p>
                <pre><code>{statements}</code></pre>
                <p>"Then sync is enabled on:"</p>
                <ul>{synced}</ul>
                {notes}
            </div>
        }
    });
    let sql_invalid = schema.error.is_some().then_some("true");
    let sql_error = schema.error.map(|e| view! { <p class="error" id="f-sql-error">{e}</p> });
    let sql_described = sql_error.as_ref().map(|_| "f-sql-error f-sql-hint").unwrap_or("f-sql-hint");

    let device_rows = devices.items.into_iter().map(|d| device_row(&base, &csrf, d)).collect::<Vec<_>>();
    let device_list = if device_rows.is_empty() && q.device_cursor.is_none() {
        view! { <Empty text="No device has synced with this database yet."/> }.into_any()
    } else {
        view! {
            <div class="scroll"><table>
                <thead><tr>
                    <th scope="col">"Device (site id)"</th><th scope="col">"Bound to"</th><th scope="col">"Last seen"</th>
                    <th scope="col">"Requests"</th><th scope="col">"Uploaded"</th><th scope="col">"Downloaded"</th>
                    <th scope="col">"Last error"</th><th scope="col">"State"</th>
                </tr></thead>
                <tbody>{device_rows}</tbody>
            </table></div>
        }
        .into_any()
    };

    let state_links = ["all", "pending", "running", "done", "dead", "discarded"]
        .into_iter()
        .map(|s| {
            let current = (q.job_state.as_deref().unwrap_or("all") == s).then_some("page");
            let href = if s == "all" { format!("{base}#jobs-h") } else { format!("{base}?job_state={s}#jobs-h") };
            view! { <a href=href aria-current=current>{s}</a>" " }
        })
        .collect_view();
    let job_rows = jobs.items.into_iter().map(|j| job_row(&base, &csrf, j)).collect::<Vec<_>>();
    let job_list = if job_rows.is_empty() && q.job_cursor.is_none() {
        view! { <Empty text="No jobs here. Each upload from a device becomes a job that applies it."/> }.into_any()
    } else {
        view! {
            <div class="scroll"><table>
                <thead><tr>
                    <th scope="col">"Job"</th><th scope="col">"State"</th><th scope="col">"Device"</th>
                    <th scope="col">"Size"</th><th scope="col">"Applied"</th><th scope="col">"Attempts"</th>
                    <th scope="col">"Error"</th><th scope="col">"Uploaded"</th>
                    <th scope="col"><span class="sr">"Actions"</span></th>
                </tr></thead>
                <tbody>{job_rows}</tbody>
            </table></div>
        }
        .into_any()
    };
    let job_base = match &q.job_state {
        Some(s) if filter.is_some() => format!("{base}?job_state={s}&"),
        _ => format!("{base}?"),
    };
    let title = format!("Database {}", db.name);
    let trail = crumbs(&[("Overview", "/admin".into()), (t.name.as_str(), format!("/admin/tenants/{}", t.id))]);
    let sync_url = state.sync_url(&db.id);
    let connect = crate::connect::panel(&base, &csrf, &sync_url, fresh_key.as_deref(), &device_schema);
    let html = document(view! {
        <Layout title=title admin=Some(admin.clone()) notice=notice(q.notice.as_deref()) crumbs=trail>
            <dl class="pairs">
                <div><dt>"Id"</dt><dd><code>{db.id.to_string()}</code></dd></div>
                <div><dt>"Sync URL"</dt><dd><code id="sync-url">{sync_url}</code></dd></div>
                <div><dt>"Created"</dt><dd>{when(db.created_at)}</dd></div>
                <div><dt>"Schema version"</dt><dd id="schema-version">{db.schema_version}</dd></div>
            </dl>
            {connect}
            <section aria-labelledby="tables-h">
                <h2 id="tables-h">"Tables"</h2>
                {table_list}
            </section>
            <section aria-labelledby="schema-h">
                <h2 id="schema-h">"Provision tables"</h2>
                {preview}
                <form method="post" action=format!("{base}/schema") class="card">
                    <Csrf token=csrf.clone()/>
                    <div class="field">
                        <label for="f-sql">"SQLite CREATE TABLE / CREATE INDEX statements"</label>
                        <textarea id="f-sql" name="sql" rows="8" required=true spellcheck="false"
                            aria-invalid=sql_invalid aria-describedby=sql_described>{schema.sql}</textarea>
                        <p class="hint" id="f-sql-hint">"Every statement runs in one transaction: all of them or none."</p>
                        {sql_error}
                    </div>
                    <div class="field">
                        <label for="f-algos">"Algorithms (optional)"</label>
                        <input id="f-algos" name="algos" value=schema.algos aria-describedby="f-algos-hint"/>
                        <p class="hint" id="f-algos-hint">"As table=algo, comma-separated: cls (default), aws, dws or gos."</p>
                    </div>
                    <div class="field">
                        <label for="f-omit">"Leave out (optional, PostgreSQL)"</label>
                        <input id="f-omit" name="omit" value=schema.omit aria-describedby="f-omit-hint"/>
                        <p class="hint" id="f-omit-hint">"Constructs PostgreSQL cannot express, as a refusal names them \
                            (table.column:check, table.column:default, table.column:collate, table.column:on-conflict), \
                            comma-separated: the tables are created without them."</p>
                    </div>
                    <button type="submit" name="action" value="preview">"Preview"</button>
                    " "
                    <button type="submit" name="action" value="apply">"Create tables"</button>
                </form>
            </section>
            <section aria-labelledby="devices-h">
                <h2 id="devices-h">"Devices"</h2>
                {device_list}
                <Pager base=format!("{base}?") param="device_cursor" next=devices.next_cursor/>
            </section>
            <section aria-labelledby="jobs-h">
                <h2 id="jobs-h">"Jobs"</h2>
                <p class="filter">"Show: "{state_links}</p>
                {job_list}
                <Pager base=job_base param="job_cursor" next=jobs.next_cursor/>
            </section>
            {charts}
        </Layout>
    });
    Ok((status, Html(html)).into_response())
}

fn device_row(base: &str, csrf: &str, d: Device) -> impl IntoView {
    let action = if d.blocked_at.is_some() {
        view! {
            <form method="post" action=format!("{base}/devices/{}/unblock", d.site_id) class="inline">
                <Csrf token=csrf.to_string()/>
                <span>{format!("blocked{}", d.blocked_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())}</span>
                " "
                <button type="submit">"Unblock"</button>
            </form>
        }
        .into_any()
    } else {
        let id = format!("reason-{}", d.site_id);
        view! {
            <form method="post" action=format!("{base}/devices/{}/block", d.site_id) class="inline">
                <Csrf token=csrf.to_string()/>
                <label for=id.clone() class="sr">"Reason for blocking"</label>
                <input id=id name="reason" placeholder="reason (optional)" size="14"/>
                " "
                <button type="submit" class="danger">"Block"</button>
            </form>
        }
        .into_any()
    };
    // A bound site id can be released (docs/protocol.md, "Devices are who they say
    // they are"): its next request binds it again.
    let bound = d.subject.clone().map(|subject| {
        view! {
            <code>{subject}</code>
            " "
            <form method="post" action=format!("{base}/devices/{}/release", d.site_id) class="inline">
                <Csrf token=csrf.to_string()/>
                <button type="submit" aria-label=format!("Release the binding of {}", d.site_id)>"Release"</button>
            </form>
        }
    });
    // What stands wrong with it: an upload that failed (not one an operator discarded),
    // applying downloads failing on the device, rows the database refused.
    let receive = d.receive_error_code.clone().map(|code| {
        let since = d.receive_failing_since.map(when).unwrap_or_default();
        let why = d.receive_error_message.clone().unwrap_or_default();
        view! {
            <p class="receive-failing">
                <span class="badge attention">"receive failing"</span>
                {format!(" since {since}, because {why} ({code})")}
            </p>
        }
    });
    let refused = (d.refused_uploads > 0).then(|| {
        let n = d.refused_uploads;
        view! {
            <span class="badge attention" title="Uploads of this device whose rows the database partly refused; see its jobs">
                {format!("{n} upload{} with refused rows", if n == 1 { "" } else { "s" })}
            </span>
        }
    });
    let nothing = d.last_error.is_none() && receive.is_none() && refused.is_none();
    let problems = view! {
        {d.last_error.clone().map(|e| view! { <p>{e}</p> })}
        {receive}
        {refused}
        {nothing.then_some("-")}
    };
    view! {
        <tr>
            <td><code title=d.site_id.clone()>{d.site_id.get(..12).unwrap_or("").to_string()}</code></td>
            <td>{match bound { Some(b) => b.into_any(), None => "-".into_any() }}</td>
            <td>{when(d.last_seen)}</td>
            <td class="num">{count(d.requests)}</td>
            <td class="num">{format!("{} · {} changes", bytes(d.bytes_in), count(d.changes_in))}</td>
            <td class="num">{format!("{} · {} changes", bytes(d.bytes_out), count(d.changes_out))}</td>
            <td class="wrap">{problems}</td>
            <td>{action}</td>
        </tr>
    }
}

fn job_row(base: &str, csrf: &str, j: Job) -> impl IntoView {
    let actionable = matches!(j.state, JobState::Pending | JobState::Dead);
    let actions = actionable.then(|| {
        view! {
            <form method="post" action=format!("{base}/jobs/{}/retry", j.id) class="inline">
                <Csrf token=csrf.to_string()/>
                <button type="submit" aria-label=format!("Retry job {}", j.id)>"Retry"</button>
            </form>
            <form method="post" action=format!("{base}/jobs/{}/discard", j.id) class="inline">
                <Csrf token=csrf.to_string()/>
                <button type="submit" class="danger" aria-label=format!("Discard job {}", j.id)>"Discard"</button>
            </form>
        }
    });
    // Applied, but not whole: the rows the database refused are on the job's page.
    let refused = (!j.refused.is_empty()).then(|| {
        let n = j.refused.len();
        view! {
            " "
            <span class="badge attention" title="Rows the database refused; they are listed on the job's page">
                {format!("{n} row{} refused", if n == 1 { "" } else { "s" })}
            </span>
        }
    });
    view! {
        <tr>
            <td><a href=format!("{base}/jobs/{}", j.id)>{format!("#{}", j.id)}</a></td>
            <td>{j.state.name()}{refused}</td>
            <td><code>{j.site_id.get(..12).unwrap_or("").to_string()}</code></td>
            <td class="num">{bytes(j.bytes)}</td>
            <td class="num">{j.applied.map_or_else(|| "-".to_string(), count)}</td>
            <td class="num">{j.attempts.to_string()}</td>
            <td><code>{j.error_code.unwrap_or_default()}</code></td>
            <td>{when(j.created_at)}</td>
            <td>{actions}</td>
        </tr>
    }
}

/// `GET /admin/tenants/{tenant}/databases/{db}`.
pub async fn page(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db)): Path<(String, String)>,
    Query(q): Query<DatabaseQuery>,
) -> Result<Response, Problem> {
    let loaded = load(&state, &admin, &t, &db).await?;
    render(&state, &admin, loaded, &q, SchemaState::default(), None, StatusCode::OK).await
}

/// The page with a sync key just created, filled into the connect panel's snippets
/// (`crate::connect`).
pub(crate) async fn render_with_key(
    state: &AppState,
    admin: &Admin,
    loaded: (Tenant, Database),
    key: String,
    status: StatusCode,
) -> Result<Response, Problem> {
    render(state, admin, loaded, &DatabaseQuery::default(), SchemaState::default(), Some(key), status).await
}

/// The schema form.
#[derive(Deserialize)]
pub struct SchemaForm {
    #[serde(default)]
    sql: String,
    #[serde(default)]
    algos: String,
    #[serde(default)]
    omit: String,
    #[serde(default)]
    action: String,
}

fn parse_algos(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (t, a) = part.split_once('=').ok_or_else(|| format!("'{part}' is not table=algo"))?;
        let a = a.trim().to_ascii_lowercase();
        if !matches!(a.as_str(), "cls" | "aws" | "dws" | "gos") {
            return Err(format!("unknown algorithm '{a}' for table '{}' (cls, aws, dws or gos)", t.trim()));
        }
        out.insert(t.trim().to_string(), a);
    }
    Ok(out)
}

/// `POST /admin/tenants/{tenant}/databases/{db}/schema`: preview (a dry run) or apply.
pub async fn schema(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db)): Path<(String, String)>,
    Form(f): Form<SchemaForm>,
) -> Result<Response, Problem> {
    let loaded = load(&state, &admin, &t, &db).await?;
    let dry_run = f.action != "apply";
    let omit = cloudsync_service::backends::parse_omissions(f.omit.split(',').map(str::trim).filter(|o| !o.is_empty()));
    let outcome = match parse_algos(&f.algos).and_then(|algos| Ok((algos, omit?))) {
        Ok((algos, omit)) => {
            let req = SchemaRequest { sql: f.sql.clone(), algos, flags: BTreeMap::new(), omit, dry_run };
            match cloudsync_service::ops::provision(&state.control, &state.backends, &loaded.1, req)
                .await
                .map_err(ApiError::from)
            {
                Ok(p) if dry_run => Ok(p),
                Ok(_) => {
                    let to =
                        format!("/admin/tenants/{}/databases/{}?notice=tables-provisioned", loaded.0.id, loaded.1.id);
                    return Ok(Redirect::to(&to).into_response());
                }
                Err(e) if is_input_api_error(&e) => Err(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(msg) => Err(msg),
    };
    let (schema, status) = match outcome {
        Ok(p) => {
            (SchemaState { sql: f.sql, algos: f.algos, omit: f.omit, preview: Some(p), error: None }, StatusCode::OK)
        }
        Err(e) => (
            SchemaState { sql: f.sql, algos: f.algos, omit: f.omit, preview: None, error: Some(e) },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    };
    render(&state, &admin, loaded, &DatabaseQuery::default(), schema, None, status).await
}

/// The block form.
#[derive(Deserialize)]
pub struct BlockForm {
    #[serde(default)]
    reason: String,
}

async fn set_blocked(
    state: &AppState,
    admin: &Admin,
    (t, db, site): (String, String, String),
    reason: Option<String>,
) -> Result<Response, Problem> {
    let (t, db) = load(state, admin, &t, &db).await?;
    let blocking = reason.is_some();
    let reason = reason.map(|r| r.trim().chars().take(200).collect::<String>()).filter(|r| !r.is_empty());
    let site = SiteHex::parse(&site)?;
    if blocking {
        state
            .control
            .set_blocked(&db.id, &site, Some(reason.as_deref().unwrap_or("blocked from the dashboard")))
            .await?;
    } else {
        state.control.set_blocked(&db.id, &site, None).await?;
    }
    let code = if blocking { "device-blocked" } else { "device-unblocked" };
    Ok(Redirect::to(&format!("/admin/tenants/{}/databases/{}?notice={code}#devices-h", t.id, db.id)).into_response())
}

/// `POST …/devices/{site}/block`.
pub async fn block(
    State(state): State<AppState>,
    admin: Admin,
    Path(p): Path<(String, String, String)>,
    Form(f): Form<BlockForm>,
) -> Result<Response, Problem> {
    set_blocked(&state, &admin, p, Some(f.reason)).await
}

/// `POST …/devices/{site}/unblock`.
pub async fn unblock(
    State(state): State<AppState>,
    admin: Admin,
    Path(p): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    set_blocked(&state, &admin, p, None).await
}

/// `POST …/devices/{site}/release`.
pub async fn release(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db, site)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    let (t, db) = load(&state, &admin, &t, &db).await?;
    state.control.release_device(&db.id, &SiteHex::parse(&site)?).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{}/databases/{}?notice=device-released#devices-h", t.id, db.id))
        .into_response())
}

/// `POST …/jobs/{job}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db, job)): Path<(String, String, i64)>,
) -> Result<Response, Problem> {
    let (t, db) = load(&state, &admin, &t, &db).await?;
    state.control.retry_job(&db.id, job).await?;
    state.wake.notify_one();
    Ok(Redirect::to(&format!("/admin/tenants/{}/databases/{}?notice=job-retried#jobs-h", t.id, db.id)).into_response())
}

/// `POST …/jobs/{job}/discard`.
pub async fn discard(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db, job)): Path<(String, String, i64)>,
) -> Result<Response, Problem> {
    let (t, db) = load(&state, &admin, &t, &db).await?;
    state.control.discard_job(&db.id, job).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{}/databases/{}?notice=job-discarded#jobs-h", t.id, db.id))
        .into_response())
}

/// `GET …/jobs/{job}`: everything about one job, with its full error.
pub async fn job(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db, job)): Path<(String, String, i64)>,
) -> Result<Response, Problem> {
    let (t, db) = load(&state, &admin, &t, &db).await?;
    let j = state.control.job(&db.id, job).await?;
    let base = format!("/admin/tenants/{}/databases/{}", t.id, db.id);
    let trail = crumbs(&[
        ("Overview", "/admin".into()),
        (t.name.as_str(), format!("/admin/tenants/{}", t.id)),
        (db.name.as_str(), base.clone()),
    ]);
    let retryable = match j.retryable {
        Some(true) => "yes: the service retries it with backoff",
        Some(false) => "no: the payload cannot be applied as it is",
        None => "-",
    };
    let error = j.error_message.clone().map(|m| {
        view! {
            <section aria-labelledby="err-h">
                <h2 id="err-h">"Error"</h2>
                <p><code>{j.error_code.clone().unwrap_or_default()}</code></p>
                <pre class="wrap">{m}</pre>
            </section>
        }
    });
    let refused = (!j.refused.is_empty()).then(|| {
        let rows = j
            .refused
            .iter()
            .map(|r| {
                view! {
                    <tr>
                        <td>{r.table.clone()}</td>
                        <td><code>{r.key.clone()}</code></td>
                        <td><code>{r.sqlstate.to_string()}</code></td>
                        <td class="wrap">{r.message.clone()}</td>
                    </tr>
                }
            })
            .collect::<Vec<_>>();
        view! {
            <section aria-labelledby="refused-h">
                <h2 id="refused-h">"Rows refused by the database"</h2>
                <p>"These rows were left out (the rest of the upload was applied); the device sees them as final."</p>
                <table>
                    <thead><tr><th scope="col">"Table"</th><th scope="col">"Key"</th><th scope="col">"SQLSTATE"</th><th scope="col">"Reason"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </section>
        }
    });
    let html = document(view! {
        <Layout title=format!("Job #{}", j.id) admin=Some(admin.clone()) crumbs=trail>
            <dl class="pairs">
                <div><dt>"State"</dt><dd>{j.state.name()}</dd></div>
                <div><dt>"Device"</dt><dd><code>{j.site_id.clone()}</code></dd></div>
                <div><dt>"Payload"</dt><dd>{format!("{} at {}", bytes(j.bytes), j.object_key)}</dd></div>
                <div><dt>"Device positions"</dt><dd>{format!("{} → {}", j.from_cursor, j.to_cursor)}</dd></div>
                <div><dt>"Changes applied"</dt><dd>{j.applied.map_or_else(|| "-".to_string(), count)}</dd></div>
                <div><dt>"Attempts"</dt><dd>{j.attempts.to_string()}</dd></div>
                <div><dt>"Retryable"</dt><dd>{retryable}</dd></div>
                <div><dt>"Uploaded"</dt><dd>{when(j.created_at)}</dd></div>
                <div><dt>"Last change"</dt><dd>{when_opt(Some(j.updated_at))}</dd></div>
            </dl>
            {error}
            {refused}
            <p><a href=format!("{base}#jobs-h")>"← All jobs of this database"</a></p>
        </Layout>
    });
    Ok(Html(html).into_response())
}
