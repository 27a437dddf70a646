//! The CLI's HTTP client of the admin API and its output: tables, objects, or the raw
//! JSON with `--json`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloudsync_protocol::ErrorBody;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// How to reach the node: flags, then environment, then what a node running with the
/// data directory recorded there ([`crate::local`]).
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Base URL of a running node [default: where the node of --data-dir listens, as
    /// it recorded in <data-dir>/server.json; otherwise http://127.0.0.1:8080].
    #[arg(long, global = true, env = "CLOUDSYNC_SERVER")]
    server: Option<String>,
    /// Admin token or tenant admin key [default: read from <data-dir>/admin-token].
    #[arg(long, global = true, env = "CLOUDSYNC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Data directory of a node on this machine, to find where it listens and its
    /// admin token.
    #[arg(long, global = true, env = "CLOUDSYNC_DATA_DIR", default_value = "cloudsync-data")]
    data_dir: PathBuf,
    /// Print the raw JSON response.
    #[arg(long, global = true)]
    json: bool,
    /// Print only this field of the answer, as plain text (for scripts:
    /// `URL=$(cloudsync database get --tenant acme notes --field sync_url)`).
    #[arg(long, global = true, conflicts_with = "json", value_name = "NAME")]
    field: Option<String>,
}

/// Where the server URL came from, for messages that say what to change.
enum Origin {
    Given,
    Recorded(PathBuf),
    Default(PathBuf),
}

/// The node's URL when nothing says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The node of `data_dir`: where it recorded it listens, or the default.
fn local_node(data_dir: &std::path::Path) -> (String, Origin) {
    let file = data_dir.join(crate::local::SERVER_FILE);
    match crate::local::read_server(data_dir) {
        Some(r) => (r.url.trim_end_matches('/').to_string(), Origin::Recorded(file)),
        None => (DEFAULT_SERVER.to_string(), Origin::Default(file)),
    }
}

impl ClientArgs {
    fn server(&self) -> (String, Origin) {
        match &self.server {
            Some(s) => (s.trim_end_matches('/').to_string(), Origin::Given),
            None => local_node(&self.data_dir),
        }
    }

