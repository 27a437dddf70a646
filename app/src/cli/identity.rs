//! `cloudsync identity …`: identity providers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::ClientArgs;

/// `cloudsync identity …`
#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Show a tenant's identity settings.
    Get {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
    },
    /// Set how a tenant's device JWTs are verified.
    Set(Box<IdentitySet>),
    /// Remove a tenant's identity settings.
    Delete {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
    },
}

/// Flags of `cloudsync identity set`.
#[derive(Args, Debug)]
pub struct IdentitySet {
    /// Tenant, by name or id.
    #[arg(long)]
    tenant: String,
    /// hs256, rs256, es256 or jwks.
    #[arg(long)]
    method: String,
    /// HS256 secret (at least 32 bytes).
    #[arg(long, env = "CLOUDSYNC_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// File with the RS256/ES256 public key (PEM).
    #[arg(long)]
    public_key_file: Option<PathBuf>,
    /// JWKS URL.
    #[arg(long)]
    jwks_url: Option<String>,
    /// With jwks: RS256 or ES256.
    #[arg(long)]
    algorithm: Option<String>,
    /// Required issuer.
    #[arg(long)]
    issuer: String,
    /// Required audience.
    #[arg(long)]
    audience: String,
    /// Clock-skew leeway, seconds.
    #[arg(long)]
    leeway_s: Option<i64>,
    /// Claim with the user id (default sub).
    #[arg(long)]
    user_claim: Option<String>,
    /// Claim with the role (default role).
    #[arg(long)]
    role_claim: Option<String>,
}

pub fn identity(cmd: IdentityCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        IdentityCmd::Get { tenant } => {
            c.object(&c.call("GET", &format!("{}/identity", c.tenant_path(&tenant)?), None)?)
        }
        IdentityCmd::Set(set) => {
            let IdentitySet {
                tenant,
                method,
                secret,
                public_key_file,
                jwks_url,
                algorithm,
                issuer,
                audience,
                leeway_s,
                user_claim,
                role_claim,
            } = *set;
            let public_key = match public_key_file {
                Some(p) => Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?),
                None => None,
            };
            let mut body = json!({ "method": method, "issuer": issuer, "audience": audience });
            for (k, v) in [
                ("secret", secret.map(Value::from)),
                ("public_key", public_key.map(Value::from)),
                ("jwks_url", jwks_url.map(Value::from)),
                ("algorithm", algorithm.map(Value::from)),
                ("leeway_s", leeway_s.map(Value::from)),
                ("user_claim", user_claim.map(Value::from)),
                ("role_claim", role_claim.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            c.object(&c.call("PUT", &format!("{}/identity", c.tenant_path(&tenant)?), Some(body))?);
        }
        IdentityCmd::Delete { tenant } => {
            c.call("DELETE", &format!("{}/identity", c.tenant_path(&tenant)?), None)?;
            c.show(&json!({ "deleted": true }), |_| "identity settings removed".into());
        }
    }
    Ok(())
}
