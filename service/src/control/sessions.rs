//! Admin dashboard sessions, kept in the control-plane store so that any node can
//! serve any request of a signed-in operator (no node-local session state).
//!
//! The browser holds a random 256-bit session id in a cookie; the store keeps only its
//! SHA-256, with the CSRF token of the session and who signed in: the operator (tied to
//! the admin token in use at the time, by its SHA-256) or a tenant's API key with the
//! `admin` scope (re-checked on every request, so revoking or expiring the key, or
//! suspending its tenant, ends the session).

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::control::keys::{ApiKey, Scope};
use crate::control::ControlPlane;
use crate::ids::{now_ms, ApiKeyId};
use crate::Result;

/// How long a session lasts without being renewed by a new sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Who a session belongs to.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The operator.
    Operator,
    /// A tenant administrator, by the admin key they signed in with.
    Key(ApiKey),
}

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who signed in.
    pub principal: Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// When it ends (Unix ms).
    pub expires_at: i64,
}

/// A random URL-safe token of 256 bits.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

impl ControlPlane {
    /// Starts a session; returns the cookie value (shown to the browser once) and the session.
    /// `admin_token` is the operator token in force (an operator session is tied to it).
    pub async fn create_session(&self, principal: Principal, admin_token: &str) -> Result<(String, Session)> {
        let id = random_token();
        let csrf = random_token();
        let now = now_ms();
        let expires_at = now + i64::try_from(LIFETIME.as_millis()).unwrap_or(i64::MAX / 2);
        let (key_id, operator) = match &principal {
            Principal::Operator => (None, Some(hash(admin_token))),
            Principal::Key(k) => (Some(k.id.to_string()), None),
        };
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, api_key_id, operator_hash, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash(&id))
        .bind(key_id)
        .bind(operator)
        .bind(&csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok((id, Session { principal, csrf, expires_at }))
    }

    /// The live session with cookie value `id`, if any: unexpired, and still backed by
    /// the current admin token or by a valid admin key of an active tenant.
    pub async fn session(&self, id: &str, admin_token: &str) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT api_key_id, operator_hash, csrf, expires_at FROM dashboard_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(hash(id))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let csrf: String = row.try_get("csrf")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let key_id: Option<String> = row.try_get("api_key_id")?;
        let principal = match key_id {
            None => {
                let op: Option<String> = row.try_get("operator_hash")?;
                if op.as_deref() != Some(hash(admin_token).as_str()) {
                    return Ok(None);
                }
                Principal::Operator
            }
            Some(key_id) => match self.session_key(&ApiKeyId::parse(&key_id)?).await? {
                Some(key) => Principal::Key(key),
                None => return Ok(None),
            },
        };
        Ok(Some(Session { principal, csrf, expires_at }))
    }

    /// The key of a tenant session, if it still grants `admin` in an active tenant.
    async fn session_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT k.tenant_id FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.id = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2) \
             AND t.suspended = 0 AND t.deleting = 0",
        )
        .bind(id.as_str())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tenant = crate::ids::TenantId::parse(row.try_get::<&str, _>("tenant_id")?)?;
        let key = self.api_key(&tenant, id).await?;
        Ok(key.allows(Scope::Admin).then_some(key))
    }

    /// Ends a session (idempotent).
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1").bind(hash(id)).execute(&self.pool).await?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn purge_sessions(&self) -> Result<u64> {
        let r = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
