//! The operator CLI: every admin-API action as a subcommand, a client of a running
//! node, with `--json` for the raw response. Lists follow `next_cursor` to the end
//! unless `--limit` asks for one page.

mod client;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use client::{cell, encode, Paging, Range};
pub use client::{check_health, ClientArgs};

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
    /// Create a database: a SQLite file managed by the service, or with --postgres-url
    /// the tenant's own PostgreSQL (with the cloudsync extension).
    Create {
        /// Owning tenant id.
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
        #[arg(long)]
        tenant: String,
        /// Database id.
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
        /// Show what would be run and synced, and keep nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List a database's synced tables.
    Tables {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Database id.
        #[arg(long)]
        database: String,
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
        DatabaseCmd::Create { tenant, name, postgres_url, schema } => {
            let backend = match postgres_url {
                Some(url) => {
                    json!({ "kind": "postgres", "url": url, "schema": schema.unwrap_or_else(|| "public".into()) })
                }
                None => json!({ "kind": "sqlite" }),
            };
            let v = c.call(
                "POST",
                &format!("/v1/tenants/{tenant}/databases"),
                Some(json!({ "name": name, "backend": backend })),
            )?;
            c.show(&v, |v| format!("database {}\nsync_url {}", cell(&v["id"]), cell(&v["sync_url"])));
        }
        DatabaseCmd::Policy { tenant, database, table, read, write } => {
            let path = format!("/v1/tenants/{tenant}/databases/{database}/tables/{}/policy", encode(&table));
            let v = c.call("PUT", &path, Some(json!({ "read": read, "write": write })))?;
            c.object(&v["settings"]["tables"][&table]);
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
        SchemaCmd::Apply { tenant, database, file, algos, dry_run } => {
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
                &format!("/v1/tenants/{tenant}/databases/{database}/schema?dry_run={dry_run}"),
                Some(json!({ "sql": sql, "algo": algo })),
            )?;
            let verb = if dry_run { "would sync" } else { "synced" };
            c.show(&v, |v| {
                let mut lines: Vec<String> = Vec::new();
                if dry_run {
                    lines.extend(v["statements"].as_array().into_iter().flatten().map(|s| format!("{};", cell(s))));
                }
                lines.extend(
                    v["tables"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| format!("{verb} {} ({})", cell(&t["table"]), cell(&t["algo"]))),
                );
                lines.join("\n")
            });
        }
        SchemaCmd::Tables { tenant, database } => {
            let v = c.call("GET", &format!("/v1/tenants/{tenant}/databases/{database}/tables"), None)?;
            c.show(&v, |v| {
                v["tables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        format!(
                            "{}\t{}\t{} rows\tkey ({})\t{}",
                            cell(&t["table"]),
                            cell(&t["algo"]),
                            cell(&t["rows"]),
                            t["key"].as_array().into_iter().flatten().map(cell).collect::<Vec<_>>().join(", "),
                            if t["enabled"].as_bool() == Some(false) { "disabled" } else { "enabled" },
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
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

/// `cloudsync translate-ddl [FILE] [--json]`: the PostgreSQL DDL for a SQLite schema,
/// on standard output; notes about tables on standard error; every refused construct
/// in the error.
pub fn translate_ddl(file: Option<&std::path::Path>, as_json: bool) -> Result<()> {
    let sql = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
    };
    let t = cloudsync_core::ddl::translate(&sql)?;
    if as_json {
        let tables: Vec<Value> = t
            .tables
            .iter()
            .map(|x| json!({"table": x.name, "key": x.key, "rowid_key": x.rowid_key, "unsynced": x.unsynced}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"statements": t.statements, "tables": tables}))?);
        return Ok(());
    }
    for x in &t.tables {
        if let Some(why) = &x.unsynced {
            eprintln!("note: table \"{}\" cannot be synced: {why}", x.name);
        } else if x.rowid_key {
            eprintln!(
                "note: table \"{}\" is keyed by SQLite's rowid: devices assign its ids, which must then be unique \
                 across devices (cloudsync_init flag 1)",
                x.name
            );
        }
    }
    print!("{}", t.script());
    Ok(())
}
