//! `cloudsync-bench firstsync --server <cloudsync binary> [--rows N] [--devices D]`: the
//! node's resident memory while D devices download, all at once and from the
//! beginning, a PostgreSQL table of N rows (192-byte bodies of hex digits, which compress about
//! twofold) through one node.
//!
//! Each download reads bounded chunks (`cloudsync_payload_encode_chunk`, the node's
//! 4 MiB chunk size), so the node holds about one chunk per download in flight
//! whatever the table holds. The report gives the node's resident memory before and
//! its peak (`VmHWM`) during the downloads, per download, next to the bound
//! `docs/security.md` documents. It measures; it does not assert.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// Connections the node keeps to the backend (`--postgres-pool-size`).
const POOL: u32 = 8;

/// What one device's first sync took.
#[derive(Clone, Copy, Default)]
struct Download {
    changes: u64,
    bytes: u64,
    chunks: u64,
    /// `503` answers (every connection to the backend busy), retried after
    /// `Retry-After` as the extension does.
    busy: u64,
}

/// One device's first sync: every chunk from the beginning.
fn first_sync(base: &str, key: &str, site: &str) -> Result<Download> {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut after = "0".to_string();
    let mut d = Download::default();
    loop {
        let mut r = agent
            .get(&format!("{base}/changes?site={site}&after={after}"))
            .header("Authorization", &format!("Bearer {key}"))
            .call()?;
        let status = r.status().as_u16();
        if status == 503 {
            d.busy += 1;
            let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
            std::thread::sleep(std::time::Duration::from_secs(wait));
            continue;
        }
        anyhow::ensure!(status == 200 || status == 204, "download answered {status}");
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let next = header("x-cloudsync-cursor").context("no cursor")?;
        let more = header("x-cloudsync-more").as_deref() == Some("1");
        d.changes += header("x-cloudsync-changes").and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = r.body_mut().with_config().limit(64 << 20).read_to_vec()?;
        d.bytes += body.len() as u64;
        d.chunks += 1;
        after = next;
        if !more {
            return Ok(d);
        }
    }
}

pub fn run(server: &Path, rows: usize, devices: usize) -> Result<()> {
    let mut db = crate::pg::Db::new("firstsync")?;
    db.client.batch_execute(
        "DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )?;
    let pool = POOL.to_string();
    let node = crate::node::Node::start(
        server,
        "firstsync",
        &[crate::node::UNLIMITED, &["--egress-allow", "127.0.0.1", "--postgres-pool-size", &pool]].concat(),
    )?;
    let admin = |path: &str, body: Value| node.admin(path, &body);
    let t = admin("/v1/tenants", json!({ "name": "firstsync" }))?;
    let tid = t["id"].as_str().context("tenant")?.to_string();
    let url = format!("{}?sslmode=disable", cloudsync_pg_interop::url_for(&db.name));
    let d = admin(
        &format!("/v1/tenants/{tid}/databases"),
        json!({ "name": "big", "backend": { "kind": "postgres", "url": url } }),
    )?;
    let did = d["id"].as_str().context("database")?.to_string();
    let sync_url = d["sync_url"].as_str().context("sync url")?.to_string();
    admin(
        &format!("/v1/tenants/{tid}/databases/{did}/schema"),
        json!({ "sql": "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT)" }),
    )?;
    let started = Instant::now();
    db.client.batch_execute(&format!(
        "GRANT SELECT ON notes TO authenticated; \
         INSERT INTO notes SELECT 'n' || g, md5(g::text) || md5((g * 3)::text) || md5((g * 5)::text) \
         || md5((g * 7)::text) || md5((g * 11)::text) || md5((g * 13)::text) FROM generate_series(1, {rows}) g"
    ))?;
    let load_s = started.elapsed().as_secs_f64();
    let key = admin(&format!("/v1/tenants/{tid}/api-keys"), json!({ "name": "k", "scopes": ["sync"] }))?;
    let key = key["key"].as_str().context("key")?.to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let base = node.mem("VmRSS:");

    let started = Instant::now();
    let handles: Vec<_> = (0..devices)
        .map(|i| {
            let (sync_url, key) = (sync_url.clone(), key.clone());
            std::thread::spawn(move || first_sync(&sync_url, &key, &format!("{:032x}", i + 1)))
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| anyhow::anyhow!("a device thread panicked"))??);
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = node.mem("VmHWM:");

    let complete = results.iter().filter(|d| d.changes >= rows as u64).count();
    let busy: u64 = results.iter().map(|d| d.busy).sum();
    let Download { changes, bytes, chunks, .. } = results[0];
    let per = (peak.saturating_sub(base)) as f64 / devices as f64;
    println!("### {devices} first syncs of a {rows}-row PostgreSQL table at once (one node)\n");
    println!("| measure | value |\n|---|---:|");
    println!("| rows loaded into PostgreSQL (`INSERT … SELECT`, 192-byte bodies, tracked) | {rows} in {load_s:.1} s |");
    println!("| devices that received every row | {complete} of {devices} |");
    println!("| one device: changes, bytes, chunks | {changes}, {:.1} MiB, {chunks} |", bytes as f64 / 1048576.0);
    println!("| all downloads, wall time | {secs:.1} s |");
    println!("| `503` answers retried (the backend's {POOL} connections busy) | {busy} |");
    println!("| node resident memory before | {base} MiB |");
    println!("| node peak resident memory (`VmHWM`) | {peak} MiB |");
    println!("| peak above before, per download in flight | {per:.1} MiB |");
    println!("| one device's whole download, for scale | {:.1} MiB |", bytes as f64 / 1048576.0);
    anyhow::ensure!(complete == devices, "{} devices did not receive every row", devices - complete);
    Ok(())
}
