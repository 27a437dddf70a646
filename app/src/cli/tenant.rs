//! `cloudsync tenant …`: tenants.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::client::{cell, encode, ClientArgs, Paging, Range};

/// `cloudsync tenant …`
#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List(Paging),
    /// Show a tenant.
    Get {
        /// Tenant, by name or id.
        id: String,
    },
    /// Rename a tenant.
    Rename {
        /// Tenant, by name or id.
        id: String,
        /// New name.
        #[arg(long)]
        name: String,
    },
    /// Suspend a tenant (its keys and tokens are refused).
    Suspend {
        /// Tenant, by name or id.
        id: String,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant, by name or id.
        id: String,
    },
    /// Delete a tenant with all its data (repeat it with --confirm).
    Delete {
        /// Tenant, by name or id.
        id: String,
        /// The tenant again, as given (name or id).
        #[arg(long)]
        confirm: String,
    },
    /// Show a tenant's quotas, or set some (`--set databases=10 --set devices=500`;
    /// `--clear` first forgets those set before, back to the node's defaults).
    Quotas {
        /// Tenant, by name or id.
        id: String,
        /// A limit to set, `NAME=N` (0: no limit): `databases`, `devices`,
        /// `storage_mb`, `transfer_mb_per_day`, `requests_per_second`,
        /// `requests_per_second_per_credential`, `long_polls` or
        /// `long_polls_per_credential`.
        #[arg(long, value_name = "NAME=N")]
        set: Vec<String>,
        /// Forget the limits set before.
        #[arg(long)]
        clear: bool,
    },
    /// Usage of a tenant's databases.
    Usage {
        /// Tenant, by name or id.
        id: String,
        #[command(flatten)]
        range: Range,
    },
}

pub fn tenant(cmd: TenantCmd, c: &ClientArgs) -> Result<()> {
    let cols = ["id", "name", "suspended", "created_at"];
    match cmd {
        TenantCmd::Create { name } => {
            let v = c.call("POST", "/v1/tenants", Some(json!({ "name": name })))?;
            c.show(&v, |v| format!("tenant {} ({})", cell(&v["id"]), cell(&v["name"])));
        }
        TenantCmd::List(p) => c.table(&c.list("/v1/tenants", &[], p.limit)?, &cols),
        TenantCmd::Get { id } => c.object(&c.call("GET", &c.tenant_path(&id)?, None)?),
        TenantCmd::Rename { id, name } => {
            c.object(&c.call("PATCH", &c.tenant_path(&id)?, Some(json!({ "name": name })))?);
        }
        TenantCmd::Suspend { id } => c.object(&c.call("POST", &format!("{}/suspend", c.tenant_path(&id)?), None)?),
        TenantCmd::Resume { id } => c.object(&c.call("POST", &format!("{}/resume", c.tenant_path(&id)?), None)?),
        TenantCmd::Delete { id, confirm } => {
            let tenant = c.tenant_id(&id)?;
            // The confirmation repeats what was given (name or id); the API wants the id.
            let confirm = if confirm == id { tenant.clone() } else { confirm };
            c.object(&c.call("DELETE", &format!("/v1/tenants/{tenant}?confirm={}", encode(&confirm)), None)?);
        }
        TenantCmd::Quotas { id, set, clear } => {
            let path = format!("{}/quotas", c.tenant_path(&id)?);
            if set.is_empty() && !clear {
                c.object(&c.call("GET", &path, None)?);
                return Ok(());
            }
            let mut overrides = if clear { json!({}) } else { c.call("GET", &path, None)?["overrides"].clone() };
            for item in set {
                let (name, value) = item
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--set takes NAME=N (e.g. databases=10), got '{item}'"))?;
                let n: u32 = value
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--set {name}: '{value}' is not a whole number"))?;
                overrides[name.trim()] = json!(n);
            }
            c.object(&c.call("PUT", &path, Some(overrides))?);
        }
        TenantCmd::Usage { id, range } => {
            c.object(&c.call("GET", &format!("{}/usage{}", c.tenant_path(&id)?, range.query()), None)?);
        }
    }
    Ok(())
}
