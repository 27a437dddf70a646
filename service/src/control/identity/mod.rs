//! Tenants' identity providers: how the JWTs their devices present are verified.
//!
//! Each tenant pins one method and one algorithm: an HS256 shared secret (sealed at
//! rest, see [`crate::secrets`]), an RS256 or ES256 public key, or a JWKS URL with RS256
//! or ES256. A token whose header names another algorithm is refused before any key is
//! touched, so there is no `none` and no HS/RS confusion. `exp` is required and
//! enforced, `nbf` enforced when present, issuer and audience must match, with a
//! per-tenant clock-skew leeway. The user id (and optional role) come from configurable
//! claims.
//!
//! This module holds the settings and their storage; `verify` checks tokens against
//! them.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::control::ControlPlane;
use crate::egress::{Egress, EgressError};
use crate::ids::{now_ms, TenantId};
use crate::{Error, Result};

mod verify;
pub use verify::{JwtError, Subject, Verifier};

/// Largest leeway a tenant may configure.
pub const MAX_LEEWAY_S: i64 = 300;

/// How a tenant's tokens are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A shared secret, HS256.
    Hs256,
    /// An RSA public key (PEM), RS256.
    Rs256,
    /// A P-256 public key (PEM), ES256.
    Es256,
    /// Keys published at a JWKS URL (RS256 or ES256, pinned by `algorithm`).
    Jwks,
}

impl Method {
    /// The method's name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Hs256 => "hs256",
            Method::Rs256 => "rs256",
            Method::Es256 => "es256",
            Method::Jwks => "jwks",
        }
    }

    fn parse(s: &str) -> Result<Method> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| Error::Invalid(format!("unknown identity method '{s}'")))
    }
}

/// Identity settings as a tenant sends them.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    /// Method.
    pub method: Method,
    /// HS256 shared secret (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256 or ES256 public key, PEM.
    #[serde(default)]
    pub public_key: Option<String>,
    /// JWKS URL (`http(s)://`, no credentials), on a host the node's egress policy
    /// allows.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// With `jwks`: `RS256` (default) or `ES256`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Clock-skew leeway for `exp` and `nbf`, seconds (default 30, at most 300).
    #[serde(default)]
    pub leeway_s: Option<i64>,
    /// Claim carrying the user id (default `sub`).
    #[serde(default)]
    pub user_claim: Option<String>,
    /// Claim carrying the role (default `role`).
    #[serde(default)]
    pub role_claim: Option<String>,
}

/// Identity settings as stored and shown (never with the secret).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Identity {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Method.
    pub method: Method,
    /// The one algorithm accepted.
    pub algorithm: String,
    /// Public key (RS256, ES256).
    pub public_key: Option<String>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Leeway, seconds.
    pub leeway_s: i64,
    /// Claim carrying the user id.
    pub user_claim: String,
    /// Claim carrying the role.
    pub role_claim: String,
    /// Whether a secret is set (HS256); the secret itself is never returned.
    pub has_secret: bool,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

pub(crate) fn algorithm_of(method: Method, requested: Option<&str>) -> Result<Algorithm> {
    match (method, requested) {
        (Method::Hs256, None | Some("HS256")) => Ok(Algorithm::HS256),
        (Method::Rs256, None | Some("RS256")) | (Method::Jwks, None | Some("RS256")) => Ok(Algorithm::RS256),
        (Method::Es256, None | Some("ES256")) | (Method::Jwks, Some("ES256")) => Ok(Algorithm::ES256),
        (m, Some(a)) => Err(Error::Invalid(format!("algorithm '{a}' is not available with method '{}'", m.name()))),
    }
}

fn claim_name(what: &str, v: Option<&str>, default: &str) -> Result<String> {
    let v = v.unwrap_or(default).trim();
    if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("{what} must be 1 to 64 printable characters")));
    }
    Ok(v.to_string())
}

