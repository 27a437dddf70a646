//! The operator CLI: clients of a running node's admin API, with `--json` output.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// How to reach the node.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Base URL of a running node.
    #[arg(long, global = true, env = "CLOUDSYNC_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin token (default: read from <data-dir>/admin-token).
    #[arg(long, global = true, env = "CLOUDSYNC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Data directory of a local node, to read its admin token.
    #[arg(long, global = true, env = "CLOUDSYNC_DATA_DIR", default_value = "cloudsync-data")]
    data_dir: PathBuf,
    /// Print the raw JSON response.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    fn token(&self) -> Result<String> {
        match &self.admin_token {
            Some(t) => Ok(t.clone()),
            None => {
                let path = self.data_dir.join("admin-token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_string())
                    .with_context(|| format!("no --admin-token given and cannot read {}", path.display()))
            }
        }
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut resp = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .send_json(&body)
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let value: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["error"]["message"].as_str().unwrap_or("no message");
            let code = value["error"]["code"].as_str().unwrap_or("unknown");
            bail!("{} {code}: {msg}", status.as_u16());
        }
        Ok(value)
    }

    fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", human(v));
        }
    }
}

/// `cloudsync tenant …`
#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
    },
}

/// `cloudsync database …`
#[derive(Subcommand, Debug)]
pub enum DatabaseCmd {
    /// Create a database (SQLite backend managed by the service).
    Create {
        /// Owning tenant id.
        #[arg(long)]
        tenant: String,
        /// Name.
        #[arg(long)]
        name: String,
    },
}

/// `cloudsync schema …`
#[derive(Subcommand, Debug)]
pub enum SchemaCmd {
    /// Run SQLite CREATE TABLE statements in a database and enable sync on the tables.
    Apply {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Database id.
        #[arg(long)]
        database: String,
        /// File with the SQL (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Table algorithm, as table=algo (repeatable; default cls).
        #[arg(long = "algo")]
        algos: Vec<String>,
    },
}

/// `cloudsync key …`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an API key (the secret is printed once).
    Create {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Scope (repeatable): admin, sync, schema.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
}

pub fn tenant(cmd: TenantCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        TenantCmd::Create { name } => {
            let v = c.post("/v1/tenants", json!({ "name": name }))?;
            c.show(&v, |v| format!("tenant {} ({})", v["id"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or("")));
        }
    }
    Ok(())
}

pub fn database(cmd: DatabaseCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        DatabaseCmd::Create { tenant, name } => {
            let v = c.post(
                &format!("/v1/tenants/{tenant}/databases"),
                json!({ "name": name, "backend": { "kind": "sqlite" } }),
            )?;
            c.show(&v, |v| {
                format!(
                    "database {}\nsync_url {}",
                    v["id"].as_str().unwrap_or(""),
                    v["sync_url"].as_str().unwrap_or("")
                )
            });
        }
    }
    Ok(())
}

pub fn schema(cmd: SchemaCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        SchemaCmd::Apply { tenant, database, file, algos } => {
            let sql = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let mut algo = serde_json::Map::new();
            for a in algos {
                let (t, al) = a.split_once('=').with_context(|| format!("--algo expects table=algo, got '{a}'"))?;
                algo.insert(t.to_string(), json!(al));
            }
            let v = c.post(
                &format!("/v1/tenants/{tenant}/databases/{database}/schema"),
                json!({ "sql": sql, "algo": algo }),
            )?;
            c.show(&v, |v| {
                v["tables"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| {
                                format!(
                                    "synced {} ({})",
                                    t["table"].as_str().unwrap_or(""),
                                    t["algo"].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
    }
    Ok(())
}

pub fn key(cmd: KeyCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        KeyCmd::Create { tenant, name, scopes } => {
            let v = c.post(&format!("/v1/tenants/{tenant}/api-keys"), json!({ "name": name, "scopes": scopes }))?;
            c.show(&v, |v| {
                format!("key {} (shown once)\n{}", v["id"].as_str().unwrap_or(""), v["key"].as_str().unwrap_or(""))
            });
        }
    }
    Ok(())
}

/// `cloudsync check-health`: succeeds when the URL answers 2xx within 5 seconds.
pub fn check_health(url: &str) -> Result<()> {
    let agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(5))).build().new_agent();
    match agent.get(url).call() {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => bail!("{url} answered {}", r.status()),
        Err(e) => bail!("{url}: {e}"),
    }
}
