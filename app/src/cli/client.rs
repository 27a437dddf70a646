//! The CLI's HTTP client of the admin API and its output: tables, objects, or the raw
//! JSON with `--json`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloudsync_protocol::ErrorBody;
use serde::de::DeserializeOwned;
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
    pub(super) fn token(&self) -> Result<String> {
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
    pub(super) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
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
        let body = resp.body_mut().read_to_vec().with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let (code, msg) = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => ("unknown".into(), "no message".into()),
            };
            bail!("{} {code}: {msg}", status.as_u16());
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
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
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", human(v));
        }
    }

    /// Like [`Self::show`], for an answer of the protocol's type `T`: the human form
    /// reads it typed.
    pub(super) fn show_as<T: DeserializeOwned>(&self, v: &Value, human: impl FnOnce(T) -> String) -> Result<()> {
        if self.json {
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
