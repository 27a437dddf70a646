//! A noisy neighbour: tenant A runs a row policy that never ends, a thousand idle
//! long-polls, a flood of uploads (from ever new devices too) and a large PostgreSQL
//! first sync, all at once,
//! while tenant B's devices keep syncing. The test asserts that B completes — every
//! round of its device, every row on its other device — and that A gets its quota
//! and budget errors (not a time limit); it prints B's sync latency under A's load
//! against B alone, from the same run (`docs/benchmarks.md`). Devices load the built
//! extension. Needs PostgreSQL with the cloudsync extension (`cargo xtask test`).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT)";

/// A's large table: 20 000 rows.
const BIG: &str = "INSERT INTO notes SELECT 'pg' || g, repeat('x', 100) FROM generate_series(1, 20000) g";

const LONG_POLLS: usize = 1000;
const A_LONG_POLL_QUOTA: usize = 300;
const ROUNDS: usize = 30;

/// B's round: a new row, synced; returns how long the sync took.
fn round(d: &mut RustDevice, n: usize) -> Duration {
    d.exec("INSERT INTO notes VALUES (?1, 'b')", &[json!(format!("b{n}"))]).unwrap();
    let started = Instant::now();
    d.sync(0).unwrap_or_else(|e| panic!("B's sync {n} failed under A's load: {e}"));
    started.elapsed()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn metric(server: &Server, line_start: &str) -> u64 {
    let (_, body) = http("GET", &format!("{}/metrics", server.url), Some(&server.token), None, &[]).unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap_or(0.0)))
        .map_or(0, |v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = v as u64;
            n
        })
}

