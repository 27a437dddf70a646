//! The overview and the tenant list.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cloudsync_api::AppState;
use cloudsync_service::control::overview::{FailedJob, Scope};
use cloudsync_service::ids::now_ms;
use cloudsync_service::page::PageRequest;
use leptos::prelude::*;
use serde::Deserialize;

use crate::admin::Admin;
use crate::ui::{
    ago, count, crumbs, document, usage_series, when, BarChart, Csrf, Empty, Layout, Pager, TextField, Unit,
};
use crate::{notice, Problem};

/// Items per page of every list.
pub const PAGE: u32 = 20;

/// Query of the overview and the usage charts.
#[derive(Deserialize, Default)]
pub struct RangeQuery {
    hours: Option<i64>,
    notice: Option<String>,
}

impl RangeQuery {
    /// The chart range in hours: 24 (default) or 168.
    pub fn hours(&self) -> i64 {
        if self.hours == Some(168) {
            168
        } else {
            24
        }
    }
}

/// Two charts of hourly usage (changes and bytes, each way) with a range switch.
pub async fn usage_charts(state: &AppState, scope: Scope<'_>, hours: i64, base: &str) -> Result<AnyView, Problem> {
    let to = now_ms();
    let series = state.control.usage_series(scope, to - hours * 3_600_000 + 1, to + 1).await?;
    let starts: Vec<i64> = series.iter().map(|h| h.hour).collect();
    let changes = usage_series(&series, ("changes in", |h| h.changes_in), ("changes out", |h| h.changes_out));
    let traffic = usage_series(&series, ("bytes in", |h| h.bytes_in), ("bytes out", |h| h.bytes_out));
    let requests: i64 = series.iter().map(|h| h.requests).sum();
    let range = |h: i64, text: &'static str| {
        let current = (h == hours).then_some("page");
        view! { <a href=format!("{base}?hours={h}") aria-current=current>{text}</a> }
    };
    Ok(view! {
        <section aria-labelledby="usage-h">
            <h2 id="usage-h">"Sync volume and traffic"</h2>
            <p class="range">"Range: " {range(24, "last 24 hours")} " · " {range(168, "last 7 days")}
                " — " {count(requests)} " sync requests"</p>
            <div class="charts">
                <BarChart title="Changes" unit=Unit::Count hours=starts.clone() series=changes/>
                <BarChart title="Traffic" unit=Unit::Bytes hours=starts series=traffic/>
            </div>
        </section>
    }
    .into_any())
}

