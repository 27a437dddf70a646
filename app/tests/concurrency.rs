//! Many devices at once, on both backend kinds: writers (Rust and Python processes on
//! the built extension) insert, update and delete rows of two tables in transactions and
//! send them while readers download continuously, some long-polling, through a server
//! whose download chunks hold only a few rows. No fault is injected. When the writers
//! stop and every upload is applied, each device syncs to the end and must then hold
//! exactly the central database's rows: every device receives every row.
//!
//! Before the cursor protocol of `cloudsync_core::feed`, readers of this test ended a few
//! rows short, or with rows missing columns (issue "every device receives every row").

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::{json, Value};
use support::*;

/// Every request served (no rate limits), download chunks of about a kilobyte (many
/// checkpoints partway through a pass), backends on this machine.
const SERVE_FLAGS: &[&str] =
    &["--rate-limit", "0", "--quota-requests-per-second", "0", "--chunk-bytes", "1024", "--egress-allow", "127.0.0.1"];

const TABLES: [(&str, &str); 2] = [
    ("events", "CREATE TABLE events (id TEXT PRIMARY KEY NOT NULL, kind TEXT, n INTEGER)"),
    ("items", "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, label TEXT, qty INTEGER)"),
];
const WRITERS: usize = 4;
const READERS: usize = 4;
const ROUNDS: usize = 30;

fn join(d: &mut dyn Device, sync_url: &str, key: &str) {
    for (name, ddl) in TABLES {
        d.sql(ddl);
        d.sql(&format!("SELECT cloudsync_init('{name}')"));
    }
    d.exec("SELECT cloudsync_network_init(?1)", &[json!(sync_url)]).unwrap();
    d.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(key)]).unwrap();
}

fn device(name: &str, dir: &std::path::Path, python: bool) -> Box<dyn Device + Send> {
    let path = dir.join(format!("{name}.sqlite"));
    if python {
        Box::new(PyDevice::open(name, &path))
    } else {
        Box::new(RustDevice::open(name, &path))
    }
}

