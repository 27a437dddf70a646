//! `cloudsync-bench fleet --server <cloudsync binary>`: a fleet of device processes
//! doing random inserts, updates and deletes on three tables and syncing every few
//! hundred milliseconds, against one node, while faults are injected: the node is
//! SIGKILLed and restarted, its payload folder is made unusable for a few seconds, and
//! device processes are SIGKILLed mid-sync and restarted on the same database file.
//!
//! At the end every device syncs until the queue is drained and a sync brings nothing;
//! the report counts the devices that differ from the central database, the jobs not
//! `done`, the errors devices saw (retryable or not) and the sync latencies
//! (`docs/reliability.md`). It measures; the caller decides what is acceptable
//! (`--check` fails the run on any divergence, dead or stuck job, or non-retryable
//! error).
//!
//! Each device is this binary again (`fleet-device`), with the engine linked in
//! (`cloudsync_sqlite::register`), writing one line per sync to its stats file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rusqlite::Connection;
use serde_json::{json, Value};

const TABLES: [(&str, &str); 3] = [
    ("lists", "CREATE TABLE lists (id TEXT PRIMARY KEY NOT NULL, name TEXT, color INTEGER)"),
    ("todos", "CREATE TABLE todos (id TEXT PRIMARY KEY NOT NULL, list TEXT, title TEXT, done INTEGER)"),
    ("notes", "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT, n REAL)"),
];

/// What the fleet is asked to do.
pub struct Options {
    pub devices: usize,
    pub seconds: u64,
    pub faults: bool,
    pub check: bool,
}

struct Node {
    child: Child,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    token: String,
}

impl Node {
    fn start(bin: &Path, dir: &Path, port: u16) -> Result<Node> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--chunk-bytes", "16384"])
            .args(crate::node::UNLIMITED)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().context("stdout")?));
        lines.next().context("the server printed nothing")??;
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(dir.join("admin-token"))?.trim().to_string();
        Ok(Node { child, bin: bin.to_path_buf(), dir: dir.to_path_buf(), port, token })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) -> Result<()> {
        self.kill9();
        *self = Node::start(&self.bin.clone(), &self.dir.clone(), self.port)?;
        Ok(())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.url());
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let auth = format!("Bearer {}", self.token);
        let mut resp = match body {
            Some(b) => agent.post(&url).header("Authorization", &auth).send_json(&b)?,
            None if method == "GET" => agent.get(&url).header("Authorization", &auth).call()?,
            None => bail!("unsupported call"),
        };
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

/// A device process of the fleet.
struct DeviceProc {
    child: Child,
    args: Vec<String>,
}

fn spawn_device(args: &[String]) -> Result<DeviceProc> {
    let child = Command::new(std::env::current_exe()?)
        .arg("fleet-device")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(DeviceProc { child, args: args.to_vec() })
}

