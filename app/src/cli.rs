//! The operator CLI: every admin-API action as a subcommand, a client of a running
//! node, with `--json` for the raw response. Lists follow `next_cursor` to the end
//! unless `--limit` asks for one page.

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
    /// Admin token or tenant admin key (default: read from <data-dir>/admin-token).
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

    /// One API call; non-2xx answers become errors with the API's code and message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let auth = format!("Bearer {}", self.token()?);
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
            ("POST", b) => agent.post(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            ("PUT", b) => agent.put(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            ("PATCH", b) => agent.patch(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            (m, _) => bail!("unsupported method {m}"),
        };
        let mut resp = result.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let value: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["error"]["message"].as_str().unwrap_or("no message");
            let code = value["error"]["code"].as_str().unwrap_or("unknown");
            bail!("{} {code}: {msg}", status.as_u16());
        }
        Ok(value)
    }

    /// A list: one page with `limit`, otherwise every page.
    fn list(&self, path: &str, query: &[(&str, String)], limit: Option<u32>) -> Result<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
            q.push(format!("limit={}", limit.unwrap_or(500)));
            if let Some(c) = &cursor {
                q.push(format!("cursor={}", encode(c)));
            }
            let page = self.call("GET", &format!("{path}?{}", q.join("&")), None)?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if limit.is_some() {
                return Ok(json!({ "items": items, "next_cursor": cursor }));
            }
            if cursor.is_none() {
                return Ok(json!({ "items": items, "next_cursor": null }));
            }
        }
    }

    fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", human(v));
        }
    }

    /// Prints a list as a table of `columns` (or the JSON with `--json`).
    fn table(&self, v: &Value, columns: &[&str]) {
        self.show(v, |v| {
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .map(|items| items.iter().map(|i| columns.iter().map(|c| cell(&i[*c])).collect()).collect())
                .unwrap_or_default();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(n, c)| rows.iter().map(|r| r[n].len()).chain([c.len()]).max().unwrap_or(0))
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            let mut out = vec![line(columns.iter().map(|c| c.to_string()).collect())];
            out.extend(rows.into_iter().map(line));
            if let Some(c) = v["next_cursor"].as_str() {
                out.push(format!("(more: --cursor {c})"));
            }
            out.join("\n")
        });
    }

    /// Prints one object as `field: value` lines.
    fn object(&self, v: &Value) {
        self.show(v, |v| match v.as_object() {
            Some(map) => map.iter().map(|(k, val)| format!("{k}: {}", cell(val))).collect::<Vec<_>>().join("\n"),
            None => cell(v),
        });
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Paging flags of list commands.
#[derive(Args, Debug)]
pub struct Paging {
    /// One page of at most this many items (default: every page).
    #[arg(long)]
    limit: Option<u32>,
}

/// A time range.
#[derive(Args, Debug)]
pub struct Range {
    /// Start, Unix ms (default: 30 days before --to).
    #[arg(long)]
    from: Option<i64>,
    /// End, Unix ms (default: now).
    #[arg(long)]
    to: Option<i64>,
}

impl Range {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(f) = self.from {
            q.push(format!("from={f}"));
        }
        if let Some(t) = self.to {
            q.push(format!("to={t}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
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
    /// List tenants.
    List(Paging),
    /// Show a tenant.
    Get { id: String },
    /// Rename a tenant.
    Rename {
        id: String,
        /// New name.
        #[arg(long)]
        name: String,
    },
    /// Suspend a tenant (its keys and tokens are refused).
    Suspend { id: String },
    /// Resume a suspended tenant.
    Resume { id: String },
    /// Delete a tenant with all its data (repeat the id with --confirm).
    Delete {
        id: String,
        /// The tenant id again.
        #[arg(long)]
        confirm: String,
    },
    /// Usage of a tenant's databases.
    Usage {
        id: String,
        #[command(flatten)]
        range: Range,
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
    /// List a tenant's databases.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a database.
    Get {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Rename a database or replace its sync settings.
    Update {
        #[arg(long)]
        tenant: String,
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New settings, as JSON (e.g. '{"tables":{"prices":{"direction":"download_only"}}}').
        #[arg(long)]
        settings: Option<String>,
    },
    /// Delete a database with its data (repeat the id with --confirm).
    Delete {
        #[arg(long)]
        tenant: String,
        id: String,
        /// The database id again.
        #[arg(long)]
        confirm: String,
    },
    /// Usage of one database.
    Usage {
        #[arg(long)]
        tenant: String,
        id: String,
        #[command(flatten)]
        range: Range,
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
        /// Expiry, Unix ms.
        #[arg(long)]
        expires_at: Option<i64>,
    },
    /// List a tenant's keys (without secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a key.
    Get {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Revoke a key.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

/// `cloudsync identity …`
#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Show a tenant's identity settings.
    Get {
        #[arg(long)]
        tenant: String,
    },
    /// Set how a tenant's device JWTs are verified.
    Set(Box<IdentitySet>),
    /// Remove a tenant's identity settings.
    Delete {
        #[arg(long)]
        tenant: String,
    },
}

/// Flags of `cloudsync identity set`.
#[derive(Args, Debug)]
pub struct IdentitySet {
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

/// `cloudsync device …`
#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// List a database's devices.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a device.
    Get {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        /// Site id.
        site: String,
    },
    /// Block a device.
    Block {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        site: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock a device.
    Unblock {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        site: String,
    },
}

/// `cloudsync job …`
#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// List a database's apply jobs, newest first.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        /// Only jobs in this state (pending, running, done, dead, discarded).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a job.
    Get {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        id: i64,
    },
    /// Retry a failed job now.
    Retry {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        id: i64,
    },
    /// Discard a waiting or dead job.
    Discard {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        database: String,
        id: i64,
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
        TenantCmd::Get { id } => c.object(&c.call("GET", &format!("/v1/tenants/{id}"), None)?),
        TenantCmd::Rename { id, name } => {
            c.object(&c.call("PATCH", &format!("/v1/tenants/{id}"), Some(json!({ "name": name })))?);
        }
        TenantCmd::Suspend { id } => c.object(&c.call("POST", &format!("/v1/tenants/{id}/suspend"), None)?),
        TenantCmd::Resume { id } => c.object(&c.call("POST", &format!("/v1/tenants/{id}/resume"), None)?),
        TenantCmd::Delete { id, confirm } => {
            c.object(&c.call("DELETE", &format!("/v1/tenants/{id}?confirm={}", encode(&confirm)), None)?);
        }
        TenantCmd::Usage { id, range } => {
            c.object(&c.call("GET", &format!("/v1/tenants/{id}/usage{}", range.query()), None)?);
        }
    }
    Ok(())
}

pub fn database(cmd: DatabaseCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        DatabaseCmd::Create { tenant, name } => {
            let v = c.call(
                "POST",
                &format!("/v1/tenants/{tenant}/databases"),
                Some(json!({ "name": name, "backend": { "kind": "sqlite" } })),
            )?;
            c.show(&v, |v| format!("database {}\nsync_url {}", cell(&v["id"]), cell(&v["sync_url"])));
        }
        DatabaseCmd::List { tenant, paging } => c.table(
            &c.list(&format!("/v1/tenants/{tenant}/databases"), &[], paging.limit)?,
            &["id", "name", "sync_url", "created_at"],
        ),
        DatabaseCmd::Get { tenant, id } => {
            c.object(&c.call("GET", &format!("/v1/tenants/{tenant}/databases/{id}"), None)?);
        }
        DatabaseCmd::Update { tenant, id, name, settings } => {
            let mut body = serde_json::Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(s) = settings {
                body.insert("settings".into(), serde_json::from_str(&s).context("--settings is not JSON")?);
            }
            c.object(&c.call("PATCH", &format!("/v1/tenants/{tenant}/databases/{id}"), Some(Value::Object(body)))?);
        }
        DatabaseCmd::Delete { tenant, id, confirm } => {
            let path = format!("/v1/tenants/{tenant}/databases/{id}?confirm={}", encode(&confirm));
            c.object(&c.call("DELETE", &path, None)?);
        }
        DatabaseCmd::Usage { tenant, id, range } => {
            c.object(&c.call("GET", &format!("/v1/tenants/{tenant}/databases/{id}/usage{}", range.query()), None)?);
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
            let v = c.call(
                "POST",
                &format!("/v1/tenants/{tenant}/databases/{database}/schema"),
                Some(json!({ "sql": sql, "algo": algo })),
            )?;
            c.show(&v, |v| {
                v["tables"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| format!("synced {} ({})", cell(&t["table"]), cell(&t["algo"])))
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
        KeyCmd::Create { tenant, name, scopes, expires_at } => {
            let v = c.call(
                "POST",
                &format!("/v1/tenants/{tenant}/api-keys"),
                Some(json!({ "name": name, "scopes": scopes, "expires_at": expires_at })),
            )?;
            c.show(&v, |v| format!("key {} (shown once)\n{}", cell(&v["id"]), cell(&v["key"])));
        }
        KeyCmd::List { tenant, paging } => c.table(
            &c.list(&format!("/v1/tenants/{tenant}/api-keys"), &[], paging.limit)?,
            &["id", "name", "scopes", "expires_at", "revoked_at", "last_used_at"],
        ),
        KeyCmd::Get { tenant, id } => c.object(&c.call("GET", &format!("/v1/tenants/{tenant}/api-keys/{id}"), None)?),
        KeyCmd::Revoke { tenant, id } => {
            c.object(&c.call("DELETE", &format!("/v1/tenants/{tenant}/api-keys/{id}"), None)?);
        }
    }
    Ok(())
}

pub fn identity(cmd: IdentityCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        IdentityCmd::Get { tenant } => c.object(&c.call("GET", &format!("/v1/tenants/{tenant}/identity"), None)?),
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
            c.object(&c.call("PUT", &format!("/v1/tenants/{tenant}/identity"), Some(body))?);
        }
        IdentityCmd::Delete { tenant } => {
            c.call("DELETE", &format!("/v1/tenants/{tenant}/identity"), None)?;
            c.show(&json!({ "deleted": true }), |_| "identity settings removed".into());
        }
    }
    Ok(())
}

pub fn device(cmd: DeviceCmd, c: &ClientArgs) -> Result<()> {
    let base = |t: &str, d: &str| format!("/v1/tenants/{t}/databases/{d}/devices");
    match cmd {
        DeviceCmd::List { tenant, database, paging } => c.table(
            &c.list(&base(&tenant, &database), &[], paging.limit)?,
            &["site_id", "user_id", "last_seen", "requests", "changes_in", "changes_out", "blocked_at"],
        ),
        DeviceCmd::Get { tenant, database, site } => {
            c.object(&c.call("GET", &format!("{}/{site}", base(&tenant, &database)), None)?);
        }
        DeviceCmd::Block { tenant, database, site, reason } => {
            let path = format!("{}/{site}/block", base(&tenant, &database));
            c.object(&c.call("POST", &path, Some(json!({ "reason": reason })))?);
        }
        DeviceCmd::Unblock { tenant, database, site } => {
            c.object(&c.call("POST", &format!("{}/{site}/unblock", base(&tenant, &database)), None)?);
        }
    }
    Ok(())
}

pub fn job(cmd: JobCmd, c: &ClientArgs) -> Result<()> {
    let base = |t: &str, d: &str| format!("/v1/tenants/{t}/databases/{d}/jobs");
    match cmd {
        JobCmd::List { tenant, database, state, paging } => {
            let query: Vec<(&str, String)> = state.map(|s| ("state", s)).into_iter().collect();
            c.table(
                &c.list(&base(&tenant, &database), &query, paging.limit)?,
                &["id", "state", "site_id", "attempts", "error_code", "created_at"],
            );
        }
        JobCmd::Get { tenant, database, id } => {
            c.object(&c.call("GET", &format!("{}/{id}", base(&tenant, &database)), None)?);
        }
        JobCmd::Retry { tenant, database, id } => {
            c.object(&c.call("POST", &format!("{}/{id}/retry", base(&tenant, &database)), None)?);
        }
        JobCmd::Discard { tenant, database, id } => {
            c.object(&c.call("POST", &format!("{}/{id}/discard", base(&tenant, &database)), None)?);
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
