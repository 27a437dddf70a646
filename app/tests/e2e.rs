//! End-to-end: the real `cloudsync` binary, real processes, the built extension on
//! devices (in-process through rusqlite, and in Python child processes).
//!
//! These need the built library, so a plain `cargo test` skips them (`#[ignore]`);
//! `cargo xtask test` runs them with `--ignored` and `CLOUDSYNC_EXTENSION` set.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT, n INTEGER DEFAULT 0)";

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn three_devices_edit_offline_then_converge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut d1 = RustDevice::open("rust", &dir.path().join("d1.db"));
    let mut d2 = PyDevice::open("python-1", &dir.path().join("d2.db"));
    let mut d3 = PyDevice::open("python-2", &dir.path().join("d3.db"));
    for d in [&mut d1 as &mut dyn Device, &mut d2, &mut d3] {
        d.join(SCHEMA, &p);
    }
    // A shared starting point.
    for i in 0..20 {
        d1.sql(&format!("INSERT INTO notes (id, title, body) VALUES ('n{i:02}', 'title {i}', 'body {i}')"));
    }
    d1.sync(0).unwrap();
    drain(&mut [&mut d1]);
    d2.sync(2000).unwrap();
    d3.sync(2000).unwrap();
    assert_eq!(d2.rows().len(), 20);

    // Offline edits: same columns, different columns, deletes, re-inserts.
    d1.sql("UPDATE notes SET title = 'd1 title' WHERE id < 'n10'");
    d2.sql("UPDATE notes SET title = 'd2 title' WHERE id >= 'n05' AND id < 'n15'");
    d2.sql("UPDATE notes SET body = 'd2 body' WHERE id < 'n05'");
    d3.sql("UPDATE notes SET n = n + 100");
    d3.sql("DELETE FROM notes WHERE id IN ('n10', 'n11', 'n12')");
    d3.sql("INSERT INTO notes (id, title) VALUES ('n11', 'd3 re-created')");
    d1.sql("UPDATE notes SET body = 'd1 edit of a row d3 deletes' WHERE id = 'n12'");
    d2.sql("DELETE FROM notes WHERE id = 'n15'");
    d1.sql("UPDATE notes SET title = 'd1 edit of a row d2 deletes' WHERE id = 'n15'");
    d2.sql("INSERT INTO notes (id, title) VALUES ('new-d2', 'only on d2')");
    d3.sql("INSERT INTO notes (id, title) VALUES ('new-d3', 'only on d3')");

    // Sync in a random (seeded) order, several rounds.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..3 {
        let mut order = vec![0, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for i in order {
            let d: &mut dyn Device = match i {
                0 => &mut d1,
                1 => &mut d2,
                _ => &mut d3,
            };
            d.sync(200).unwrap();
        }
    }
    drain(&mut [&mut d1, &mut d2, &mut d3]);
    for d in [&mut d1 as &mut dyn Device, &mut d2, &mut d3] {
        d.sync(0).unwrap();
    }

    let expected = d1.rows();
    assert_eq!(d2.rows(), expected, "python-1 differs from rust");
    assert_eq!(d3.rows(), expected, "python-2 differs from rust");
    assert_eq!(file_rows(&p.central, "SELECT * FROM notes ORDER BY id"), expected, "central database differs");
    // The outcomes the CRDT rules promise.
    let by_id = |id: &str| expected.iter().find(|r| r[0] == json!(id)).cloned();
    assert!(by_id("n10").is_none() && by_id("n12").is_none(), "deletes win over concurrent updates");
    assert_eq!(by_id("n11").unwrap()[1], json!("d3 re-created"), "a re-insert after a delete resurrects the row");
    assert!(by_id("n15").is_none());
    assert_eq!(by_id("n02").unwrap()[2], json!("d2 body"), "different columns both survive");
    assert_eq!(by_id("n02").unwrap()[1], json!("d1 title"));
    assert_eq!(by_id("n02").unwrap()[3], json!(100), "a third column edited elsewhere survives too");
    assert!(by_id("new-d2").is_some() && by_id("new-d3").is_some());
    assert_eq!(expected.len(), 19);
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn server_killed_with_sigkill_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = std::sync::Arc::new(std::sync::Mutex::new(Server::start(&dir.path().join("server"), port, &[])));
    let p = server.lock().unwrap().provision(SCHEMA);
    let mut d1 = RustDevice::open("writer", &dir.path().join("d1.db"));
    d1.join(SCHEMA, &p);

    // A killer thread: SIGKILL at random moments, restart after a pause.
    let killer = {
        let server = std::sync::Arc::clone(&server);
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
                let mut s = server.lock().unwrap();
                s.kill9();
                std::thread::sleep(Duration::from_millis(100));
                s.restart();
            }
        })
    };
    // The writer keeps writing batches and sending; some sends fail while the server
    // is down. After each successful send, everything written so far is acknowledged.
    let mut written = 0;
    let mut acknowledged = 0;
    let mut failures = 0;
    while !killer.is_finished() || written < 400 {
        for _ in 0..20 {
            d1.sql(&format!("INSERT INTO notes (id, title) VALUES ('w{written:05}', 'batch')"));
            written += 1;
        }
        match d1.exec("SELECT cloudsync_network_send_changes()", &[]) {
            Ok(_) => acknowledged = written,
            Err(e) => {
                // The node was killed: no answer, or a connection it dropped.
                let transport = ["server_unreachable", "connection_closed", "timeout", "network_error", "not_http"];
                assert!(transport.iter().any(|c| e.starts_with(&format!("cloudsync: {c}: "))), "unexpected error: {e}");
                failures += 1;
            }
        }
        if written > 4000 {
            break;
        }
    }
    killer.join().unwrap();
    assert!(failures > 0, "the server was never down while sending: the test proved nothing");

    // Without sending anything more, every acknowledged change is applied once the
    // restarted server has resumed its queue.
    drain(&mut [&mut d1]);
    let central: BTreeSet<String> =
        file_rows(&p.central, "SELECT id FROM notes").into_iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    for i in 0..acknowledged {
        assert!(central.contains(&format!("w{i:05}")), "acknowledged row w{i:05} is missing after the crashes");
    }
    // And once the writer sends the rest, a fresh device receives all of it.
    while d1.one("SELECT cloudsync_network_has_unsent_changes()") == json!(1) {
        d1.sql("SELECT cloudsync_network_send_changes()");
    }
    drain(&mut [&mut d1]);
    let mut d2 = PyDevice::open("reader", &dir.path().join("d2.db"));
    d2.join(SCHEMA, &p);
    d2.sync(0).unwrap();
    assert_eq!(d2.rows().len(), written);
    assert_eq!(d2.rows(), d1.rows());
    // A clean shutdown exits with success.
    assert!(server.lock().unwrap().terminate().success());
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &["--inline-limit", "65536"]);
    let p = server.provision(SCHEMA);
    let other = server.provision(SCHEMA);
    let mut d1 = RustDevice::open("device", &dir.path().join("d1.db"));
    d1.join(SCHEMA, &p);
    d1.sql("INSERT INTO notes (id, title) VALUES ('a', 'x')");
    let site = d1.one("SELECT hex(cloudsync_siteid())").as_str().unwrap().to_lowercase();
    let upload = |db: &str, key: &str, site: &str, body: Vec<u8>| -> (u16, Value) {
        let (status, body) = http(
            "POST",
            &format!("{}/v1/sync/{db}/changes", server.url),
            Some(key),
            Some(body),
            &[
                ("content-type", "application/vnd.cloudsync.payload"),
                ("x-cloudsync-site", site),
                ("x-cloudsync-from", "0.0"),
                ("x-cloudsync-to", "1.0"),
            ],
        )
        .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    };
    let payload = {
        let rows = d1.sql(
            "SELECT hex(cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq)) FROM cloudsync_changes",
        );
        let hex = rows[0][0].as_str().unwrap().to_string();
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect::<Vec<u8>>()
    };
    let jobs =
        || file_rows(&server.data_dir.join("control.sqlite"), "SELECT count(*) FROM jobs")[0][0].as_i64().unwrap();

    // A corrupted payload.
    let mut bad = payload.clone();
    let n = bad.len();
    bad[n - 2] ^= 0xff;
    let (s, v) = upload(&p.database, &p.key, &site, bad);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("checksum"), "{v}");
    // A wrong key, a malformed header, no header.
    assert_eq!(upload(&p.database, "csk_wrong", &site, payload.clone()).0, 401);
    let (s, _) =
        http("POST", &format!("{}/v1/sync/{}/changes", server.url, p.database), None, Some(payload.clone()), &[])
            .unwrap();
    assert_eq!(s, 401);
    // A database that does not exist, and another tenant's database: both 404.
    assert_eq!(upload("01a213c2-0f9f-72d4-918a-f58820f80902", &p.key, &site, payload.clone()).0, 404);
    assert_eq!(upload(&other.database, &p.key, &site, payload.clone()).0, 404);
    // Changes attributed to another device.
    let (s, v) = upload(&p.database, &p.key, "00000000000000000000000000000001", payload.clone());
    assert_eq!(s, 403, "{v}");
    // Over the inline limit.
    let (s, v) = upload(&p.database, &p.key, &site, vec![0u8; 70_000]);
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");
    assert_eq!(jobs(), 0, "refused uploads must not create jobs");
    assert!(file_rows(&p.central, "SELECT * FROM notes").is_empty());

    // The device sees transport and auth errors as SQL errors with the server's message.
    d1.exec("SELECT cloudsync_network_set_apikey('csk_wrong')", &[]).unwrap();
    let e = d1.exec("SELECT cloudsync_network_send_changes()", &[]).unwrap_err();
    assert!(e.contains("401") && e.contains("invalid, expired or revoked"), "{e}");
    d1.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(p.key)]).unwrap();
    let wrong_db = p.sync_url.replace(&p.database, &other.database);
    d1.exec("SELECT cloudsync_network_init(?1)", &[json!(wrong_db)]).unwrap();
    let e = d1.exec("SELECT cloudsync_network_send_changes()", &[]).unwrap_err();
    assert!(e.contains("404"), "{e}");
    d1.exec("SELECT cloudsync_network_init(?1)", &[json!(p.sync_url)]).unwrap();

    // A row the central database refuses (its schema has a CHECK the device lacks): the
    // row is left out and reported to the device as final, with its SQLSTATE; the rest
    // of the upload is applied; nothing is half-applied (docs/rls.md).
    let q = server.provision(
        "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT, n INTEGER DEFAULT 0 CHECK (n < 10))",
    );
    let mut d3 = RustDevice::open("strict", &dir.path().join("d3.db"));
    d3.join(SCHEMA, &q);
    d3.sql("INSERT INTO notes (id, n) VALUES ('ok', 1), ('too-big', 50)");
    let sent = d3.sync(0).unwrap();
    assert_eq!(sent["send"]["status"], json!("sent"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let v = device_status(&mut d3);
        if let Some(f) = v["device"]["refused"].as_array().and_then(|f| f.first()).cloned() {
            assert!(v["device"]["failures"].as_array().unwrap().is_empty(), "{v}");
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "the refusal was never reported");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (refused["key"].as_str(), refused["sqlstate"].as_str()),
        (Some("'too-big'"), Some("23514")),
        "{refused}"
    );
    assert_eq!(refused["retryable"], json!(false), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("CHECK"), "{refused}");
    assert_eq!(file_rows(&q.central, "SELECT id, n FROM notes"), [vec![json!("ok"), json!(1)]], "nothing half-applied");
    let again = d3.sync(0).unwrap();
    assert_eq!(again["send"]["status"], json!("nothing_to_send"), "{again}");
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn sync_through_an_s3_payload_store_with_presigned_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let endpoint = s3_server(&s3_root, "AKIAE2E", "e2e-secret");
    let args = [
        "--s3-bucket",
        "payloads",
        "--s3-endpoint",
        &endpoint,
        "--s3-access-key",
        "AKIAE2E",
        "--s3-secret-key",
        "e2e-secret",
    ];
    let server = Server::start(&dir.path().join("server"), free_port(), &args);
    let p = server.provision(SCHEMA);
    let mut d1 = RustDevice::open("writer", &dir.path().join("d1.db"));
    let mut d2 = PyDevice::open("reader", &dir.path().join("d2.db"));
    d1.join(SCHEMA, &p);
    d2.join(SCHEMA, &p);
    // Incompressible bodies, so the payload is well over the 512 KiB inline limit and
    // travels through a presigned S3 URL.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    d1.sql("BEGIN");
    for i in 0..2000 {
        let body: String = (0..900).map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)])).collect();
        d1.exec("INSERT INTO notes (id, body) VALUES (?1, ?2)", &[json!(format!("big{i:04}")), json!(body)]).unwrap();
    }
    d1.sql("COMMIT");
    let sent = d1.sync(0).unwrap();
    assert!(sent["send"]["bytes"].as_u64().unwrap() > 512 * 1024, "{sent}");
    drain(&mut [&mut d1]);
    // And a small change, inline.
    d1.sql("UPDATE notes SET title = 'small' WHERE id = 'big0000'");
    d1.sync(0).unwrap();
    drain(&mut [&mut d1]);
    let got = d2.sync(0).unwrap();
    assert_eq!(got["receive"]["complete"], json!(true));
    assert_eq!(d2.rows(), d1.rows());
    assert_eq!(d2.rows().len(), 2000);
    // The payloads are in the bucket, not in the data directory.
    let objects = walk(&s3_root.join("payloads"));
    assert!(objects >= 2, "expected the two uploads in the bucket, found {objects} objects");
    assert!(!server.data_dir.join("payloads").exists());
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        usize::from(!e.file_name().to_string_lossy().starts_with('.'))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn operator_cli_provisions_and_the_network_functions_manage_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, SCHEMA).unwrap();
    let t = cli(&server, &["tenant", "create", "--name", "cli"]);
    let tid = t["id"].as_str().unwrap();
    let db = cli(&server, &["database", "create", "--tenant", tid, "--name", "main"]);
    let did = db["id"].as_str().unwrap();
    let tables =
        cli(&server, &["schema", "apply", "--tenant", tid, "--database", did, "--file", schema.to_str().unwrap()]);
    assert_eq!(tables["tables"][0]["table"], json!("notes"));
    let key = cli(&server, &["key", "create", "--tenant", tid, "--name", "phones", "--scope", "sync"]);
    // A CLI error is a non-zero exit with the server's message.
    let bad = cli_fails(&server, &["database", "create", "--tenant", tid, "--name", "main"]);
    assert!(bad.contains("409 conflict"), "{bad}");

    let p = Provisioned {
        tenant: tid.to_string(),
        database: did.to_string(),
        sync_url: db["sync_url"].as_str().unwrap().to_string(),
        key: key["key"].as_str().unwrap().to_string(),
        central: server.data_dir.join("databases").join(format!("{did}.sqlite")),
    };
    let mut a = PyDevice::open("a", &dir.path().join("a.db"));
    a.join(SCHEMA, &p);
    assert_eq!(a.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
    a.sql("INSERT INTO notes (id, title) VALUES ('x', 'unsent')");
    assert_eq!(a.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));
    // Logging out with unsent changes is refused unless forced.
    let e = a.exec("SELECT cloudsync_network_logout()", &[]).unwrap_err();
    assert!(e.contains("would be lost"), "{e}");
    a.sync(0).unwrap();
    assert_eq!(a.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
    // Logout wipes the synced rows locally, without sending deletions.
    a.sql("SELECT cloudsync_network_logout()");
    assert!(a.rows().is_empty());
    let e = a.exec("SELECT cloudsync_network_sync()", &[]).unwrap_err();
    assert!(e.contains("no sync URL"), "{e}");
    // Logging in again brings everything back from the server.
    a.exec("SELECT cloudsync_network_init(?1)", &[json!(p.sync_url)]).unwrap();
    a.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(p.key)]).unwrap();
    drain(&mut [&mut a]);
    let mut b = RustDevice::open("b", &dir.path().join("b.db"));
    b.join(SCHEMA, &p);
    b.sync(0).unwrap();
    assert_eq!(b.rows().len(), 1, "the logout sent no deletion");
    // `a` starts empty again: its server position was forgotten, so it receives all.
    let got = a.sync(0).unwrap();
    assert_eq!(got["receive"]["changes"], json!(3), "the row's three cells: {got}");
    assert_eq!(a.rows(), b.rows());
    // reset_sync_version: everything is received again, and applying it is a no-op.
    a.sql("SELECT cloudsync_network_reset_sync_version()");
    let again = a.sync(0).unwrap();
    assert_eq!(
        (again["receive"]["received"].as_u64(), again["receive"]["changes"].as_u64()),
        (Some(3), Some(0)),
        "{again}"
    );
    // cleanup forgets the credential.
    a.sql("SELECT cloudsync_network_cleanup()");
    let e = a.exec("SELECT cloudsync_network_send_changes()", &[]).unwrap_err();
    assert!(e.contains("no credential"), "{e}");
}