pub fn run(server: &Path, o: &Options) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cloudsync-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let node = Arc::new(Mutex::new(Node::start(server, &dir.join("node"), free_port()?)?));
    let (sync_url, key, tenant, database) = {
        let n = node.lock().map_err(|_| anyhow::anyhow!("node lock"))?;
        let t = n.call("POST", "/v1/tenants", Some(json!({ "name": "fleet" })))?;
        let tid = t["id"].as_str().context("tenant id")?.to_string();
        let db = n.call(
            "POST",
            &format!("/v1/tenants/{tid}/databases"),
            Some(json!({ "name": "fleet", "backend": { "kind": "sqlite" } })),
        )?;
        let did = db["id"].as_str().context("database id")?.to_string();
        let schema: String = TABLES.iter().map(|(_, ddl)| format!("{ddl};")).collect();
        n.call("POST", &format!("/v1/tenants/{tid}/databases/{did}/schema"), Some(json!({ "sql": schema })))?;
        let k = n.call(
            "POST",
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(json!({ "name": "fleet", "scopes": ["sync"] })),
        )?;
        (
            db["sync_url"].as_str().context("sync_url")?.to_string(),
            k["key"].as_str().context("key")?.to_string(),
            tid,
            did,
        )
    };
    let central = dir.join("node/databases").join(format!("{database}.sqlite"));
    let until = now_ms() + o.seconds * 1000;
    let mut procs = Vec::new();
    for i in 0..o.devices {
        let args = vec![
            sync_url.clone(),
            key.clone(),
            dir.join(format!("device{i}.sqlite")).display().to_string(),
            dir.join(format!("device{i}.stats")).display().to_string(),
            (i * 7919 + 1).to_string(),
            until.to_string(),
        ];
        procs.push(spawn_device(&args)?);
    }
    let procs = Arc::new(Mutex::new(procs));

    // Faults, one kind after the other, until the end of the run.
    let (server_kills, store_outages, device_kills) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        if o.faults {
            s.spawn(|| -> Result<()> {
                let mut round = 0u64;
                while !done.load(Ordering::SeqCst) && now_ms() + 4000 < until {
                    std::thread::sleep(Duration::from_millis(2500));
                    match round % 3 {
                        0 => {
                            let mut n = node.lock().map_err(|_| anyhow::anyhow!("node lock"))?;
                            n.kill9();
                            std::thread::sleep(Duration::from_millis(700));
                            n.restart()?;
                            server_kills.fetch_add(1, Ordering::SeqCst);
                        }
                        1 => {
                            // The payload folder becomes a file: every read and write
                            // of a payload fails until it is back.
                            let folder = dir.join("node/payloads");
                            let aside = dir.join("node/payloads.aside");
                            std::fs::rename(&folder, &aside)?;
                            std::fs::write(&folder, b"not a folder")?;
                            std::thread::sleep(Duration::from_millis(3000));
                            std::fs::remove_file(&folder)?;
                            std::fs::rename(&aside, &folder)?;
                            store_outages.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            let mut p = procs.lock().map_err(|_| anyhow::anyhow!("device lock"))?;
                            let n = p.len();
                            for k in 0..n.div_ceil(5) {
                                let victim = (usize::try_from(round).unwrap_or(0) * 31 + k * 17) % n;
                                let _ = p[victim].child.kill();
                                let _ = p[victim].child.wait();
                                let args = p[victim].args.clone();
                                p[victim] = spawn_device(&args)?;
                                device_kills.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    round += 1;
                }
                Ok(())
            });
        }
        // Wait for the devices' own deadline.
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let mut p = procs.lock().map_err(|_| anyhow::anyhow!("device lock"))?;
            if now_ms() > until && p.iter_mut().all(|d| d.child.try_wait().ok().flatten().is_some()) {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
        Ok(())
    })?;

    // Settle: every device syncs until its uploads are applied and nothing comes.
    let mut devices = Vec::new();
    for i in 0..o.devices {
        let c = open_device(&dir.join(format!("device{i}.sqlite")), &sync_url, &key)?;
        devices.push(c);
    }
    for c in &devices {
        settle(c)?;
    }
    for c in &devices {
        sync_once(c)?;
    }
    let n = node.lock().map_err(|_| anyhow::anyhow!("node lock"))?;
    let mut jobs = std::collections::BTreeMap::<String, u64>::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = n.call("GET", &format!("/v1/tenants/{tenant}/databases/{database}/jobs?limit=200{q}"), None)?;
        for j in page["items"].as_array().into_iter().flatten() {
            *jobs.entry(j["state"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let mut divergent = 0;
    let mut rows = Vec::new();
    for (table, _) in TABLES {
        let want = table_json(&Connection::open(&central)?, table)?;
        rows.push(want.as_array().map_or(0, Vec::len));
        for c in &devices {
            if table_json(c, table)? != want {
                divergent += 1;
            }
        }
    }

    // What the devices saw.
    let (mut ok, mut retryable, mut fatal, mut ops) = (Vec::new(), 0u64, Vec::new(), 0u64);
    for i in 0..o.devices {
        let text = std::fs::read_to_string(dir.join(format!("device{i}.stats"))).unwrap_or_default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ok"), Some(ms), _) => ok.push(ms.parse::<f64>().unwrap_or(f64::NAN)),
                (Some("ops"), Some(n), _) => ops += n.parse::<u64>().unwrap_or(0),
                (Some("retryable"), _, _) => retryable += 1,
                (Some("error"), _, rest) => fatal.push(rest.unwrap_or("").to_string()),
                _ => {}
            }
        }
    }
    ok.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::sync::percentile(&ok, p);
    let seconds = Duration::from_secs(o.seconds).as_secs_f64();
    let not_done: u64 = jobs.iter().filter(|(s, _)| s.as_str() != "done").map(|(_, n)| n).sum();
    println!(
        "### Fleet with faults ({} devices, {} s{})\n",
        o.devices,
        o.seconds,
        if o.faults { ", faults injected" } else { ", no faults" }
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| devices (processes) | {} |", o.devices);
    println!("| operations (insert/update/delete, in transactions) | {ops} |");
    println!("| operations per second, whole fleet | {:.0} |", ops as f64 / seconds);
    println!("| syncs completed | {} |", ok.len());
    println!(
        "| sync latency (send + receive) p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "| faults: node SIGKILLs / payload-store outages (3 s) / device SIGKILLs | {} / {} / {} |",
        server_kills.load(Ordering::SeqCst),
        store_outages.load(Ordering::SeqCst),
        device_kills.load(Ordering::SeqCst)
    );
    println!("| syncs that failed with a retryable error (after the extension's own retries) | {retryable} |");
    println!("| syncs that failed with a non-retryable error | {} |", fatal.len());
    println!("| jobs by state | {} |", jobs.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", "));
    println!(
        "| rows centrally (lists / todos / notes) | {} |",
        rows.iter().map(usize::to_string).collect::<Vec<_>>().join(" / ")
    );
    println!("| **device tables differing from the central database** | **{divergent}** |");
    println!();
    drop(n);
    drop(devices);
    if o.check && (divergent > 0 || not_done > 0 || !fatal.is_empty()) {
        bail!("{divergent} divergent device tables, {not_done} jobs not done, non-retryable errors: {fatal:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn open_device(path: &Path, url: &str, key: &str) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    c.execute_batch("PRAGMA journal_mode = WAL")?;
    cloudsync_sqlite::register(&c)?;
    let fresh: i64 = c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'lists'", [], |r| r.get(0))?;
    if fresh == 0 {
        for (name, ddl) in TABLES {
            c.execute_batch(ddl)?;
            c.query_row("SELECT cloudsync_init(?1)", [name], |_| Ok(()))?;
        }
        c.query_row("SELECT cloudsync_network_init(?1)", [url], |_| Ok(()))?;
    }
    // The credential lives in memory, per connection.
    c.query_row("SELECT cloudsync_network_set_apikey(?1)", [key], |_| Ok(()))?;
    Ok(c)
}

fn sync_once(c: &Connection) -> Result<Value> {
    let text: String = c.query_row("SELECT cloudsync_network_sync(0, 8)", [], |r| r.get(0))?;
    Ok(serde_json::from_str(&text)?)
}

/// Syncs until this device's uploads are applied and a sync brings nothing new.
fn settle(c: &Connection) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = sync_once(c)?;
        let status: String = c.query_row("SELECT cloudsync_network_status()", [], |r| r.get(0))?;
        let status: Value = serde_json::from_str(&status)?;
        let quiet = v["receive"]["received"] == json!(0);
        if status["device"]["pending"] == json!(0) && quiet {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("a device did not settle: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn table_json(c: &Connection, table: &str) -> Result<Value> {
    let text: String = c.query_row(
        &format!("SELECT coalesce(json_group_array(json(x)), '[]') FROM (SELECT json_array(*) AS x FROM (SELECT * FROM {table} ORDER BY id))"),
        [],
        |r| r.get(0),
    )?;
    Ok(serde_json::from_str(&text)?)
}

/// `fleet-device URL KEY DB STATS SEED UNTIL_MS`: one device of the fleet.
pub fn device(args: &[String]) -> Result<()> {
    let [url, key, db, stats, seed, until] = args else { bail!("fleet-device URL KEY DB STATS SEED UNTIL_MS") };
    let until: u64 = until.parse()?;
    let mut rng: u64 = seed.parse::<u64>()? | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let c = open_device(Path::new(db), url, key)?;
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(stats)?;
    let mut ops = 0u64;
    let mut last_sync = Instant::now();
    while now_ms() < until {
        // A transaction of one to three random operations.
        c.execute_batch("BEGIN")?;
        for _ in 0..=next(3) {
            let (table, _) = TABLES[usize::try_from(next(3)).unwrap_or(0)];
            let existing: Option<String> =
                c.query_row(&format!("SELECT id FROM {table} ORDER BY random() LIMIT 1"), [], |r| r.get(0)).ok();
            let r = next(100);
            let v = i64::try_from(next(1000)).unwrap_or(0);
            match (existing, r) {
                (Some(id), 0..=14) => {
                    c.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])?;
                }
                (Some(id), 15..=49) => {
                    let sql = match table {
                        "lists" => "UPDATE lists SET color = ?2 WHERE id = ?1",
                        "todos" => "UPDATE todos SET done = ?2 % 2, title = 'edited ' || ?2 WHERE id = ?1",
                        _ => "UPDATE notes SET n = ?2 / 7.0 WHERE id = ?1",
                    };
                    c.execute(sql, rusqlite::params![id, v])?;
                }
                _ => {
                    // A new UUIDv7 each (a restarted device must not reuse ids).
                    let sql = match table {
                        "lists" => "INSERT INTO lists VALUES (cloudsync_uuid(), 'list ' || ?1, ?1)",
                        "todos" => "INSERT INTO todos VALUES (cloudsync_uuid(), NULL, 'todo ' || ?1, 0)",
                        _ => "INSERT INTO notes VALUES (cloudsync_uuid(), 'note ' || ?1, ?1 / 3.0)",
                    };
                    c.execute(sql, rusqlite::params![v])?;
                }
            }
            ops += 1;
        }
        c.execute_batch("COMMIT")?;
        if last_sync.elapsed() >= Duration::from_millis(200 + next(300)) {
            let t0 = Instant::now();
            let line = match sync_once(&c) {
                Ok(_) => format!("ok {:.1}\n", t0.elapsed().as_secs_f64() * 1000.0),
                Err(e) => {
                    let text = e.to_string();
                    // The harness sorts failures by the status the extension reports.
                    // (`cloudsync: <code>: …`: no HTTP answer, or `… answered <status>: …`).
                    let retryable = [
                        "server_unreachable:",
                        "connection_closed:",
                        "dns_failed:",
                        "timeout:",
                        "network_error:",
                        "bad_response:",
                    ]
                    .iter()
                    .any(|c| text.contains(&format!("cloudsync: {c}")))
                        || ["408", "429", "500", "502", "503", "504"]
                            .iter()
                            .any(|s| text.contains(&format!(" answered {s}: ")));
                    format!("{} 0 {}\n", if retryable { "retryable" } else { "error" }, text.replace('\n', " "))
                }
            };
            out.write_all(format!("ops {ops}\n{line}").as_bytes())?;
            out.flush()?;
            ops = 0;
            last_sync = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    out.write_all(format!("ops {ops}\n").as_bytes())?;
    Ok(())
}
