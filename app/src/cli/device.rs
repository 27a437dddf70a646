//! `cloudsync device …`: devices.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::client::{ClientArgs, Paging};

/// `cloudsync device …`
#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// List a database's devices.
    List {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a device.
    Get {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        /// Site id.
        site: String,
    },
    /// Block a device.
    Block {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        site: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock a device.
    Unblock {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        site: String,
    },
    /// Release a device's binding: its site id is bound to whoever syncs with it next.
    Release {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        site: String,
    },
    /// List the users and API keys blocked in a database.
    Blocked {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
    },
    /// Block a user or an API key, whatever site id it uses.
    BlockSubject {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        /// `user:<JWT user id>` or `key:<API key id>` (a device's `subject`).
        subject: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock a user or an API key.
    UnblockSubject {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        subject: String,
    },
}

pub fn device(cmd: DeviceCmd, c: &ClientArgs) -> Result<()> {
    let base = |t: &str, d: &str| -> Result<String> { Ok(format!("{}/devices", c.database_path(t, d)?)) };
    match cmd {
        DeviceCmd::List { tenant, database, paging } => c.table(
            &c.list(&base(&tenant, &database)?, &[], paging.limit)?,
            &["site_id", "subject", "last_seen", "requests", "changes_in", "changes_out", "blocked_at"],
        ),
        DeviceCmd::Get { tenant, database, site } => {
            c.object(&c.call("GET", &format!("{}/{site}", base(&tenant, &database)?), None)?);
        }
        DeviceCmd::Block { tenant, database, site, reason } => {
            let path = format!("{}/{site}/block", base(&tenant, &database)?);
            c.object(&c.call("POST", &path, Some(json!({ "reason": reason })))?);
        }
        DeviceCmd::Unblock { tenant, database, site } => {
            c.object(&c.call("POST", &format!("{}/{site}/unblock", base(&tenant, &database)?), None)?);
        }
        DeviceCmd::Release { tenant, database, site } => {
            c.object(&c.call("POST", &format!("{}/{site}/release", base(&tenant, &database)?), None)?);
        }
        DeviceCmd::Blocked { tenant, database } => {
            let list = c.call("GET", &format!("{}/blocked", c.database_path(&tenant, &database)?), None)?;
            c.table(&json!({ "items": list }), &["subject", "blocked_at", "reason"]);
        }
        DeviceCmd::BlockSubject { tenant, database, subject, reason } => {
            let path = format!("{}/blocked", c.database_path(&tenant, &database)?);
            c.object(&c.call("POST", &path, Some(json!({ "subject": subject, "reason": reason })))?);
        }
        DeviceCmd::UnblockSubject { tenant, database, subject } => {
            let path = format!("{}/blocked/remove", c.database_path(&tenant, &database)?);
            c.call("POST", &path, Some(json!({ "subject": subject })))?;
            c.object(&json!({ "unblocked": subject }));
        }
    }
    Ok(())
}
