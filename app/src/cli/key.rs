//! `cloudsync key …`: API keys.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::client::{cell, ClientArgs, Paging};

/// `cloudsync key …`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an API key (the secret is printed once).
    Create {
        /// Tenant, by name or id.
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Scope (repeatable): admin, sync, schema.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Expiry, Unix ms.
        #[arg(long)]
        expires_at: Option<i64>,
    },
    /// List a tenant's keys (without secrets).
    List {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a key.
    Get {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Revoke a key.
    Revoke {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

pub fn key(cmd: KeyCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        KeyCmd::Create { tenant, name, scopes, expires_at } => {
            let v = c.call(
                "POST",
                &format!("{}/api-keys", c.tenant_path(&tenant)?),
                Some(json!({ "name": name, "scopes": scopes, "expires_at": expires_at })),
            )?;
            c.show(&v, |v| format!("key {} (shown once)\n{}", cell(&v["id"]), cell(&v["key"])));
        }
        KeyCmd::List { tenant, paging } => c.table(
            &c.list(&format!("{}/api-keys", c.tenant_path(&tenant)?), &[], paging.limit)?,
            &["id", "name", "scopes", "expires_at", "revoked_at", "last_used_at"],
        ),
        KeyCmd::Get { tenant, id } => {
            c.object(&c.call("GET", &format!("{}/api-keys/{id}", c.tenant_path(&tenant)?), None)?)
        }
        KeyCmd::Revoke { tenant, id } => {
            c.object(&c.call("DELETE", &format!("{}/api-keys/{id}", c.tenant_path(&tenant)?), None)?);
        }
    }
    Ok(())
}
