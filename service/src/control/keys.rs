//! API keys: generated from 32 random bytes, shown once, stored as a SHA-256 digest;
//! listed without secrets, revocable, with their last use recorded.

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::control::{valid_name, ControlPlane};
use crate::ids::{now_ms, ApiKeyId, TenantId};
use crate::page::{Page, PageRequest};
use crate::{Error, Result};

/// Prefix that makes cloudsync keys recognisable (and greppable in leaked logs); devices
/// check a key's shape against it when it is set.
pub const PREFIX: &str = cloudsync_protocol::credentials::API_KEY_PREFIX;

/// A new secret key.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest stored for a key. Keys have 256 bits of entropy, so a plain (unsalted)
/// SHA-256 is enough to make the stored value useless to an attacker while letting
/// authentication look keys up by digest.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything in its tenant.
    Admin,
    /// Upload and download changes.
    Sync,
    /// Provision tables.
    Schema,
}

impl Scope {
    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "admin" => Some(Scope::Admin),
            "sync" => Some(Scope::Sync),
            "schema" => Some(Scope::Schema),
            _ => None,
        }
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Sync => "sync",
            Scope::Schema => "schema",
        }
    }
}

/// An API key, without its secret.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Expiry (Unix ms), if any.
    pub expires_at: Option<i64>,
    /// Revocation time (Unix ms), if revoked.
    pub revoked_at: Option<i64>,
    /// Last use, to the minute (Unix ms).
    pub last_used_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key grants `scope` (admin grants everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

fn key_of(r: &AnyRow) -> Result<ApiKey> {
    let scopes: String = r.try_get("scopes")?;
    Ok(ApiKey {
        id: ApiKeyId::parse(r.try_get::<&str, _>("id")?)?,
        tenant_id: TenantId::parse(r.try_get::<&str, _>("tenant_id")?)?,
        name: r.try_get("name")?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

/// The outcome of presenting a key.
#[derive(Clone, Debug)]
pub enum KeyCheck {
    /// A valid key.
    Valid(ApiKey),
    /// A valid key of a suspended tenant.
    TenantSuspended,
    /// Unknown, revoked or expired.
    Invalid,
}

impl ControlPlane {
    /// Creates an API key; returns the key and its secret (shown once, stored hashed).
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
    ) -> Result<(ApiKey, String)> {
        self.tenant(tenant).await?;
        if scopes.is_empty() {
            return Err(Error::Invalid("an API key needs at least one scope (admin, sync, schema)".into()));
        }
        let now = now_ms();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid("expires_at must be in the future (Unix milliseconds)".into()));
        }
        let secret = generate();
        let mut scopes = scopes.to_vec();
        scopes.sort_by_key(|s| s.name());
        scopes.dedup();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant.clone(),
            name: valid_name("API key", name)?,
            scopes,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let scopes_text = key.scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(&key.name)
        .bind(digest(&secret))
        .bind(scopes_text)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok((key, secret))
    }

    /// A page of a tenant's keys (revoked ones included, marked), oldest first.
    pub async fn api_keys(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.tenant(tenant).await?;
        let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(tenant.as_str())
            .bind(page.after_text())
            .bind(page.fetch())
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(key_of).collect::<Result<Vec<_>>>()?;
        Ok(page.page(items, |k| k.id.to_string()))
    }

    /// One of a tenant's keys.
    pub async fn api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2")
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_of).transpose()?.ok_or(Error::NotFound { what: "API key" })
    }

    /// Revokes a key (at once, on every node: keys are checked against the store on
    /// each request). Revoking a revoked key keeps the first revocation time.
    pub async fn revoke_api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<ApiKey> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id.as_str())
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        self.api_key(tenant, id).await
    }

    /// Checks a presented secret. Records the key's use (at most once a minute: a
    /// write per request would serialize every device on the control-plane store).
    pub async fn authenticate_key(&self, secret: &str) -> Result<KeyCheck> {
        if !secret.starts_with(PREFIX) {
            return Ok(KeyCheck::Invalid);
        }
        let now = now_ms();
        let row = sqlx::query(
            "SELECT k.*, t.suspended AS tenant_suspended FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2) AND t.deleting = 0",
        )
        .bind(digest(secret))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(KeyCheck::Invalid) };
        if row.try_get::<i64, _>("tenant_suspended")? != 0 {
            return Ok(KeyCheck::TenantSuspended);
        }
        let key = key_of(&row)?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND coalesce(last_used_at, 0) < $1 - 60000")
            .bind(now)
            .bind(key.id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(KeyCheck::Valid(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_digests_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() > 40);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }
}
