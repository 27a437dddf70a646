//! Verifying a device's JWT against its tenant's settings.
//!
//! JWKS documents are cached per node. A token with a key id the cached set lacks
//! triggers one refetch (a key rotation takes effect without a restart); refetches
//! caused by unknown key ids are limited to one per [`Verifier::new`]'s interval per
//! URL, so random key ids cannot turn the service into a request amplifier. JWKS URLs
//! are fetched only from hosts the egress policy allows (`crate::egress`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{algorithm_of, Method, VerificationSettings};
use crate::control::ControlPlane;
use crate::egress::{Egress, EgressError};
use crate::ids::TenantId;
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
