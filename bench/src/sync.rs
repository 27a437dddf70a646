//! `cloudsync-bench sync --server <cloudsync binary>`: devices syncing through one
//! service node on this machine.
//!
//! 1. **Apply throughput**: `--devices` devices each write `--rows` rows of 4 columns
//!    and upload them; the report gives changed cells applied per second by the central
//!    database, from the first upload until the job queue is empty.
//! 2. **Propagation latency**: `--listeners` devices long-poll the node; one device
//!    writes a row and sends it, `--writes` times; the report gives the time from the
//!    write until each listener has applied it (p50, p90, p99, max).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::Connection;
use serde_json::{json, Value};

const SCHEMA: &str = "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER, b TEXT, c REAL, d BLOB)";

struct Node {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(server: &Path, dir: &Path) -> Result<Node> {
    let mut child = Command::new(server)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The simulated devices share one key: the rate limits would measure
        // themselves, not the service.
        .args(crate::node::UNLIMITED)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().context("stdout")?));
    let line = lines.next().context("the server printed nothing")??;
    // The rest of its banner (and anything later) is drained, so the server never
    // writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = line.split("http://").nth(1).context("no address in the server's first line")?.trim().to_string();
    let token = std::fs::read_to_string(dir.join("admin-token"))?.trim().to_string();
    Ok(Node { child, url: format!("http://{addr}"), token })
}

fn admin(node: &Node, path: &str, body: Value) -> Result<Value> {
    let mut resp = ureq::post(&format!("{}{path}", node.url))
        .header("Authorization", &format!("Bearer {}", node.token))
        .send_json(&body)?;
    Ok(resp.body_mut().read_json()?)
}

struct Target {
    url: String,
    key: String,
}

fn provision(node: &Node) -> Result<Target> {
    let t = admin(node, "/v1/tenants", json!({ "name": "bench" }))?;
    let tid = t["id"].as_str().context("tenant id")?;
    let db = admin(
        node,
        &format!("/v1/tenants/{tid}/databases"),
        json!({ "name": "bench", "backend": { "kind": "sqlite" } }),
    )?;
    let did = db["id"].as_str().context("database id")?;
    admin(node, &format!("/v1/tenants/{tid}/databases/{did}/schema"), json!({ "sql": SCHEMA }))?;
    let k = admin(node, &format!("/v1/tenants/{tid}/api-keys"), json!({ "name": "bench", "scopes": ["sync"] }))?;
    Ok(Target {
        url: db["sync_url"].as_str().context("sync_url")?.to_string(),
        key: k["key"].as_str().context("key")?.to_string(),
    })
}

fn device(path: &Path, target: &Target) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    cloudsync_sqlite::register(&c)?;
    c.execute_batch(SCHEMA)?;
    c.query_row("SELECT cloudsync_init('t')", [], |_| Ok(()))?;
    c.query_row("SELECT cloudsync_network_init(?1)", [&target.url], |_| Ok(()))?;
    c.query_row("SELECT cloudsync_network_set_apikey(?1)", [&target.key], |_| Ok(()))?;
    Ok(c)
}

fn json_of(c: &Connection, sql: &str) -> Result<Value> {
    let text: String = c.query_row(sql, [], |r| r.get(0))?;
    Ok(serde_json::from_str(&text)?)
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=1).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let n = sorted.len();
    let rank = (1..=n).find(|&k| k as f64 >= p * n as f64).unwrap_or(n);
    sorted[rank.max(1) - 1]
}