/// A device's rows of `table`, as the JSON array the central database is read into.
fn rows_of(d: &mut dyn Device, table: &str) -> Value {
    let (a, b) = if table == "events" { ("kind", "n") } else { ("label", "qty") };
    let text = d.one(&format!(
        "SELECT coalesce(json_group_array(json_object('id', id, '{a}', {a}, '{b}', {b})), '[]') \
         FROM (SELECT * FROM {table} ORDER BY id)"
    ));
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

/// One writer's round: a transaction on both tables (an insert each, an update of an
/// older row, now and then a delete), then a send.
fn write(d: &mut dyn Device, w: usize, i: usize) {
    d.sql("BEGIN");
    d.sql(&format!("INSERT INTO events VALUES ('w{w}-e{i}', 'k{}', {i})", i % 3));
    d.sql(&format!("INSERT INTO items VALUES ('w{w}-i{i}', 'l{i}', {i})"));
    d.sql(&format!("UPDATE items SET qty = qty + 1 WHERE id = 'w{w}-i{}'", i / 2));
    if i % 7 == 6 {
        d.sql(&format!("DELETE FROM events WHERE id = 'w{w}-e{}'", i - 4));
    }
    d.sql("COMMIT");
    d.sql("SELECT cloudsync_network_send_changes()");
}

/// Runs the fleet against a provisioned database; `central(table)` reads the central
/// rows. Returns how many rows each table ended with.
fn fleet(sync_url: &str, key: &str, central: &dyn Fn(&str) -> Value) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(WRITERS + READERS));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut d = device(&format!("writer{w}"), dir.path(), w % 2 == 1);
        join(d.as_mut(), sync_url, key);
        let start = Arc::clone(&start);
        writers.push(thread::spawn(move || {
            start.wait();
            for i in 0..ROUNDS {
                write(d.as_mut(), w, i);
            }
            d
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let mut d = device(&format!("reader{r}"), dir.path(), r % 2 == 1);
        join(d.as_mut(), sync_url, key);
        let (start, stop) = (Arc::clone(&start), Arc::clone(&stop));
        // Half of the readers long-poll, the others poll as fast as they can.
        let wait = if r < READERS / 2 { 400 } else { 0 };
        readers.push(thread::spawn(move || {
            start.wait();
            while !stop.load(Ordering::SeqCst) {
                d.sql(&format!("SELECT cloudsync_network_check_changes({wait})"));
            }
            d
        }));
    }
    let mut devices: Vec<Box<dyn Device + Send>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    devices.extend(readers.into_iter().map(|h| h.join().unwrap()));

    // Every upload applied, none failed.
    {
        let mut refs: Vec<&mut dyn Device> = devices.iter_mut().map(|d| d.as_mut() as &mut dyn Device).collect();
        drain(&mut refs);
    }
    for d in &mut devices {
        let status: Value = serde_json::from_str(d.one("SELECT cloudsync_network_status()").as_str().unwrap()).unwrap();
        assert!(status["device"]["failures"].as_array().is_none_or(Vec::is_empty), "{}: {status}", d.name());
    }
    // Each device syncs to the end: until a sync brings nothing.
    for d in &mut devices {
        for _ in 0..5 {
            let v = d.sync(0).unwrap();
            if v["receive"]["changes"] == json!(0) && v["receive"]["received"] == json!(0) {
                break;
            }
        }
    }
    let mut counts = Vec::new();
    for (table, _) in TABLES {
        let want = central(table);
        counts.push(want.as_array().unwrap().len());
        for d in &mut devices {
            assert_eq!(rows_of(d.as_mut(), table), want, "{} differs from the central {table}", d.name());
        }
    }
    counts
}

/// Rows each table must end with: every writer's inserts, minus the deleted events.
fn expected() -> Vec<usize> {
    let deleted = (0..ROUNDS).filter(|i| i % 7 == 6).count();
    vec![WRITERS * (ROUNDS - deleted), WRITERS * ROUNDS]
}

#[test]
#[ignore = "needs the built extension (CLOUDSYNC_EXTENSION); run by cargo xtask test"]
fn every_device_receives_every_row_sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), SERVE_FLAGS);
    let schema: String = TABLES.iter().map(|(_, ddl)| format!("{ddl};")).collect();
    let p = server.provision(&schema);
    let central = |table: &str| {
        let (a, b) = if table == "events" { ("kind", "n") } else { ("label", "qty") };
        let rows = file_rows(
            &p.central,
            &format!(
                "SELECT coalesce(json_group_array(json_object('id', id, '{a}', {a}, '{b}', {b})), '[]') \
                 FROM (SELECT * FROM {table} ORDER BY id)"
            ),
        );
        serde_json::from_str::<Value>(rows[0][0].as_str().unwrap()).unwrap()
    };
    assert_eq!(fleet(&p.sync_url, &p.key, &central), expected());
}

#[test]
#[ignore = "needs the built extension and the cloudsync extension in PostgreSQL; run by cargo xtask test"]
fn every_device_receives_every_row_postgres_backend() {
    let pg = PgDb::new(
        "fleet",
        "DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         CREATE EXTENSION cloudsync;",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), SERVE_FLAGS);
    let tenant = server.admin("/v1/tenants", json!({ "name": "fleet" }));
    let t = tenant["id"].as_str().unwrap();
    let db = server.admin(
        &format!("/v1/tenants/{t}/databases"),
        json!({ "name": "fleet", "backend": { "kind": "postgres", "url": pg.url } }),
    );
    let d = db["id"].as_str().unwrap();
    let schema: String = TABLES.iter().map(|(_, ddl)| format!("{ddl};")).collect();
    server.admin(&format!("/v1/tenants/{t}/databases/{d}/schema"), json!({ "sql": schema }));
    // Devices with an API key act as `authenticated`.
    psql(&pg.url, "GRANT SELECT, INSERT, UPDATE, DELETE ON events, items TO authenticated");
    let key = server.admin(&format!("/v1/tenants/{t}/api-keys"), json!({ "name": "fleet", "scopes": ["sync"] }));
    let central = |table: &str| {
        let (a, b) = if table == "events" { ("kind", "n") } else { ("label", "qty") };
        let text = psql(
            &pg.url,
            &format!(
                "SELECT coalesce(json_agg(json_build_object('id', id, '{a}', {a}, '{b}', {b}) ORDER BY id), '[]') \
                 FROM {table}"
            ),
        );
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let counts = fleet(db["sync_url"].as_str().unwrap(), key["key"].as_str().unwrap(), &central);
    assert_eq!(counts, expected());
}