/// The payload folder unusable for a while: uploads and downloads are answered `503`
/// with `Retry-After` and a stable code, the device's error is marked retryable (and
/// `cloudsync_network_sync` retries it), the failure is counted in `/metrics`, and
/// once the folder is back everything the device wrote arrives.
#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn an_unusable_payload_store_is_a_retryable_503() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data, free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut d = RustDevice::open("device", &dir.path().join("d.db"));
    d.join(SCHEMA, &p);
    d.sql("INSERT INTO notes (id, title) VALUES ('a', 'before the outage')");
    d.sync(0).unwrap();

    // The folder becomes a file: every write into it fails (even as root).
    let folder = data.join("payloads");
    std::fs::rename(&folder, data.join("payloads.aside")).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    d.sql("INSERT INTO notes (id, title) VALUES ('b', 'during the outage')");
    let e = d.exec("SELECT cloudsync_network_send_changes()", &[]).unwrap_err();
    assert!(e.starts_with("cloudsync: payload_store_unavailable: ") && e.contains("answered 503"), "{e}");
    assert!(e.contains("retry later"), "{e}");
    assert!(!e.contains(&data.display().to_string()), "the error names a server path: {e}");
    // The same upload by hand: the answer carries Retry-After.
    let rows = d.sql(
        "SELECT hex(cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq)), \
         lower(hex(cloudsync_siteid())) FROM cloudsync_changes",
    );
    let payload: Vec<u8> = (0..rows[0][0].as_str().unwrap().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&rows[0][0].as_str().unwrap()[i..i + 2], 16).unwrap())
        .collect();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let resp = agent
        .post(&format!("{}/changes", p.sync_url))
        .header("Authorization", &format!("Bearer {}", p.key))
        .header("Content-Type", "application/vnd.cloudsync.payload")
        .header("X-Cloudsync-Site", rows[0][1].as_str().unwrap())
        .header("X-Cloudsync-From", "0")
        .header("X-Cloudsync-To", "1")
        .send(&payload[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    assert!(resp.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/json")));
    assert_eq!(d.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));
    let (_, metrics) = http("GET", &format!("{}/metrics", server.url), None, None, &[]).unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("cloudsync_store_errors_total{store=\"payload\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{metrics}");

    // Back: the next sync sends what waited.
    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(data.join("payloads.aside"), &folder).unwrap();
    d.sync(0).unwrap();
    drain(&mut [&mut d]);
    assert_eq!(d.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
    assert_eq!(file_rows(&p.central, "SELECT id FROM notes ORDER BY id"), vec![vec![json!("a")], vec![json!("b")]]);
}

/// A fleet on two versions of an application, neither ahead of the other for good
/// (`docs/protocol.md`, devices and the server on different schemas): the newer app's
/// table the server lacks is held on the device (`held`, still unsent, nothing
/// accepted) until the operator provisions it; the older app keeps receiving what it
/// has, skipping the rest, and once it migrates, its next download brings what it
/// skipped. Devices: Rust (the newer app) and Debian's Python (the older).
#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn devices_on_older_and_newer_schemas_lose_nothing() {
    const PROJECTS: &str = "CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL, name TEXT)";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut old = PyDevice::open("older-app", &dir.path().join("old.db"));
    old.join(SCHEMA, &p);
    let mut new = RustDevice::open("newer-app", &dir.path().join("new.db"));
    new.join(SCHEMA, &p);
    new.sql(PROJECTS);
    new.sql("SELECT cloudsync_init('projects')");
    new.sql("INSERT INTO notes (id, title) VALUES ('n1', 'from the newer app')");
    new.sql("INSERT INTO projects VALUES ('p1', 'garden')");

    // The server has no `projects` yet: the newer app's changes stay on it.
    let r = new.sync(0).unwrap();
    assert_eq!(
        (r["send"]["status"].as_str(), r["send"]["held"]["code"].as_str()),
        (Some("held"), Some("schema_mismatch"))
    );
    assert!(r["send"]["held"]["message"].as_str().unwrap().contains("projects"), "{r}");
    assert_eq!(new.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));
    assert_eq!(file_rows(&p.central, "SELECT count(*) FROM notes")[0][0], json!(0), "nothing accepted");

    // Provisioned, the next sync sends them.
    let (tenant, db) = (&p.tenant, &p.database);
    server.admin(&format!("/v1/tenants/{tenant}/databases/{db}/schema"), json!({ "sql": PROJECTS }));
    let r = new.sync(0).unwrap();
    assert_eq!(r["send"]["status"], "sent", "{r}");
    assert_eq!(new.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
    drain(&mut [&mut new]);

    // The older app receives the note and skips the table it does not have.
    let r = old.sync(0).unwrap();
    assert_eq!(r["receive"]["skipped_schema"], json!(["projects"]), "{r}");
    assert_eq!(old.one("SELECT title FROM notes WHERE id = 'n1'"), json!("from the newer app"));
    old.sql("INSERT INTO notes (id, title) VALUES ('n2', 'from the older app')");
    old.sync(0).unwrap();
    drain(&mut [&mut old]);
    new.sync(0).unwrap();
    assert_eq!(new.one("SELECT title FROM notes WHERE id = 'n2'"), json!("from the older app"));

    // The older app migrates: its next download brings the project it skipped.
    old.sql(PROJECTS);
    old.sql("SELECT cloudsync_init('projects')");
    let r = old.sync(0).unwrap();
    assert_eq!(r["receive"]["skipped_schema"], json!([]), "{r}");
    assert_eq!(old.one("SELECT name FROM projects WHERE id = 'p1'"), json!("garden"));
    assert_eq!(old.rows(), new.rows());

    // A column, the same way: the operator posts the schema again, wider; the newer
    // app migrates and writes it; the older app skips it until it migrates too.
    let wider = SCHEMA.replace(")", ", color TEXT)");
    let v = server.admin(&format!("/v1/tenants/{tenant}/databases/{db}/schema"), json!({ "sql": wider }));
    assert_eq!(v["statements"], json!([r#"ALTER TABLE "notes" ADD COLUMN "color" TEXT"#]), "{v}");
    let add_color = |d: &mut dyn Device| {
        for sql in [
            "BEGIN",
            "SELECT cloudsync_begin_alter('notes')",
            "ALTER TABLE notes ADD COLUMN color TEXT",
            "SELECT cloudsync_commit_alter('notes')",
            "COMMIT",
        ] {
            d.sql(sql);
        }
    };
    add_color(&mut new);
    new.sql("UPDATE notes SET color = 'red' WHERE id = 'n1'");
    assert_eq!(new.sync(0).unwrap()["send"]["status"], "sent");
    drain(&mut [&mut new]);
    let r = old.sync(0).unwrap();
    assert_eq!(r["receive"]["skipped_schema"], json!(["notes.color"]), "{r}");
    add_color(&mut old);
    old.sync(0).unwrap();
    assert_eq!(old.one("SELECT color FROM notes WHERE id = 'n1'"), json!("red"));
    assert_eq!(old.rows(), new.rows());
}

fn device_status(d: &mut dyn Device) -> Value {
    serde_json::from_str(d.one("SELECT cloudsync_network_status()").as_str().unwrap()).unwrap()
}

/// A device whose own database refuses what the server sends (here a trigger of the
/// application's) fails its receive with the reason, and tells the server: the
/// device's status and the API's device list say "receive failing since …, because
/// …", the overview counts it. Once the cause is gone, the next download applies
/// and clears it everywhere. Nothing is skipped meanwhile: the download is retried
/// whole.
#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn a_device_that_cannot_apply_a_download_says_so_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut writer = RustDevice::open("writer", &dir.path().join("writer.db"));
    writer.join(SCHEMA, &p);
    let mut picky = PyDevice::open("picky", &dir.path().join("picky.db"));
    picky.join(SCHEMA, &p);
    picky.sql(
        "CREATE TRIGGER no_shouting BEFORE INSERT ON notes WHEN NEW.title = upper(NEW.title) \
         BEGIN SELECT RAISE(ABORT, 'no shouting here'); END",
    );
    writer.sql("INSERT INTO notes (id, title) VALUES ('n1', 'calm'), ('n2', 'LOUD')");
    writer.sync(0).unwrap();
    drain(&mut [&mut writer]);

    let e = picky.sync(0).unwrap_err();
    assert!(e.contains("no shouting here"), "{e}");
    assert_eq!(picky.one("SELECT count(*) FROM notes"), json!(0), "the chunk applies whole or not at all");
    let status = device_status(&mut picky);
    let receive = &status["device"]["receive"];
    assert_eq!(receive["code"], "23000", "{status}");
    assert!(receive["message"].as_str().unwrap().contains("no shouting here"), "{status}");
    let since = receive["since"].as_i64().unwrap();
    assert!(since > 0, "{status}");
    // Failing again keeps when it started.
    picky.sync(0).unwrap_err();
    let status = device_status(&mut picky);
    assert_eq!(status["device"]["receive"]["since"].as_i64(), Some(since), "{status}");
    let (tenant, db) = (&p.tenant, &p.database);
    let site = picky.one("SELECT lower(hex(cloudsync_siteid()))");
    let device = server.get(&format!("/v1/tenants/{tenant}/databases/{db}/devices/{}", site.as_str().unwrap()));
    assert_eq!(device["receive_error_code"], "23000", "{device}");
    let metrics =
        String::from_utf8(http("GET", &format!("{}/metrics", server.url), None, None, &[]).unwrap().1).unwrap();
    assert!(metrics.contains(r#"cloudsync_resources{kind="devices_failing_to_receive"} 1"#), "{metrics}");

    // The application fixes its trigger: the download applies, and the report clears.
    picky.sql("DROP TRIGGER no_shouting");
    picky.sync(0).unwrap();
    assert_eq!(picky.rows(), writer.rows());
    let status = device_status(&mut picky);
    assert_eq!(status["device"]["receive"], Value::Null, "{status}");
    let device = server.get(&format!("/v1/tenants/{tenant}/databases/{db}/devices/{}", site.as_str().unwrap()));
    assert_eq!(device["receive_error_code"], Value::Null, "{device}");
}

/// The opt-in: a device that called `cloudsync_network_set_schema_auto(1)` takes the
/// tables and columns its downloads name from the server's schema, through the same
/// alter path as an application's own migration, and then receives what it had
/// skipped; a device without the opt-in skips them as before.
#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn a_device_that_opts_in_takes_the_servers_schema_changes() {
    const PROJECTS: &str =
        "CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL DEFAULT 'untitled')";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut auto = PyDevice::open("auto", &dir.path().join("auto.db"));
    auto.join(SCHEMA, &p);
    assert_eq!(auto.one("SELECT cloudsync_network_set_schema_auto(1)"), json!(1));
    assert!(auto.exec("SELECT cloudsync_network_set_schema_auto(2)", &[]).unwrap_err().contains("0 or 1"));
    let mut manual = PyDevice::open("manual", &dir.path().join("manual.db"));
    manual.join(SCHEMA, &p);
    let mut new = RustDevice::open("newer-app", &dir.path().join("new.db"));
    new.join(SCHEMA, &p);

    // The server gains a table and a column; the newer app migrates and writes both.
    let (tenant, db) = (&p.tenant, &p.database);
    let wider = format!("{}; {PROJECTS}", SCHEMA.replace(")", ", color TEXT DEFAULT 'none')"));
    server.admin(&format!("/v1/tenants/{tenant}/databases/{db}/schema"), json!({ "sql": wider }));
    new.sql(PROJECTS);
    new.sql("SELECT cloudsync_init('projects')");
    for sql in [
        "BEGIN",
        "SELECT cloudsync_begin_alter('notes')",
        "ALTER TABLE notes ADD COLUMN color TEXT DEFAULT 'none'",
        "SELECT cloudsync_commit_alter('notes')",
        "COMMIT",
    ] {
        new.sql(sql);
    }
    new.sql("INSERT INTO notes (id, title, color) VALUES ('n1', 'first', 'red')");
    new.sql("INSERT INTO projects VALUES ('p1', 'garden')");
    assert_eq!(new.sync(0).unwrap()["send"]["status"], "sent");
    drain(&mut [&mut new]);

    // Without the opt-in: skipped and named.
    let r = manual.sync(0).unwrap();
    assert_eq!(r["receive"]["skipped_schema"], json!(["notes.color", "projects"]), "{r}");
    assert_eq!(manual.one("SELECT count(*) FROM sqlite_master WHERE name = 'projects'"), json!(0));

    // With it: the table and the column come from the server, and so do their rows.
    let r = auto.sync(0).unwrap();
    assert_eq!(r["receive"]["schema_applied"], json!(["notes.color", "projects"]), "{r}");
    assert_eq!(r["receive"]["skipped_schema"], json!([]), "{r}");
    assert_eq!(auto.one("SELECT color FROM notes WHERE id = 'n1'"), json!("red"));
    assert_eq!(auto.one("SELECT name FROM projects WHERE id = 'p1'"), json!("garden"));
    // As the server declares them (the default came along), and synced both ways.
    assert_eq!(
        auto.one("SELECT dflt_value FROM pragma_table_info('projects') WHERE name = 'name'"),
        json!("'untitled'")
    );
    auto.sql("INSERT INTO notes (id, title) VALUES ('n2', 'from the auto device')");
    auto.sql("UPDATE projects SET name = 'allotment' WHERE id = 'p1'");
    assert_eq!(auto.sync(0).unwrap()["send"]["status"], "sent");
    drain(&mut [&mut auto]);
    new.sync(0).unwrap();
    assert_eq!(new.one("SELECT color FROM notes WHERE id = 'n2'"), json!("none"));
    assert_eq!(new.one("SELECT name FROM projects WHERE id = 'p1'"), json!("allotment"));
    assert_eq!(auto.rows(), new.rows());
}
