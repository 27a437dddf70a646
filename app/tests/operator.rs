//! The node's own surfaces, as an operator configures them, against the real binary:
//! `/metrics` behind a token or on a separate address, the admin token shown only when
//! it is made, secrets read from files and standard input, weak tokens refused, and a
//! node reachable from other machines refused without its public URL.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;
use support::*;

/// A started node, killed when dropped (also when an assertion fails first).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cloudsync serve` with `args` (and `stdin` written to its standard input);
/// returns the process and its start-up lines (up to the admin token line).
fn serve(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> (Running, Vec<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    if let Some(text) = stdin {
        let mut input = child.0.stdin.take().unwrap();
        input.write_all(text.as_bytes()).unwrap();
    }
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.trim_start().starts_with("admin token:");
        seen.push(line);
        if last {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let (status, body) = http("GET", url, bearer, None, &[]).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn metrics_can_need_a_token_or_live_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let token = "mt_0123456789abcdef0123456789abcdef";
    let port = free_port();
    let server = Server::start(dir.path(), port, &["--metrics-token", token]);
    let url = format!("{}/metrics", server.url);
    for bearer in [None, Some("mt_wrong"), Some(&server.token[..])] {
        let (status, body) = get(&url, bearer);
        assert_eq!(status, 401, "{bearer:?}: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    let (status, body) = get(&url, Some(token));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cloudsync_"), "{body}");
    drop(server);

    // On a separate address: the public port has no /metrics; that address has only it.
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let server = Server::start(dir.path(), port, &["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]);
    assert_eq!(get(&format!("{}/metrics", server.url), None).0, 404);
    let (status, body) = get(&format!("http://127.0.0.1:{metrics_port}/metrics"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cloudsync_"));
    assert_eq!(get(&format!("http://127.0.0.1:{metrics_port}/v1/tenants"), Some(&server.token)).0, 404);
    assert_eq!(get(&format!("{}/healthz", server.url), None).0, 200);
}

#[test]
fn the_admin_token_is_shown_once_and_secrets_come_from_files_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = ["--listen", &format!("127.0.0.1:{port}")];
    let (child, first) = serve(dir.path(), &listen, None);
    let stored = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let stored = stored.trim();
    let line = first.last().unwrap();
    assert!(line.contains(stored) && line.contains("shown only this once"), "{first:?}");
    drop(child);
    let (child, again) = serve(dir.path(), &listen, None);
    assert!(again.iter().all(|l| !l.contains(stored)), "printed again: {again:?}");
    assert!(again.last().unwrap().contains("admin-token"), "{again:?}");
    drop(child);

    // From a file, and from standard input: the token works, is never printed, and no
    // token is generated into the data directory.
    let token = "csa_from_a_file_0123456789abcdef01234567";
    let file = dir.path().join("token.txt");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    for (source, stdin) in [(file.to_str().unwrap(), None), ("-", Some(format!("{token}\n")))] {
        let fresh = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = ["--listen", &format!("127.0.0.1:{port}"), "--admin-token-file", source];
        let (child, lines) = serve(fresh.path(), &args, stdin.as_deref());
        assert!(lines.iter().all(|l| !l.contains(token)), "{lines:?}");
        assert!(lines.last().unwrap().contains("from configuration"), "{lines:?}");
        assert!(!fresh.path().join("admin-token").exists());
        assert_eq!(get(&format!("http://127.0.0.1:{port}/v1/tenants"), Some(token)).0, 200);
        drop(child);
    }
}

#[test]
fn weak_tokens_and_a_public_node_without_its_url_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--listen", "127.0.0.1:0", "--admin-token", "hunter2hunter2"]);
    assert!(e.contains("at least 128 bits") && !e.contains("hunter2"), "{e}");
    let e = run(&["--listen", "127.0.0.1:0", "--metrics-token", "metrics"]);
    assert!(e.contains("metrics token is too weak"), "{e}");
    let e = run(&["--listen", "0.0.0.0:0"]);
    assert!(e.contains("--public-url"), "{e}");
    let e = run(&["--listen", "0.0.0.0:0", "--public-url", "sync.example.com"]);
    assert!(e.contains("http:// or https://"), "{e}");
}

#[test]
fn the_cli_releases_bindings_and_blocks_users_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), free_port(), &[]);
    let p = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let site = "00112233445566778899aabbccddeeff";
    let status = format!("{}/status?site={site}", p.sync_url);
    assert_eq!(http("GET", &status, Some(&p.key), None, &[]).unwrap().0, 200);
    let scope = ["--tenant", &p.tenant, "--database", &p.database];
    let d = cli(&server, &[&["device", "get"][..], &scope, &[site]].concat());
    let subject = d["subject"].as_str().unwrap().to_string();
    assert!(subject.starts_with("key:"), "{d}");
    let d = cli(&server, &[&["device", "release"][..], &scope, &[site]].concat());
    assert!(d["subject"].is_null(), "{d}");

    cli(&server, &[&["device", "block-subject"][..], &scope, &[&subject, "--reason", "leaked"]].concat());
    let list = cli(&server, &[&["device", "blocked"][..], &scope].concat());
    assert_eq!(list["items"][0]["subject"], subject.as_str(), "{list}");
    let (code, body) = http("GET", &status, Some(&p.key), None, &[]).unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(code == 403 && body.contains("device_blocked") && body.contains("leaked"), "{code} {body}");
    cli(&server, &[&["device", "unblock-subject"][..], &scope, &[&subject]].concat());
    assert_eq!(http("GET", &status, Some(&p.key), None, &[]).unwrap().0, 200);
}

#[test]
fn the_cli_shows_and_sets_a_tenants_quotas_over_the_nodes_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        free_port(),
        &["--quota-devices", "1", "--quota-transfer-mb-per-day", "7", "--rate-limit", "9"],
    );
    let p = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let q = cli(&server, &["tenant", "quotas", &p.tenant]);
    assert_eq!((q["quotas"]["devices"].as_u64(), q["quotas"]["databases"].as_u64()), (Some(1), Some(100)), "{q}");
    assert_eq!(
        (q["quotas"]["transfer_mb_per_day"].as_u64(), q["quotas"]["requests_per_second_per_credential"].as_u64()),
        (Some(7), Some(9)),
        "{q}"
    );
    // The node's default of one device: a second site id is refused, with its code.
    let status = |site: &str| http("GET", &format!("{}/status?site={site}", p.sync_url), Some(&p.key), None, &[]);
    assert_eq!(status("00000000000000000000000000000001").unwrap().0, 200);
    let (code, body) = status("00000000000000000000000000000002").unwrap();
    assert!(code == 507 && String::from_utf8_lossy(&body).contains("device_quota_exceeded"), "{code}");
    // Raised for this tenant only; set limits add up, --clear forgets them.
    cli(&server, &["tenant", "quotas", &p.tenant, "--set", "devices=5"]);
    let q = cli(&server, &["tenant", "quotas", &p.tenant, "--set", "long_polls=7"]);
    assert_eq!(q["overrides"], json!({ "devices": 5, "long_polls": 7 }), "{q}");
    assert_eq!(status("00000000000000000000000000000002").unwrap().0, 200);
    let q = cli(&server, &["tenant", "quotas", &p.tenant, "--clear"]);
    assert_eq!((q["overrides"].clone(), q["quotas"]["devices"].as_u64()), (json!({}), Some(1)), "{q}");
    // A name that is no quota is refused by the server, nothing set.
    let refused = cli_fails(&server, &["tenant", "quotas", &p.tenant, "--set", "disks=1"]);
    assert!(refused.contains("disks"), "{refused}");
}