#[test]
#[ignore = "needs the built extension and the cloudsync extension in PostgreSQL; run by cargo xtask test"]
fn a_noisy_neighbour_does_not_stop_the_others() {
    let pg = PgDb::new("neighbours", PG_BACKEND_SETUP);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        free_port(),
        &[
            "--egress-allow",
            "127.0.0.1",
            "--apply-budget-secs",
            "3",
            "--request-budget-secs",
            "10",
            "--new-sites-per-hour",
            "30",
        ],
    );

    // Tenant B: one SQLite database, a writer and a reader.
    let b = server.provision(SCHEMA);
    let mut writer = RustDevice::open("b-writer", &dir.path().join("b-writer.db"));
    writer.join(SCHEMA, &b);
    let mut reader = RustDevice::open("b-reader", &dir.path().join("b-reader.db"));
    reader.join(SCHEMA, &b);
    writer.sync(0).unwrap();
    let mut alone: Vec<Duration> = (0..ROUNDS).map(|n| round(&mut writer, n)).collect();

    // Tenant A: a SQLite database for long-polls and uploads, a PostgreSQL one with
    // the large table and the runaway policy.
    let a = server.provision(SCHEMA);
    server.put(
        &format!("/v1/tenants/{}/quotas", a.tenant),
        json!({ "long_polls": A_LONG_POLL_QUOTA, "long_polls_per_credential": A_LONG_POLL_QUOTA }),
    );
    let a_pg = server.postgres_database(&a.tenant, &a.key, "big", &pg.url, SCHEMA);
    psql(&pg.url, PG_RUNAWAY_POLICY);
    psql(&pg.url, BIG);

    let stop = Arc::new(AtomicBool::new(false));
    let flood_sent = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    // A thousand long-polls, on a database nobody writes to (a change would end them
    // early and free their places): ten devices with a key each (each key's rate limit has
    // room for its hundred at once), bound first, then waiting 20 s each.
    let idle = server.admin(&format!("/v1/tenants/{}/databases", a.tenant), json!({ "name": "idle" }));
    let idle_id = idle["id"].as_str().unwrap().to_string();
    server.admin(&format!("/v1/tenants/{}/databases/{idle_id}/schema", a.tenant), json!({ "sql": SCHEMA }));
    let idle_url = idle["sync_url"].as_str().unwrap().to_string();
    let poll_keys: Vec<String> = (0..10)
        .map(|i| {
            let k = server.admin(
                &format!("/v1/tenants/{}/api-keys", a.tenant),
                json!({ "name": format!("poller{i}"), "scopes": ["sync"] }),
            );
            let key = k["key"].as_str().unwrap().to_string();
            let status = format!("{idle_url}/status?site={:032x}", 0xa000 + i);
            assert_eq!(http("GET", &status, Some(&key), None, &[]).unwrap().0, 200);
            key
        })
        .collect();
    let polls: Vec<_> = (0..LONG_POLLS)
        .map(|i| {
            let url = format!("{idle_url}/changes?site={:032x}&after=0&wait_ms=20000", 0xa000 + i % 10);
            let key = poll_keys[i % 10].clone();
            std::thread::spawn(move || {
                let (status, body) = http("GET", &url, Some(&key), None, &[]).unwrap_or((0, Vec::new()));
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (status, v["error"]["code"].as_str().unwrap_or_default().to_string())
            })
        })
        .collect();
    // A flood of uploads: two devices uploading as fast as they can, two more
    // uploading each time from a new device (a new site id), past the cap on new site
    // ids per credential and hour.
    let flood_key =
        server.admin(&format!("/v1/tenants/{}/api-keys", a.tenant), json!({ "name": "flood", "scopes": ["sync"] }));
    let flood = Provisioned { key: flood_key["key"].as_str().unwrap().to_string(), ..a.clone() };
    for t in 0..4 {
        let (p, stop, sent, dir) =
            (flood.clone(), Arc::clone(&stop), Arc::clone(&flood_sent), dir.path().to_path_buf());
        load.push(std::thread::spawn(move || {
            let churn = t >= 2;
            let mut refused = 0;
            let mut d = RustDevice::open("a-flood", &dir.join(format!("a-flood{t}.db")));
            d.join(SCHEMA, &p);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if churn {
                    d = RustDevice::open("a-churn", &dir.join(format!("a-churn{t}-{n}.db")));
                    d.join(SCHEMA, &p);
                }
                d.exec("INSERT INTO notes VALUES (?1, 'flood')", &[json!(format!("f{t}-{n}"))]).unwrap();
                match d.exec("SELECT cloudsync_network_send_changes()", &[]) {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.contains("too_many_new_sites") => refused += 1,
                    // A's own outages under its own load (a busy store: 503) are A's;
                    // anything else is not expected.
                    Err(e) if e.contains("answered 503") => {}
                    Err(e) => panic!("A's flood: {e}"),
                }
                n += 1;
            }
            refused
        }));
    }
    // Four first syncs of the PostgreSQL table, each then writing the runaway row.
    let runaway: Vec<_> = (0..4)
        .map(|t| {
            let (p, path) = (a_pg.clone(), dir.path().join(format!("a-pg{t}.db")));
            std::thread::spawn(move || {
                let mut d = RustDevice::open("a-pg", &path);
                d.join(SCHEMA, &p);
                d.sync(0).unwrap();
                let rows = d.one("SELECT count(*) FROM notes");
                d.exec("INSERT INTO notes VALUES (?1, 'spin')", &[json!(format!("spin{t}"))]).unwrap();
                d.sync(0).unwrap();
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let v: Value =
                        serde_json::from_str(d.one("SELECT cloudsync_network_status()").as_str().unwrap()).unwrap();
                    if v["device"]["pending"] == json!(0) {
                        return (rows, v["device"]["failures"][0]["code"].as_str().unwrap_or_default().to_string());
                    }
                    assert!(Instant::now() < deadline, "A's runaway job never ended: {v}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();

    // B under A's load, once it has built up.
    std::thread::sleep(Duration::from_millis(1500));
    let mut loaded: Vec<Duration> = (ROUNDS..2 * ROUNDS).map(|n| round(&mut writer, n)).collect();
    stop.store(true, Ordering::Relaxed);

    // B completes: the reader has every row the writer wrote.
    drain(&mut [&mut writer as &mut dyn Device]);
    reader.sync(0).unwrap();
    reader.sync(0).unwrap();
    let got = reader.one("SELECT count(*) FROM notes WHERE body = 'b'");
    assert_eq!(got, json!(2 * ROUNDS), "B's reader misses rows");

    // A gets its errors: long-polls past its quota, runaway applies past their budget,
    // uploads past its rate limit; the large first syncs complete.
    for (rows, code) in runaway.into_iter().map(|h| h.join().unwrap()) {
        assert_eq!(rows, json!(20_000), "A's first sync of the PostgreSQL table");
        assert_eq!(code, "time_budget_exceeded");
    }
    let churn_refused: u32 = load.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(churn_refused > 0, "A's new devices were never refused");
    let answers: Vec<(u16, String)> = polls.into_iter().map(|h| h.join().unwrap()).collect();
    let refused = answers.iter().filter(|(s, c)| *s == 429 && c == "too_many_long_polls").count();
    let waited = answers.iter().filter(|(s, _)| *s == 200 || *s == 204).count();
    assert_eq!(
        refused + waited,
        LONG_POLLS,
        "{:?}",
        answers.iter().filter(|(s, _)| ![200, 204, 429].contains(s)).take(5).collect::<Vec<_>>()
    );
    assert!(refused >= LONG_POLLS - A_LONG_POLL_QUOTA - 100, "only {refused} long-polls refused");
    assert!(metric(&server, "cloudsync_quota_hits_total{quota=\"long_polls\"}") > 0);
    assert!(metric(&server, "cloudsync_quota_hits_total{quota=\"new_sites_per_hour\"}") > 0);

    let (a50, a99) = (percentile(&mut alone, 0.5), percentile(&mut alone, 0.99));
    let (l50, l99) = (percentile(&mut loaded, 0.5), percentile(&mut loaded, 0.99));
    println!(
        "noisy neighbour: B's sync p50 {:.1} ms alone, {:.1} ms under A's load (ratio {:.2}); p99 {:.1} / {:.1} ms \
         (ratio {:.2}); A: {refused} long-polls refused, {} uploads sent, {churn_refused} new devices refused",
        a50.as_secs_f64() * 1e3,
        l50.as_secs_f64() * 1e3,
        l50.as_secs_f64() / a50.as_secs_f64(),
        a99.as_secs_f64() * 1e3,
        l99.as_secs_f64() * 1e3,
        l99.as_secs_f64() / a99.as_secs_f64(),
        flood_sent.load(Ordering::Relaxed),
    );
}
