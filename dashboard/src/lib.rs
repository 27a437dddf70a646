//! The CloudSync admin dashboard: pages rendered on the server with Leptos, mounted by
//! the service at `/admin`.
//!
//! Every page is complete HTML without JavaScript: lists, forms that post as plain
//! HTML forms and answer with a redirect (or the page again, with validation messages
//! next to the fields), and charts drawn as SVG on the server. Pages call the same
//! operations as the REST API, under the same authority rules ([`Caller`]): the
//! operator sees everything, a tenant administrator (signed in with an admin key) only
//! their tenant.
//!
//! [`session`] holds sign-in, the session cookie and CSRF checks; [`ui`] the layout,
//! fields and charts; [`pages`] the overview and tenant list, [`tenant`] and
//! [`database`] their pages.
//!
//! [`Caller`]: cloudsync_api::auth::Caller

#![recursion_limit = "512"]

pub mod admin;
pub mod connect;
pub mod database;
pub mod pages;
pub mod session;
pub mod tenant;
pub mod ui;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cloudsync_api::error::ApiError;
use cloudsync_api::AppState;
use leptos::prelude::*;

use crate::ui::{document, Layout};

/// The dashboard's routes, to merge into the service's router.
pub fn router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/logout", post(session::logout))
        .route("/admin/tenants", get(pages::tenants).post(pages::create_tenant))
        .route("/admin/tenants/{tenant}", get(tenant::page))
        .route("/admin/tenants/{tenant}/databases", post(tenant::create_database))
        .route("/admin/tenants/{tenant}/keys", post(tenant::create_key))
        .route("/admin/tenants/{tenant}/keys/{key}/revoke", post(tenant::revoke_key))
        .route("/admin/tenants/{tenant}/identity", post(tenant::set_identity))
        .route("/admin/tenants/{tenant}/quotas", post(tenant::set_quotas))
        .route("/admin/tenants/{tenant}/databases/{db}", get(database::page))
        .route("/admin/tenants/{tenant}/databases/{db}/schema", post(database::schema))
        .route("/admin/tenants/{tenant}/databases/{db}/connect", post(connect::create_key))
        .route("/admin/tenants/{tenant}/databases/{db}/devices/{site}/block", post(database::block))
        .route("/admin/tenants/{tenant}/databases/{db}/devices/{site}/unblock", post(database::unblock))
        .route("/admin/tenants/{tenant}/databases/{db}/devices/{site}/release", post(database::release))
        .route("/admin/tenants/{tenant}/databases/{db}/jobs/{job}", get(database::job))
        .route("/admin/tenants/{tenant}/databases/{db}/jobs/{job}/retry", post(database::retry))
        .route("/admin/tenants/{tenant}/databases/{db}/jobs/{job}/discard", post(database::discard))
        .route_layer(middleware::from_fn_with_state(state, session::guard));
    Router::new()
        .route("/admin/login", get(session::login_form).post(session::login))
        .route("/admin/static/app.css", get(css))
        .merge(guarded)
        .layer(axum::extract::DefaultBodyLimit::max(session::FORM_LIMIT))
        .layer(middleware::from_fn(headers))
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], STYLE)
}

/// Headers of every dashboard response: no caching of pages, no framing, no scripts.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// An error answered as a page: the API's status and message (server errors stay
/// opaque and are logged, as in the API).
#[derive(Debug)]
pub struct Problem(pub ApiError);

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        Problem(e)
    }
}

impl From<cloudsync_service::Error> for Problem {
    fn from(e: cloudsync_service::Error) -> Self {
        Problem(e.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let status = self.0.status_and_code().0;
        // The API's response carries the logging and the store-failure mark.
        let api = self.0.into_response();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            s if s.is_server_error() => "Something went wrong",
            _ => "Not accepted",
        };
        let page = document(view! {
            <Layout title=title.to_string() admin=None>
                <p class="error" role="alert">{message}</p>
                <p><a href="/admin">"Back to the overview"</a></p>
            </Layout>
        });
        let mut resp = (status, Html(page)).into_response();
        *resp.extensions_mut() = api.extensions().clone();
        if let Some(wait) = api.headers().get(axum::http::header::RETRY_AFTER) {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, wait.clone());
        }
        resp
    }
}

/// A message shown after a successful form, by the code in `?notice=`.
pub fn notice(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "tenant-created" => "Tenant created.",
        "database-created" => "Database created.",
        "key-revoked" => "Key revoked.",
        "identity-saved" => "Identity settings saved.",
        "quotas-saved" => "Quotas saved.",
        "tables-provisioned" => "Tables created and synced.",
        "device-blocked" => "Device blocked.",
        "device-unblocked" => "Device unblocked.",
        "device-released" => "Device released: its site id is bound to whoever syncs with it next.",
        "job-retried" => "Job queued again.",
        "job-discarded" => "Job discarded.",
        _ => return None,
    };
    Some(text.to_string())
}

const STYLE: &str = include_str!("../assets/app.css");
