//! Who is signed in: the [`Admin`] every dashboard page receives from the session
//! guard (`session::guard`), and reading a cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use cloudsync_api::auth::Caller;
use cloudsync_api::error::ApiError;
use cloudsync_api::AppState;
use cloudsync_service::control::sessions::{Principal, Session};
use cloudsync_service::ids::TenantId;

use crate::Problem;

/// The signed-in user of a request.
#[derive(Clone, Debug)]
pub struct Admin {
    /// Their authority, as the API sees it.
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
    /// Who they are, for the header.
    pub label: String,
    pub(crate) cookie: String,
}

impl Admin {
    pub(crate) fn new(session: Session, cookie: String) -> Admin {
        let (caller, label) = match session.principal {
            Principal::Operator => (Caller::Operator, "operator".to_string()),
            Principal::Key(k) => {
                let label = format!("key {}", k.name);
                (Caller::Key(k), label)
            }
        };
        Admin { caller, csrf: session.csrf, label, cookie }
    }

    /// Whether this is the operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.caller, Caller::Operator)
    }

    /// The tenant of a tenant administrator.
    pub fn tenant(&self) -> Option<TenantId> {
        match &self.caller {
            Caller::Key(k) => Some(k.tenant_id.clone()),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Admin>().cloned().ok_or_else(|| {
            Problem::from(ApiError::Internal("a dashboard page was routed without the session guard".into()))
        })
    }
}

/// A cookie's value from a request's headers (at most 128 bytes, not empty).
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}