    /// The admin token: given, or the one the node of the data directory keeps — read
    /// only for that node: a token is never sent to another server than its own.
    fn token(&self, server: &str, origin: &Origin) -> Result<String> {
        if let Some(t) = &self.admin_token {
            if t.trim().is_empty() {
                bail!("the admin token given by --admin-token or CLOUDSYNC_ADMIN_TOKEN is empty");
            }
            return Ok(t.trim().to_string());
        }
        let path = self.data_dir.join(crate::local::ADMIN_TOKEN_FILE);
        if matches!(origin, Origin::Given)
            && !matches!(local_node(&self.data_dir), (url, Origin::Recorded(_)) if url == server)
        {
            bail!(
                "no admin token for {server}: pass --admin-token (or set CLOUDSYNC_ADMIN_TOKEN); the token in {} \
                 belongs to the node recorded in that data directory and is not sent to another server",
                path.display()
            );
        }
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => bail!(
                "no admin token: pass --admin-token (or set CLOUDSYNC_ADMIN_TOKEN), or point --data-dir (or \
                 CLOUDSYNC_DATA_DIR) at the data directory of the node, whose admin token is in its \
                 {} file ({} cannot be read)",
                crate::local::ADMIN_TOKEN_FILE,
                path.display()
            ),
        }
    }

    /// One API call; non-2xx answers become errors with the API's code and message.
    pub(super) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (server, origin) = self.server();
        let url = format!("{server}{path}");
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let auth = format!("Bearer {}", self.token(&server, &origin)?);
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
            ("POST", b) => agent.post(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            ("PUT", b) => agent.put(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            ("PATCH", b) => agent.patch(&url).header("Authorization", &auth).send_json(b.unwrap_or(json!({}))),
            (m, _) => bail!("unsupported method {m}"),
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let (_, why) = cloudsync_protocol::transport::describe(&e, &url);
                let whence = match origin {
                    Origin::Given => "from --server or CLOUDSYNC_SERVER".to_string(),
                    Origin::Recorded(f) => format!("recorded in {} by the node, which may have stopped", f.display()),
                    Origin::Default(f) => format!("the default: no node recorded itself in {}", f.display()),
                };
                bail!(
                    "cannot reach the node at {server} ({whence}): {why}\nStart it with `cloudsync serve`, or say \
                     where it runs: --server URL (or CLOUDSYNC_SERVER), or --data-dir (or CLOUDSYNC_DATA_DIR) of \
                     the node on this machine"
                )
            }
        };
        let status = resp.status();
        let body = resp.body_mut().read_to_vec().with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let (code, msg) = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => ("unknown".into(), format!("not a cloudsync answer: is {server} a cloudsync node?")),
            };
            if status.as_u16() == 401 && self.admin_token.is_none() {
                bail!(
                    "401 {code}: {msg}\nThe token in {} is not this node's: pass --admin-token (or set \
                     CLOUDSYNC_ADMIN_TOKEN), or --data-dir of the node at {server}",
                    self.data_dir.join(crate::local::ADMIN_TOKEN_FILE).display()
                );
            }
            bail!("{} {code}: {msg}", status.as_u16());
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The API path of a tenant given by id or by name (`/v1/tenants/<id>`).
    pub(super) fn tenant_path(&self, tenant: &str) -> Result<String> {
        Ok(format!("/v1/tenants/{}", self.tenant_id(tenant)?))
    }

    /// A tenant's id, given its id or its name (names need not be unique: an
    /// ambiguous one is refused with the ids to choose from).
    pub(super) fn tenant_id(&self, tenant: &str) -> Result<String> {
        if is_id(tenant) {
            return Ok(tenant.to_string());
        }
        let all = self.list("/v1/tenants", &[], None)?;
        pick(&all, tenant, "tenant", "cloudsync tenant list")
    }

    /// The API path of a database given by id or name, in a tenant given by id or name
    /// (`/v1/tenants/<id>/databases/<id>`).
    pub(super) fn database_path(&self, tenant: &str, database: &str) -> Result<String> {
        let tenant = self.tenant_path(tenant)?;
        if is_id(database) {
            return Ok(format!("{tenant}/databases/{database}"));
        }
        let all = self.list(&format!("{tenant}/databases"), &[], None)?;
        let id = pick(&all, database, "database", "cloudsync database list --tenant …")?;
        Ok(format!("{tenant}/databases/{id}"))
    }

    /// A list: one page with `limit`, otherwise every page.
    pub(super) fn list(&self, path: &str, query: &[(&str, String)], limit: Option<u32>) -> Result<Value> {
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

    pub(super) fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if let Some(f) = &self.field {
            print_field(v, f);
        } else if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", human(v));
        }
    }

    /// Like [`Self::show`], for an answer of the protocol's type `T`: the human form
    /// reads it typed.
    pub(super) fn show_as<T: DeserializeOwned>(&self, v: &Value, human: impl FnOnce(T) -> String) -> Result<()> {
        if let Some(f) = &self.field {
            print_field(v, f);
        } else if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            let typed = T::deserialize(v).context("unexpected answer from the server")?;
            println!("{}", human(typed));
        }
        Ok(())
    }

    /// Prints a list as a table of `columns` (or the JSON with `--json`).
    pub(super) fn table(&self, v: &Value, columns: &[&str]) {
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
    pub(super) fn object(&self, v: &Value) {
        self.show(v, |v| match v.as_object() {
            Some(map) => map.iter().map(|(k, val)| format!("{k}: {}", cell(val))).collect::<Vec<_>>().join("\n"),
            None => cell(v),
        });
    }
}

/// `--field`: one field of an object, or of each item of a list, one per line. A field
/// the answer does not have ends the command with the fields it has (exit status 2).
fn print_field(v: &Value, field: &str) {
    let objects: Vec<&Value> = match v["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![v],
    };
    for o in &objects {
        match o.get(field) {
            Some(x) => println!("{}", cell(x)),
            None => {
                let have: Vec<&str> = o.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
                eprintln!("error: the answer has no field '{field}' (it has: {})", have.join(", "));
                std::process::exit(2);
            }
        }
    }
}

/// Whether `s` is an id (a UUID) rather than a name.
fn is_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// The id of the one item of `list` named `name`.
fn pick(list: &Value, name: &str, what: &str, lister: &str) -> Result<String> {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let ids: Vec<&str> = items.iter().filter(|i| i["name"] == name).filter_map(|i| i["id"].as_str()).collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_string()),
        [] => bail!("no {what} is named '{name}' (give its name or id; `{lister}` shows them)"),
        many => bail!("{} {what}s are named '{name}': give one of their ids: {}", many.len(), many.join(", ")),
    }
}

pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Percent-encodes a query value.
pub(super) fn encode(s: &str) -> String {
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
    pub(super) limit: Option<u32>,
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
    pub(super) fn query(&self) -> String {
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

/// `cloudsync check-health`: succeeds when the node answers its readiness check with
/// 2xx within 5 seconds, asking again for up to `wait` seconds. Without a URL, the node
/// of `data_dir` is asked, read again on each try (a node that is starting records
/// itself once it listens).
pub fn check_health(url: Option<&str>, data_dir: &std::path::Path, wait: u64) -> Result<()> {
    let agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(5))).build().new_agent();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let url = match url {
            Some(u) => u.to_string(),
            None => format!("{}/readyz", local_node(data_dir).0),
        };
        let outcome = match agent.get(&url).call() {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("{url} answered {}", r.status()),
            Err(e) => cloudsync_protocol::transport::describe(&e, &url).1,
        };
        if std::time::Instant::now() >= deadline {
            bail!("{outcome}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