fn required(what: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 512 {
        return Err(Error::Invalid(format!("{what} is required (1 to 512 characters)")));
    }
    Ok(v.to_string())
}

/// Checks a JWKS URL: http(s), a host (a DNS name or an address), no credentials;
/// returns it with its host and port.
fn jwks_url(v: Option<&str>) -> Result<(String, String, u16)> {
    let url = v.ok_or_else(|| Error::Invalid("method 'jwks' needs jwks_url".into()))?.trim();
    let bad = || Error::Invalid("jwks_url must be an http(s) URL with a host and no credentials".into());
    if url.len() > 2048 || url.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad());
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(bad()),
    };
    let port = parsed.port_or_known_default().ok_or_else(bad)?;
    Ok((url.to_string(), host, port))
}

fn identity_of(r: &sqlx::any::AnyRow, tenant: &TenantId) -> Result<Identity> {
    Ok(Identity {
        tenant_id: tenant.clone(),
        method: Method::parse(r.try_get::<&str, _>("method")?)?,
        algorithm: r.try_get("algorithm")?,
        public_key: r.try_get("public_key")?,
        jwks_url: r.try_get("jwks_url")?,
        issuer: r.try_get("issuer")?,
        audience: r.try_get("audience")?,
        leeway_s: r.try_get("leeway_s")?,
        user_claim: r.try_get("user_claim")?,
        role_claim: r.try_get("role_claim")?,
        has_secret: r.try_get::<Option<Vec<u8>>, _>("secret")?.is_some(),
        updated_at: r.try_get("updated_at")?,
    })
}

