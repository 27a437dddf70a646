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
//! JWKS documents are cached per node. A token with a key id the cached set lacks
//! triggers one refetch (a key rotation takes effect without a restart); refetches
//! caused by unknown key ids are limited to one per [`Verifier::new`]'s interval per
//! URL, so random key ids cannot turn the service into a request amplifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::egress::{Egress, EgressError};
use crate::ids::{now_ms, TenantId};
use crate::store::ControlPlane;
use crate::{Error, Result};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: u64 = 256 << 10;
/// How long a fetched JWKS is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// How long a failed fetch (with nothing cached) is answered from memory: a flood of
/// tokens naming a dead or refused URL costs one fetch per interval, not one each.
const FAILURE_TTL: Duration = Duration::from_secs(10);
/// How long one fetch may take, connection and body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest leeway a tenant may configure.
pub const MAX_LEEWAY_S: i64 = 300;

/// How a tenant's tokens are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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

fn algorithm_of(method: Method, requested: Option<&str>) -> Result<Algorithm> {
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

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The tenant whose settings verified it.
    pub tenant: TenantId,
    /// The user id claim.
    pub user_id: String,
    /// The role claim, if present.
    pub role: Option<String>,
    /// Every claim of the verified token (what `request.jwt.claims` gets).
    pub claims: serde_json::Value,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The tenant has no identity settings.
    #[error("this tenant does not accept JWTs (no identity settings)")]
    NotConfigured,
    /// Not a token, or one that fails verification.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A valid token of a suspended tenant.
    #[error("this tenant is suspended")]
    TenantSuspended,
    /// The JWKS could not be fetched (unreachable, an error status, not a JWKS
    /// document, too large or too slow). What answered is in the log, not here.
    #[error("the tenant's JWKS cannot be fetched (unreachable, or not a JWKS document)")]
    Unreachable,
    /// The JWKS URL's host is refused by the egress policy.
    #[error(transparent)]
    Refused(EgressError),
    /// The control plane failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// What [`Verifier::verify`] reads from the store.
struct VerificationSettings {
    identity: Identity,
    secret: Option<Vec<u8>>,
    suspended: bool,
    deleting: bool,
}

struct Cached {
    set: JwkSet,
    fetched: Instant,
}

/// A fetch that failed, remembered for [`FAILURE_TTL`].
struct Failed {
    at: Instant,
    refused: Option<EgressError>,
}

impl Failed {
    fn error(&self) -> JwtError {
        self.refused.clone().map_or(JwtError::Unreachable, JwtError::Refused)
    }
}

/// Verifies tenants' JWTs, caching JWKS documents.
pub struct Verifier {
    agent: ureq::Agent,
    cache: Mutex<HashMap<String, Cached>>,
    failures: Mutex<HashMap<String, Failed>>,
    misses: Mutex<HashMap<String, Instant>>,
    miss_refresh: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("miss_refresh", &self.miss_refresh).finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that refetches a JWKS for an unknown key id at most once per
    /// `miss_refresh` per URL, and fetches only from hosts the `egress` policy allows
    /// (directly: no proxy from the environment, no redirects).
    pub fn new(miss_refresh: Duration, egress: &Arc<Egress>) -> Verifier {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .http_status_as_error(true)
            .max_redirects(0)
            .proxy(None)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            egress.http_resolver("jwks_url"),
        );
        Verifier { agent, cache: Mutex::default(), failures: Mutex::default(), misses: Mutex::default(), miss_refresh }
    }

    /// Verifies `token` against `tenant`'s identity settings.
    pub async fn verify(&self, cp: &ControlPlane, tenant: &TenantId, token: &str) -> Result<Subject, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            JwtError::Invalid(format!("malformed token header ({e}); the algorithm must be the tenant's"))
        })?;
        let VerificationSettings { identity, secret, suspended, deleting } =
            cp.verification_settings(tenant).await?.ok_or(JwtError::NotConfigured)?;
        let pinned = algorithm_of(identity.method, Some(&identity.algorithm)).map_err(JwtError::Store)?;
        if header.alg != pinned {
            return Err(JwtError::Invalid(format!("token algorithm {:?} is not the tenant's {pinned:?}", header.alg)));
        }
        let key = match identity.method {
            Method::Hs256 => match secret.as_deref() {
                Some(s) if !s.is_empty() => DecodingKey::from_secret(s),
                // Never verify against an empty key (anyone could sign with it).
                _ => return Err(JwtError::Invalid("the tenant's HS256 secret is missing".into())),
            },
            Method::Rs256 => DecodingKey::from_rsa_pem(identity.public_key.as_deref().unwrap_or("").as_bytes())
                .map_err(|e| JwtError::Invalid(format!("stored public key: {e}")))?,
            Method::Es256 => DecodingKey::from_ec_pem(identity.public_key.as_deref().unwrap_or("").as_bytes())
                .map_err(|e| JwtError::Invalid(format!("stored public key: {e}")))?,
            Method::Jwks => {
                let url = identity.jwks_url.clone().unwrap_or_default();
                self.jwks_key(&url, header.kid.as_deref(), pinned).await?
            }
        };
        let mut v = Validation::new(pinned);
        v.set_issuer(&[&identity.issuer]);
        v.set_audience(&[&identity.audience]);
        v.leeway = u64::try_from(identity.leeway_s).unwrap_or(0);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        let user_id = match data.claims.get(&identity.user_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(JwtError::Invalid(format!(
                    "claim '{}' (the user id) is missing or not a short string",
                    identity.user_claim
                )))
            }
        };
        let role = data.claims.get(&identity.role_claim).and_then(|r| r.as_str()).map(str::to_string);
        // Checked after the signature, as for API keys: only a valid credential learns
        // the tenant's state.
        if deleting {
            return Err(JwtError::Store(Error::NotFound { what: "tenant" }));
        }
        if suspended {
            return Err(JwtError::TenantSuspended);
        }
        Ok(Subject { tenant: tenant.clone(), user_id, role, claims: serde_json::Value::Object(data.claims) })
    }

    async fn jwks_key(&self, url: &str, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, JwtError> {
        let fresh = {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.get(url).filter(|c| c.fetched.elapsed() < JWKS_TTL).map(|c| c.set.clone())
        };
        let set = match fresh {
            Some(s) => s,
            None => self.refetch(url).await?,
        };
        if let Some(k) = pick(&set, kid, alg)? {
            return Ok(k);
        }
        // Unknown key id: maybe a rotation. Refetch, at most once per interval.
        let allowed = {
            let mut misses = self.misses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let ok = misses.get(url).is_none_or(|t| t.elapsed() >= self.miss_refresh);
            if ok {
                misses.insert(url.to_string(), Instant::now());
            }
            ok
        };
        if allowed {
            let set = self.refetch(url).await?;
            if let Some(k) = pick(&set, kid, alg)? {
                return Ok(k);
            }
        }
        Err(JwtError::Invalid(format!("no key with id {:?} in the tenant's JWKS", kid.unwrap_or(""))))
    }

    async fn refetch(&self, url: &str) -> Result<JwkSet, JwtError> {
        let cached = || {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.get(url).map(|c| c.set.clone())
        };
        let recent_failure = {
            let failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            failures.get(url).filter(|f| f.at.elapsed() < FAILURE_TTL).map(Failed::error)
        };
        if let Some(e) = recent_failure {
            return cached().ok_or(e);
        }
        let agent = self.agent.clone();
        let target = url.to_string();
        let fetched = tokio::task::spawn_blocking(move || -> Result<JwkSet, (String, Option<EgressError>)> {
            let fail = |e: ureq::Error| {
                let refused = crate::egress::refusal(&e).cloned();
                (e.to_string(), refused)
            };
            let mut resp = agent.get(&target).call().map_err(fail)?;
            let text = resp.body_mut().with_config().limit(MAX_JWKS_BYTES).read_to_string().map_err(fail)?;
            serde_json::from_str::<JwkSet>(&text).map_err(|e| (format!("not a JWKS document: {e}"), None))
        })
        .await
        .map_err(|e| {
            tracing::warn!(url, error = %e, "JWKS fetch task failed");
            JwtError::Unreachable
        })?;
        match fetched {
            Ok(set) => {
                let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                cache.insert(url.to_string(), Cached { set: set.clone(), fetched: Instant::now() });
                self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(url);
                Ok(set)
            }
            Err((detail, refused)) => {
                // The detail (what answered) is for the operator's log only.
                tracing::warn!(url, error = %detail, "JWKS fetch failed");
                let failed = Failed { at: Instant::now(), refused };
                let e = failed.error();
                self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(url.to_string(), failed);
                // A provider outage does not lock devices out while a cached set exists.
                cached().ok_or(e)
            }
        }
    }
}

/// The key for `kid` (or the only key when the token names none), if it fits `alg`.
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, JwtError> {
    let jwk = match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => return Err(JwtError::Invalid("the token has no key id and the JWKS holds several keys".into())),
    };
    let Some(jwk) = jwk else { return Ok(None) };
    if let Some(ka) = jwk.common.key_algorithm {
        if format!("{ka:?}") != format!("{alg:?}") {
            return Err(JwtError::Invalid(format!("JWKS key {kid:?} is for {ka:?}, not {alg:?}")));
        }
    }
    DecodingKey::from_jwk(jwk).map(Some).map_err(|e| JwtError::Invalid(format!("JWKS key {kid:?}: {e}")))
}
