//! Who is calling: the operator (admin token) or a tenant's API key.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cloudsync_tenants::ids::TenantId;
use cloudsync_tenants::keys::Scope;
use cloudsync_tenants::store::{ApiKey, Database};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The operator, with the admin token.
    Operator,
    /// A tenant's API key.
    Key(ApiKey),
}

impl Caller {
    /// Requires the operator.
    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key(_) => Err(ApiError::Forbidden("this operation needs the admin token".into())),
        }
    }

    /// Requires the operator or a key of `tenant` with `scope`. Another tenant's key
    /// gets `404`, so tenants cannot probe each other's ids.
    pub fn tenant(&self, tenant: &TenantId, scope: Scope) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key(k) if k.tenant_id != *tenant => Err(ApiError::NotFound("tenant".into())),
            Caller::Key(k) if !k.allows(scope) => {
                Err(ApiError::Forbidden(format!("this API key lacks the '{}' scope", scope.name())))
            }
            Caller::Key(_) => Ok(()),
        }
    }

    /// Requires access to `db` with `scope` (see [`Caller::tenant`]).
    pub fn database(&self, db: &Database, scope: Scope) -> Result<(), ApiError> {
        self.tenant(&db.tenant_id, scope).map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound("database".into()),
            other => other,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header (expected: Bearer <token>)".into()))?;
        let value = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("malformed Authorization header (expected: Bearer <token>)".into())
            })?;
        if bool::from(value.as_bytes().ct_eq(state.admin_token.as_bytes())) {
            return Ok(Caller::Operator);
        }
        match state.control.authenticate_key(value).await? {
            Some(key) => Ok(Caller::Key(key)),
            None => Err(ApiError::Unauthorized("invalid, expired or revoked credentials".into())),
        }
    }
}