/// A table of failed jobs.
pub fn failures_table(failures: Vec<FailedJob>) -> AnyView {
    if failures.is_empty() {
        return view! { <Empty text="No failed jobs. Uploads that fail to apply show up here."/> }.into_any();
    }
    let rows = failures
        .into_iter()
        .map(|f| {
            let j = f.job;
            let href = format!("/admin/tenants/{}/databases/{}/jobs/{}", f.tenant_id, j.database_id, j.id);
            view! {
                <tr>
                    <td><a href=href>{format!("#{}", j.id)}</a></td>
                    <td>{j.state.name()}</td>
                    <td><code>{j.site_id.get(..8).unwrap_or("").to_string()}</code></td>
                    <td><code>{j.error_code.unwrap_or_default()}</code></td>
                    <td class="wrap">{j.error_message.unwrap_or_default()}</td>
                    <td>{when(j.updated_at)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="scroll">
            <table>
                <thead><tr>
                    <th scope="col">"Job"</th><th scope="col">"State"</th><th scope="col">"Device"</th>
                    <th scope="col">"Code"</th><th scope="col">"Error"</th><th scope="col">"Failed"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// `GET /admin`.
pub async fn overview(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<RangeQuery>,
) -> Result<Response, Problem> {
    let tenant = admin.tenant();
    let scope = Scope { tenant: tenant.as_ref(), database: None };
    let o = state.control.overview(scope).await?;
    let failures = state.control.recent_failures(scope, 10).await?;
    let charts = usage_charts(&state, scope, q.hours(), "/admin").await?;
    let queue = &o.queue;
    let oldest = queue.oldest_waiting_ms.map_or_else(|| "none waiting".to_string(), ago);
    let health = if queue.dead > 0 || queue.retrying > 0 { "attention" } else { "ok" };
    let stats = [
        ("Tenants", count(o.tenants)),
        ("Databases", count(o.databases)),
        ("Devices", count(o.devices)),
        ("Active in the last hour", count(o.active_hour)),
        ("Active in the last day", count(o.active_day)),
        ("Failing to receive", count(o.receive_failing)),
    ];
    let jobs = [
        ("Pending", count(queue.pending - queue.retrying)),
        ("Retrying", count(queue.retrying)),
        ("Running", count(queue.running)),
        ("Dead", count(queue.dead)),
        ("Applied", count(queue.done)),
        ("Applied with rows refused", count(queue.refused)),
        ("Oldest waiting", oldest),
    ];
    let stat_list = |items: [(&'static str, String); 6]| {
        items.into_iter().map(|(k, v)| view! { <div><dt>{k}</dt><dd>{v}</dd></div> }).collect_view()
    };
    let job_list = jobs.into_iter().map(|(k, v)| view! { <div><dt>{k}</dt><dd>{v}</dd></div> }).collect_view();
    let title = match &tenant {
        Some(_) => "Overview of your tenant".to_string(),
        None => "Overview".to_string(),
    };
    let page = document(view! {
        <Layout title=title admin=Some(admin.clone()) notice=notice(q.notice.as_deref())>
            <section aria-labelledby="counts-h">
                <h2 id="counts-h">"At a glance"</h2>
                <dl class="stats">{stat_list(stats)}</dl>
            </section>
            <section aria-labelledby="queue-h">
                <h2 id="queue-h">"Job queue " <span class=format!("badge {health}")>{health}</span></h2>
                <dl class="stats">{job_list}</dl>
            </section>
            {charts}
            <section aria-labelledby="fail-h">
                <h2 id="fail-h">"Recent failures"</h2>
                {failures_table(failures)}
            </section>
        </Layout>
    });
    Ok(Html(page).into_response())
}

/// Query of the tenant list.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    notice: Option<String>,
}

/// The tenant-creation form.
#[derive(Deserialize)]
pub struct NewTenant {
    #[serde(default)]
    name: String,
}

async fn tenants_page(
    state: &AppState,
    admin: &Admin,
    q: &ListQuery,
    form: Option<(String, String)>,
    status: StatusCode,
) -> Result<Response, Problem> {
    admin.caller.operator()?;
    let page = state.control.tenants(&PageRequest::new(Some(PAGE), q.cursor.as_deref())?).await?;
    let rows = page
        .items
        .into_iter()
        .map(|t| {
            view! {
                <tr>
                    <td><a href=format!("/admin/tenants/{}", t.id)>{t.name}</a></td>
                    <td><code>{t.id.to_string()}</code></td>
                    <td>{if t.suspended { "suspended" } else { "active" }}</td>
                    <td>{when(t.created_at)}</td>
                </tr>
            }
        })
        .collect::<Vec<_>>();
    let list = if rows.is_empty() && q.cursor.is_none() {
        view! { <Empty text="No tenants yet. Create the first one below."/> }.into_any()
    } else {
        view! {
            <div class="scroll"><table>
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Id"</th><th scope="col">"State"</th><th scope="col">"Created"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        }
        .into_any()
    };
    let (value, error) = form.map_or((String::new(), None), |(v, e)| (v, Some(e)));
    let csrf = admin.csrf.clone();
    let html = document(view! {
        <Layout title="Tenants".to_string() admin=Some(admin.clone()) notice=notice(q.notice.as_deref())
            crumbs=crumbs(&[("Overview", "/admin".into())])>
            <section aria-labelledby="list-h">
                <h2 id="list-h">"All tenants"</h2>
                {list}
                <Pager base="/admin/tenants?".into() param="cursor" next=page.next_cursor/>
            </section>
            <section aria-labelledby="new-h">
                <h2 id="new-h">"Create a tenant"</h2>
                <form method="post" action="/admin/tenants" class="card">
                    <Csrf token=csrf/>
                    <TextField name="name" label="Name" value=value error=error required=true/>
                    <button type="submit">"Create tenant"</button>
                </form>
            </section>
        </Layout>
    });
    Ok((status, Html(html)).into_response())
}

/// `GET /admin/tenants`.
pub async fn tenants(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Response, Problem> {
    tenants_page(&state, &admin, &q, None, StatusCode::OK).await
}

/// `POST /admin/tenants`.
pub async fn create_tenant(
    State(state): State<AppState>,
    admin: Admin,
    Form(f): Form<NewTenant>,
) -> Result<Response, Problem> {
    admin.caller.operator()?;
    match state.control.create_tenant(&f.name).await {
        Ok(t) => {
            tracing::info!(tenant = %t.id, "tenant created from the dashboard");
            Ok(Redirect::to(&format!("/admin/tenants/{}?notice=tenant-created", t.id)).into_response())
        }
        Err(e) if is_input_error(&e) => {
            tenants_page(
                &state,
                &admin,
                &ListQuery::default(),
                Some((f.name, e.to_string())),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether an error is about what the user typed (shown next to the field).
pub fn is_input_error(e: &cloudsync_service::Error) -> bool {
    matches!(e, cloudsync_service::Error::Invalid(_) | cloudsync_service::Error::Conflict(_))
}

/// The same for errors already mapped to the API's.
pub fn is_input_api_error(e: &cloudsync_api::error::ApiError) -> bool {
    use cloudsync_api::error::ApiError;
    matches!(
        e,
        ApiError::BadRequest(_) | ApiError::Rejected { .. } | ApiError::Conflict(_) | ApiError::OverQuota { .. }
    )
}
