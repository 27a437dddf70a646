//! Who is calling: the operator (admin token), a tenant's API key, or a device with a
//! JWT from its tenant's identity provider.
//!
//! A JWT is verified against the settings of the tenant the request addresses (the
//! `{tenant}` path parameter, or the owner of the `{db}` one), so a token issued for one
//! tenant is meaningless at another. Every credential but the operator's is rate
//! limited, per credential and per tenant (`quotas`).

use std::net::IpAddr;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use cloudsync_service::actor::Actor;
use cloudsync_service::control::identity::Subject;
use cloudsync_service::control::keys::{ApiKey, KeyCheck, Scope, PREFIX};
use cloudsync_service::ids::{DatabaseId, TenantId};
use cloudsync_service::model::Database;
use secrecy::ExposeSecret;
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
    /// A device with a verified JWT (sync scope only).
    Device(Subject),
}

impl Caller {
    /// Requires the operator.
    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            _ => Err(ApiError::Forbidden("this operation needs the admin token".into())),
        }
    }

    /// Requires the operator or a credential of `tenant` with `scope`. Another
    /// tenant's credential gets `404`, so tenants cannot probe each other's ids.
    pub fn tenant(&self, tenant: &TenantId, scope: Scope) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key(k) if k.tenant_id != *tenant => Err(ApiError::NotFound("tenant".into())),
            Caller::Key(k) if !k.allows(scope) => {
                Err(ApiError::Forbidden(format!("this API key lacks the '{}' scope", scope.name())))
            }
            Caller::Key(_) => Ok(()),
            Caller::Device(s) if s.tenant != *tenant => Err(ApiError::NotFound("tenant".into())),
            Caller::Device(_) if scope != Scope::Sync => {
                Err(ApiError::Forbidden(format!("a device token does not grant the '{}' scope", scope.name())))
            }
            Caller::Device(_) => Ok(()),
        }
    }

    /// Requires access to `db` with `scope` (see [`Caller::tenant`]).
    pub fn database(&self, db: &Database, scope: Scope) -> Result<(), ApiError> {
        self.tenant(&db.tenant_id, scope).map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound("database".into()),
            other => other,
        })
    }

    /// The user id of a device's token.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Device(s) => Some(&s.user_id),
            _ => None,
        }
    }

    /// The identity a device's changes are applied and its downloads read with
    /// (`docs/rls.md`): a JWT's role claim (which the database must allow) or the
    /// database's default role, with the token's claims; for an API key the
    /// database's API-key role.
    pub fn actor(&self, db: &Database) -> Result<Actor, ApiError> {
        let roles = &db.settings.roles;
        match self {
            Caller::Device(s) => Ok(Actor {
                role: roles.resolve(s.role.as_deref())?,
                user_id: Some(s.user_id.clone()),
                claims: s.claims.clone(),
            }),
            Caller::Key(k) => Ok(Actor {
                role: roles.api_key.clone(),
                user_id: None,
                claims: serde_json::json!({ "role": roles.api_key, "key_id": k.id }),
            }),
            Caller::Operator => Err(ApiError::Forbidden("sync endpoints are for devices (a JWT or an API key)".into())),
        }
    }

    /// The subject a device's site id is bound to: the JWT's user, or the API key
    /// (none for the operator, who does not sync).
    pub fn subject(&self) -> Option<String> {
        use cloudsync_service::control::bindings::{subject_of_key, subject_of_user};
        match self {
            Caller::Operator => None,
            Caller::Key(k) => Some(subject_of_key(k.id.as_str())),
            Caller::Device(s) => Some(subject_of_user(&s.user_id)),
        }
    }

    /// The tenant of this credential and its rate-limit bucket (the operator is not
    /// limited).
    fn bucket(&self) -> Option<(&TenantId, String)> {
        match self {
            Caller::Operator => None,
            Caller::Key(k) => Some((&k.tenant_id, format!("key:{}", k.id))),
            Caller::Device(s) => Some((&s.tenant, format!("jwt:{}:{}", s.tenant, s.user_id))),
        }
    }
}

/// The bearer token of a request.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header (expected: Bearer <token>)".into()))?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("malformed Authorization header (expected: Bearer <token>)".into()))
}

/// The tenant a request addresses, from its path.
async fn addressed_tenant(parts: &mut Parts, state: &AppState) -> Result<Option<TenantId>, ApiError> {
    let Ok(params) = RawPathParams::from_request_parts(parts, state).await else { return Ok(None) };
    for (name, value) in &params {
        match name {
            "tenant" => return Ok(TenantId::parse(value).ok()),
            "db" => {
                let Ok(id) = DatabaseId::parse(value) else { return Ok(None) };
                return match state.control.database(&id).await {
                    Ok(db) => Ok(Some(db.tenant_id)),
                    Err(cloudsync_service::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                };
            }
            _ => {}
        }
    }
    Ok(None)
}

async fn authenticate(parts: &mut Parts, state: &AppState, client: Option<IpAddr>) -> Result<Caller, ApiError> {
    let token = bearer(parts)?.to_string();
    if bool::from(token.as_bytes().ct_eq(state.admin_token.expose_secret().as_bytes())) {
        return Ok(Caller::Operator);
    }
    // A secret nobody issued (the admin token, an API key, or neither's shape) is a
    // guess, counted against the client's address; a JWT that fails verification is
    // not (guessing signatures is hopeless, and devices behind one address holding
    // expired tokens must not lock each other out).
    let guessed = || {
        crate::lockout::failed(state, client);
        ApiError::Unauthorized("invalid, expired or revoked credentials".into())
    };
    if token.starts_with(PREFIX) {
        return match state.control.authenticate_key(&token).await? {
            KeyCheck::Valid(key) => Ok(Caller::Key(key)),
            KeyCheck::TenantSuspended => Err(ApiError::TenantSuspended),
            KeyCheck::Invalid => Err(guessed()),
        };
    }
    if token.split('.').count() != 3 {
        return Err(guessed());
    }
    let tenant = addressed_tenant(parts, state).await?.ok_or_else(|| {
        ApiError::Unauthorized("a JWT is accepted only on the endpoints of an existing tenant's databases".into())
    })?;
    Ok(Caller::Device(state.verifier.verify(&state.control, &tenant, &token).await?))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = crate::lockout::client_addr(state, &parts.headers, &parts.extensions);
        crate::lockout::check(state, client)?;
        let caller = authenticate(parts, state, client).await?;
        if let Some((tenant, bucket)) = caller.bucket() {
            state.quotas.take_request(state, tenant, &bucket).await?;
        }
        Ok(caller)
    }
}
