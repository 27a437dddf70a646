//! `cloudsync database …`: databases.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{cell, encode, ClientArgs, Paging, Range};

/// `cloudsync database …`
#[derive(Subcommand, Debug)]
pub enum DatabaseCmd {
    /// Create a database: a SQLite file managed by the service, or with --postgres-url
    /// the tenant's own PostgreSQL (with the cloudsync extension).
    Create {
        /// Owning tenant, by name or id.
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// PostgreSQL backend: postgres://user:password@host/db (the password is
        /// sealed by the service and never shown again).
        #[arg(long, env = "CLOUDSYNC_BACKEND_URL", hide_env_values = true)]
        postgres_url: Option<String>,
        /// PostgreSQL backend: schema new tables go to (default public).
        #[arg(long, requires = "postgres_url")]
        schema: Option<String>,
    },
    /// Set a table's row policies (SQLite backends): SQL expressions over the row
    /// and auth_uid(), auth_role(), auth_claim('path'). Omitted: every row.
    Policy {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        /// Synced table.
        #[arg(long)]
        table: String,
        /// Which rows a device may read.
        #[arg(long)]
        read: Option<String>,
        /// Which rows a device may create, change or delete.
        #[arg(long)]
        write: Option<String>,
    },
    /// List a tenant's databases.
    List {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a database.
    Get {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        id: String,
    },
    /// Rename a database or replace its sync settings.
    Update {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New settings, as JSON (e.g. '{"tables":{"prices":{"direction":"download_only"}}}').
        #[arg(long)]
        settings: Option<String>,
    },
    /// Delete a database with its data (repeat it with --confirm).
    Delete {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        id: String,
        /// The database again, as given (name or id).
        #[arg(long)]
        confirm: String,
    },
    /// Usage of one database.
    Usage {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        id: String,
        #[command(flatten)]
        range: Range,
    },
}

pub fn database(cmd: DatabaseCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        DatabaseCmd::Create { tenant, name, postgres_url, schema } => {
            let backend = match postgres_url {
                Some(url) => {
                    json!({ "kind": "postgres", "url": url, "schema": schema.unwrap_or_else(|| "public".into()) })
                }
                None => json!({ "kind": "sqlite" }),
            };
            let v = c.call(
                "POST",
                &format!("{}/databases", c.tenant_path(&tenant)?),
                Some(json!({ "name": name, "backend": backend })),
            )?;
            c.show(&v, |v| format!("database {}\nsync_url {}", cell(&v["id"]), cell(&v["sync_url"])));
        }
        DatabaseCmd::Policy { tenant, database, table, read, write } => {
            let path = format!("{}/tables/{}/policy", c.database_path(&tenant, &database)?, encode(&table));
            let v = c.call("PUT", &path, Some(json!({ "read": read, "write": write })))?;
            c.object(&v["settings"]["tables"][&table]);
        }
        DatabaseCmd::List { tenant, paging } => c.table(
            &c.list(&format!("{}/databases", c.tenant_path(&tenant)?), &[], paging.limit)?,
            &["id", "name", "sync_url", "created_at"],
        ),
        DatabaseCmd::Get { tenant, id } => {
            c.object(&c.call("GET", &c.database_path(&tenant, &id)?, None)?);
        }
        DatabaseCmd::Update { tenant, id, name, settings } => {
            let mut body = serde_json::Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(s) = settings {
                body.insert("settings".into(), serde_json::from_str(&s).context("--settings is not JSON")?);
            }
            c.object(&c.call("PATCH", &c.database_path(&tenant, &id)?, Some(Value::Object(body)))?);
        }
        DatabaseCmd::Delete { tenant, id, confirm } => {
            let path = c.database_path(&tenant, &id)?;
            // The confirmation repeats what was given (name or id); the API wants the id.
            let confirm = if confirm == id { path.rsplit('/').next().unwrap_or_default().to_string() } else { confirm };
            let path = format!("{path}?confirm={}", encode(&confirm));
            c.object(&c.call("DELETE", &path, None)?);
        }
        DatabaseCmd::Usage { tenant, id, range } => {
            c.object(&c.call("GET", &format!("{}/usage{}", c.database_path(&tenant, &id)?, range.query()), None)?);
        }
    }
    Ok(())
}