impl ControlPlane {
    /// Sets (replaces) a tenant's identity settings, after checking them: a key must
    /// parse, a secret must be long enough, and the algorithm must fit the method.
    /// A JWKS URL must name a host the `egress` policy allows.
    pub async fn set_identity(&self, tenant: &TenantId, input: IdentityInput, egress: &Egress) -> Result<Identity> {
        self.tenant(tenant).await?;
        let alg = algorithm_of(input.method, input.algorithm.as_deref())?;
        let leeway_s = input.leeway_s.unwrap_or(30);
        if !(0..=MAX_LEEWAY_S).contains(&leeway_s) {
            return Err(Error::Invalid(format!("leeway_s must be between 0 and {MAX_LEEWAY_S}")));
        }
        let only = |field: &str, present: bool| -> Result<()> {
            if present {
                return Err(Error::Invalid(format!("{field} does not apply to method '{}'", input.method.name())));
            }
            Ok(())
        };
        let (mut secret, mut public_key, mut url) = (None, None, None);
        match input.method {
            Method::Hs256 => {
                only("public_key", input.public_key.is_some())?;
                only("jwks_url", input.jwks_url.is_some())?;
                let s = input.secret.as_deref().unwrap_or("");
                if s.len() < 32 {
                    return Err(Error::Invalid("an HS256 secret must be at least 32 bytes".into()));
                }
                let sealer = self.secrets.as_ref().ok_or_else(|| {
                    Error::Invalid("this deployment has no secrets key, so it cannot store HS256 secrets".into())
                })?;
                secret = Some(sealer.seal(s.as_bytes(), tenant.as_str())?);
            }
            Method::Rs256 | Method::Es256 => {
                only("secret", input.secret.is_some())?;
                only("jwks_url", input.jwks_url.is_some())?;
                let pem = input.public_key.as_deref().unwrap_or("").trim().to_string();
                let parsed = if alg == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                } else {
                    DecodingKey::from_ec_pem(pem.as_bytes())
                };
                parsed.map_err(|e| Error::Invalid(format!("public_key is not a PEM {alg:?} public key: {e}")))?;
                public_key = Some(pem);
            }
            Method::Jwks => {
                only("secret", input.secret.is_some())?;
                only("public_key", input.public_key.is_some())?;
                let (checked, host, port) = jwks_url(input.jwks_url.as_deref())?;
                // Refused now rather than at the first device's token (and again at
                // every fetch: DNS answers change).
                egress.resolve("jwks_url", &host, port).await.map_err(|e| match e {
                    e @ EgressError::Unresolved { .. } => Error::Invalid(e.to_string()),
                    e => Error::Egress(e),
                })?;
                url = Some(checked);
            }
        }
        let identity = Identity {
            tenant_id: tenant.clone(),
            method: input.method,
            algorithm: format!("{alg:?}"),
            public_key,
            jwks_url: url,
            issuer: required("issuer", &input.issuer)?,
            audience: required("audience", &input.audience)?,
            leeway_s,
            user_claim: claim_name("user_claim", input.user_claim.as_deref(), "sub")?,
            role_claim: claim_name("role_claim", input.role_claim.as_deref(), "role")?,
            has_secret: secret.is_some(),
            updated_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO identities (tenant_id, method, secret, public_key, jwks_url, algorithm, issuer, audience, \
             leeway_s, user_claim, role_claim, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id) DO UPDATE SET method = excluded.method, secret = excluded.secret, \
             public_key = excluded.public_key, jwks_url = excluded.jwks_url, algorithm = excluded.algorithm, \
             issuer = excluded.issuer, audience = excluded.audience, leeway_s = excluded.leeway_s, \
             user_claim = excluded.user_claim, role_claim = excluded.role_claim, updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(identity.method.name())
        .bind(secret)
        .bind(identity.public_key.as_deref())
        .bind(identity.jwks_url.as_deref())
        .bind(&identity.algorithm)
        .bind(&identity.issuer)
        .bind(&identity.audience)
        .bind(identity.leeway_s)
        .bind(&identity.user_claim)
        .bind(&identity.role_claim)
        .bind(identity.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(identity)
    }

    /// What verifying a token of `tenant` needs, in one read: its identity settings,
    /// the opened HS256 secret, and whether the tenant is suspended or being deleted.
    async fn verification_settings(&self, tenant: &TenantId) -> Result<Option<VerificationSettings>> {
        let row = sqlx::query(
            "SELECT i.*, t.suspended AS tenant_suspended, t.deleting AS tenant_deleting \
             FROM identities i JOIN tenants t ON t.id = i.tenant_id WHERE i.tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed: Option<Vec<u8>> = r.try_get("secret")?;
        let secret = match (&sealed, &self.secrets) {
            (Some(s), Some(sealer)) => Some(sealer.open(s, tenant.as_str())?),
            (Some(_), None) => return Err(Error::Invalid("no secrets key configured to open the HS256 secret".into())),
            (None, _) => None,
        };
        Ok(Some(VerificationSettings {
            identity: identity_of(&r, tenant)?,
            secret,
            suspended: r.try_get::<i64, _>("tenant_suspended")? != 0,
            deleting: r.try_get::<i64, _>("tenant_deleting")? != 0,
        }))
    }

    /// A tenant's identity settings (without the secret).
    pub async fn identity(&self, tenant: &TenantId) -> Result<Identity> {
        self.tenant(tenant).await?;
        let row = sqlx::query("SELECT * FROM identities WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        // Shown without opening the secret: a node without the key can still show them.
        row.as_ref().map(|r| identity_of(r, tenant)).transpose()?.ok_or(Error::NotFound { what: "identity settings" })
    }

    /// Removes a tenant's identity settings (its devices' JWTs stop working).
    pub async fn delete_identity(&self, tenant: &TenantId) -> Result<()> {
        self.tenant(tenant).await?;
        let n = sqlx::query("DELETE FROM identities WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(Error::NotFound { what: "identity settings" });
        }
        Ok(())
    }
}

/// What [`Verifier::verify`] reads from the store.
pub(crate) struct VerificationSettings {
    pub(crate) identity: Identity,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) suspended: bool,
    pub(crate) deleting: bool,
}
