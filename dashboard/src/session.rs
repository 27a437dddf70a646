//! Signing in and out, the session cookie and CSRF protection.
//!
//! A session is a random id in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/admin` (`Secure` when the public URL is HTTPS), resolved against the control-plane
//! store on every request ([`guard`]), so any node serves any signed-in browser. Every
//! POST must carry the session's CSRF token in its `csrf` field; [`guard`] checks it
//! before any handler runs, so no form can forget to. The sign-in form, which has no
//! session yet, is protected by a double-submit token (a cookie and a field that must
//! match).

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cloudsync_api::error::ApiError;
use cloudsync_api::lockout::ClientAddress;
use cloudsync_api::AppState;
use cloudsync_service::control::keys::{KeyCheck, Scope, PREFIX};
use cloudsync_service::control::sessions::{random_token, Principal, LIFETIME};
use leptos::prelude::*;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::admin::{cookie, Admin};
use crate::ui::{document, Layout, TextField};
use crate::Problem;

const SESSION_COOKIE: &str = "cloudsync_session";
const LOGIN_COOKIE: &str = "cloudsync_login";
/// Largest form body accepted.
pub const FORM_LIMIT: usize = 256 << 10;

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A local path to return to after signing in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/admin") && !n.contains("//") && !n.contains('\\') => n.to_string(),
        _ => "/admin".into(),
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    let message = message.to_string();
    let page = document(view! {
        <Layout title="Not accepted".to_string() admin=None>
            <p class="error" role="alert">{message}</p>
            <p><a href="/admin/login">"Sign in"</a></p>
        </Layout>
    });
    (status, axum::response::Html(page)).into_response()
}

/// Resolves the session of every dashboard request but the sign-in page and checks the
/// CSRF token of every POST; handlers find the [`Admin`] in the request.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(id) = cookie(req.headers(), SESSION_COOKIE) else {
        return signed_out(&req);
    };
    let session = match state.control.session(&id, state.admin_token.expose_secret()).await {
        Ok(Some(s)) => s,
        Ok(None) => return signed_out(&req),
        Err(e) => return Problem::from(ApiError::from(e)).into_response(),
    };
    let admin = Admin::new(session, id);
    if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            return refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is larger than the service accepts.");
        };
        let token = form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        if !token.is_some_and(|t| same(&t, &admin.csrf)) {
            tracing::warn!(path = %parts.uri.path(), "dashboard form without a valid CSRF token refused");
            return refused(
                StatusCode::FORBIDDEN,
                "This form was refused: its security token is missing or stale. Reload the page and try again.",
            );
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(admin);
    next.run(req).await
}

fn signed_out(req: &Request) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let next = req.uri().path_and_query().map_or("/admin", |p| p.as_str());
        let target =
            format!("/admin/login?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
        Redirect::to(&target).into_response()
    } else {
        refused(StatusCode::UNAUTHORIZED, "You are signed out (or your session ended). Sign in again.")
    }
}

/// Query of the sign-in page.
#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

fn login_page(state: &AppState, next: &str, error: Option<String>, status: StatusCode) -> Response {
    let token = random_token();
    let cookie_value = token.clone();
    let next = next.to_string();
    let page = document(view! {
        <Layout title="Sign in".to_string() admin=None>
            <form method="post" action="/admin/login" class="card narrow">
                <input type="hidden" name="csrf" value=token.clone()/>
                <input type="hidden" name="next" value=next/>
                <TextField
                    name="token"
                    label="Admin token or tenant admin key"
                    kind=Some("password")
                    required=true
                    error=error
                    hint=Some("The operator's token is printed by `cloudsync serve`; a tenant signs in with an API key that has the admin scope.")
                />
                <button type="submit">"Sign in"</button>
            </form>
        </Layout>
    });
    let mut resp = (status, axum::response::Html(page)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(state, LOGIN_COOKIE, &cookie_value, 900));
    resp
}

/// `GET /admin/login`.
pub async fn login_form(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    login_page(&state, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

/// `POST /admin/login`.
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    form: Form<LoginForm>,
) -> Response {
    let Form(f) = form;
    let next = safe_next(f.next.as_deref());
    // An address that guessed too often is refused before its token is looked at.
    if let Err(e) = cloudsync_api::lockout::check(&state, client) {
        return Problem::from(e).into_response();
    }
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same(&c, &f.csrf)) {
        return refused(
            StatusCode::FORBIDDEN,
            "This sign-in form was refused: its security token is missing or stale. Reload the page and try again.",
        );
    }
    let token = f.token.trim();
    let principal = if !token.is_empty() && same(token, state.admin_token.expose_secret()) {
        Principal::Operator
    } else if token.starts_with(PREFIX) {
        match state.control.authenticate_key(token).await {
            Ok(KeyCheck::Valid(key)) if key.allows(Scope::Admin) => Principal::Key(key),
            Ok(KeyCheck::Valid(_)) => {
                let msg = "This key lacks the admin scope; sign in with an admin key.".to_string();
                return login_page(&state, &next, Some(msg), StatusCode::FORBIDDEN);
            }
            Ok(KeyCheck::TenantSuspended) => {
                let msg = "This key's tenant is suspended.".to_string();
                return login_page(&state, &next, Some(msg), StatusCode::FORBIDDEN);
            }
            Ok(KeyCheck::Invalid) => return invalid(&state, &next, client),
            Err(e) => return Problem::from(ApiError::from(e)).into_response(),
        }
    } else {
        return invalid(&state, &next, client);
    };
    let (id, _) = match state.control.create_session(principal, state.admin_token.expose_secret()).await {
        Ok(s) => s,
        Err(e) => return Problem::from(ApiError::from(e)).into_response(),
    };
    tracing::info!("dashboard sign-in");
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(&state, SESSION_COOKIE, &id, LIFETIME.as_secs()));
    h.append(header::SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", 0));
    resp
}

fn invalid(state: &AppState, next: &str, client: Option<std::net::IpAddr>) -> Response {
    tracing::warn!("dashboard sign-in refused");
    cloudsync_api::lockout::failed(state, client);
    let msg = "Invalid, expired or revoked token.".to_string();
    login_page(state, next, Some(msg), StatusCode::UNAUTHORIZED)
}

/// `POST /admin/logout`.
pub async fn logout(State(state): State<AppState>, admin: Admin) -> Result<Response, Problem> {
    state.control.delete_session(&admin.cookie).await.map_err(ApiError::from)?;
    let mut resp = Redirect::to("/admin/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", 0));
    Ok(resp)
}