pub fn run(server: &Path, devices: usize, rows: usize, listeners: usize, writes: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cloudsync-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let node = start(server, &dir.join("node"))?;
    let target = provision(&node)?;

    // 1. Apply throughput.
    let mut conns = Vec::new();
    for i in 0..devices {
        let c = device(&dir.join(format!("writer{i}.db")), &target)?;
        c.execute_batch("BEGIN")?;
        {
            let mut ins = c.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for r in 0..rows {
                let id = format!("d{i:03}-r{r:06}");
                let n = i64::try_from(r)?;
                let byte = u8::try_from(r % 251)?;
                ins.execute(rusqlite::params![id, n, format!("text value {r:08}"), r as f64 / 7.0, vec![byte; 16]])?;
            }
        }
        c.execute_batch("COMMIT")?;
        conns.push(c);
    }
    let started = Instant::now();
    for c in &conns {
        json_of(c, "SELECT cloudsync_network_send_changes()")?;
    }
    let uploaded = started.elapsed();
    for c in &conns {
        loop {
            let s = json_of(c, "SELECT cloudsync_network_status()")?;
            if s["device"]["pending"] == json!(0) {
                if !s["device"]["failures"].as_array().is_none_or(Vec::is_empty) {
                    bail!("uploads failed: {s}");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let applied = started.elapsed();
    let cells = (devices * rows * 4) as f64;
    drop(conns);

    // 2. Propagation latency with long-polling listeners.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(usize, String, Instant)>();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    for l in 0..listeners {
        let c = device(&dir.join(format!("listener{l}.db")), &target)?;
        // Catch up with phase 1 before measuring, and checkpoint the WAL that grew, so
        // the measurement does not include a hundred catch-up checkpoints at once.
        json_of(&c, "SELECT cloudsync_network_check_changes()")?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let stop = Arc::clone(&stop);
        let tx = tx.clone();
        let ready = ready_tx.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut seen = std::collections::HashSet::new();
            let _ = ready.send(());
            while !stop.load(Ordering::Relaxed) {
                let got = json_of(&c, "SELECT cloudsync_network_check_changes(2000)")?;
                if got["changes"].as_u64().unwrap_or(0) > 0 {
                    let now = Instant::now();
                    let mut s = c.prepare("SELECT id FROM t WHERE id LIKE 'lat-%'")?;
                    let ids: Vec<String> = s.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                    for id in ids {
                        if seen.insert(id.clone()) {
                            let _ = tx.send((l, id, now));
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    drop(tx);
    for _ in 0..listeners {
        ready_rx.recv()?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let writer = device(&dir.join("latency-writer.db"), &target)?;
    let mut written = Vec::new();
    for w in 0..writes {
        let id = format!("lat-{w:05}");
        let t0 = Instant::now();
        writer.execute("INSERT INTO t (id, a) VALUES (?1, ?2)", rusqlite::params![id, i64::try_from(w)?])?;
        json_of(&writer, "SELECT cloudsync_network_send_changes()")?;
        written.push((id, t0));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Collect until every listener has every write (or 10 s after the last).
    let expected = listeners * writes;
    let mut lat = Vec::with_capacity(expected);
    let mut per_write: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lat.len() < expected && Instant::now() < deadline {
        if let Ok((_, id, at)) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some((_, t0)) = written.iter().find(|(w, _)| *w == id) {
                let ms = at.duration_since(*t0).as_secs_f64() * 1000.0;
                lat.push(ms);
                let worst = per_write.entry(id).or_default();
                *worst = worst.max(ms);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    lat.sort_by(f64::total_cmp);
    if std::env::var("CLOUDSYNC_BENCH_DEBUG").is_ok() {
        let mut w: Vec<(String, f64)> = per_write.into_iter().collect();
        w.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!("slowest writes: {:?}", &w[..w.len().min(8)]);
    }
    let missing = expected - lat.len();

    println!("### Sync through one node (N = {devices} devices × {rows} rows, {listeners} listeners)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| changed cells uploaded | {cells} |");
    println!("| upload phase (all devices, sequential) | {:.0} ms |", uploaded.as_secs_f64() * 1000.0);
    println!(
        "| **applied centrally, cells per second** (first upload → queue empty) | **{:.0}** |",
        cells / applied.as_secs_f64()
    );
    println!("| propagation samples (writes × listeners) | {} (missing: {missing}) |", lat.len());
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        println!("| write on A → applied on B, {name} | {:.1} ms |", percentile(&lat, p));
    }
    println!();
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    if missing > 0 {
        bail!("{missing} propagations never arrived");
    }
    Ok(())
}
