//! The first hour of a new user: the CLI finds its node from the data directory, takes
//! names for ids, and says which flag or variable to set when it cannot go on; the
//! device's errors name the URL, the likely cause and a stable code (`docs/sql-api.md`).
//!
//! The CLI tests run with plain `cargo test`; the device tests need the built library
//! (`#[ignore]`, run by `cargo xtask test`).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::{free_port, Device, RustDevice, Server};

/// The CLI with no flag but those given, in `cwd`, without the environment a developer
/// may have set.
fn cli_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CLOUDSYNC_SERVER")
        .env_remove("CLOUDSYNC_ADMIN_TOKEN")
        .env_remove("CLOUDSYNC_DATA_DIR")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_cli_finds_its_node_and_token_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cloudsync-data");
    let mut server = Server::start(&data, free_port(), &[]);
    let record: Value = serde_json::from_slice(&std::fs::read(data.join("server.json")).unwrap()).unwrap();
    assert_eq!(record["url"], server.url);

    // Next to the data directory: no flag at all.
    let id = ok(&cli_in(dir.path(), &["tenant", "create", "--name", "acme", "--field", "id"]));
    assert_eq!(id.len(), 36, "{id}");
    // Elsewhere: --data-dir, or the variable.
    let elsewhere = tempfile::tempdir().unwrap();
    let data_arg = data.to_str().unwrap();
    let listed = ok(&cli_in(elsewhere.path(), &["tenant", "list", "--data-dir", data_arg, "--json"]));
    assert!(listed.contains("acme"), "{listed}");
    let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args(["tenant", "get", "acme", "--field", "name"])
        .current_dir(elsewhere.path())
        .env("CLOUDSYNC_DATA_DIR", &data)
        .env_remove("CLOUDSYNC_SERVER")
        .env_remove("CLOUDSYNC_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(ok(&out), "acme");
    // `check-health` asks the recorded node too.
    ok(&cli_in(dir.path(), &["check-health", "--wait", "5"]));

    // A node that stopped: its record goes with it; one killed leaves it, and the CLI
    // says where the address came from and what to set.
    server.kill9();
    let err = fails(&cli_in(dir.path(), &["tenant", "list"]));
    assert!(err.contains(&format!("cannot reach the node at {}", server.url)), "{err}");
    assert!(err.contains("recorded in") && err.contains("server.json"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("--server") && err.contains("CLOUDSYNC_SERVER") && err.contains("--data-dir"), "{err}");
    let err = fails(&cli_in(dir.path(), &["check-health"]));
    assert!(err.contains("connection refused"), "{err}");
    server.restart();
    server.terminate();
    assert!(!data.join("server.json").exists(), "a node that stopped cleanly leaves no record");
}

#[test]
fn cli_errors_name_the_flag_or_variable_to_set() {
    let empty = tempfile::tempdir().unwrap();
    // No token anywhere.
    let err = fails(&cli_in(empty.path(), &["tenant", "list"]));
    assert!(err.contains("no admin token"), "{err}");
    for hint in ["--admin-token", "CLOUDSYNC_ADMIN_TOKEN", "--data-dir", "CLOUDSYNC_DATA_DIR"] {
        assert!(err.contains(hint), "{hint}: {err}");
    }
    let err = fails(&cli_in(empty.path(), &["tenant", "list", "--admin-token", " "]));
    assert!(err.contains("--admin-token or CLOUDSYNC_ADMIN_TOKEN is empty"), "{err}");
    // A token but no node: the default address, said to be the default.
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let err = fails(&cli_in(empty.path(), &["tenant", "list", "--server", &server, "--admin-token", "csa_x"]));
    assert!(err.contains(&format!("cannot reach the node at {server} (from --server or CLOUDSYNC_SERVER)")), "{err}");
    assert!(!err.contains("network: network"), "{err}");
    // (Only where nothing of the developer's own listens on the default port.)
    if TcpListener::bind("127.0.0.1:8080").is_ok() {
        let err = fails(&cli_in(empty.path(), &["tenant", "list", "--admin-token", "csa_x"]));
        assert!(err.contains("the default: no node recorded itself in cloudsync-data/server.json"), "{err}");
    }

    // The token of the data directory's node is never sent to another server.
    let dir2 = tempfile::tempdir().unwrap();
    let data2 = dir2.path().join("cloudsync-data");
    let _local = Server::start(&data2, free_port(), &[]);
    let err = fails(&cli_in(dir2.path(), &["tenant", "list", "--server", &server]));
    assert!(err.contains(&format!("no admin token for {server}")) && err.contains("--admin-token"), "{err}");

    // A token file that is not the node's: the 401 says which file.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cloudsync-data");
    let _server = Server::start(&data, free_port(), &[]);
    std::fs::write(data.join("admin-token"), "csa_not_this_nodes").unwrap();
    let err = fails(&cli_in(dir.path(), &["tenant", "list"]));
    assert!(err.contains("401") && err.contains("admin-token") && err.contains("--admin-token"), "{err}");
}

#[test]
fn tenants_and_databases_are_addressed_by_name_or_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cloudsync-data");
    let _server = Server::start(&data, free_port(), &[]);
    let cli = |args: &[&str]| ok(&cli_in(dir.path(), args));
    let tenant = cli(&["tenant", "create", "--name", "acme", "--field", "id"]);
    let db = cli(&["database", "create", "--tenant", "acme", "--name", "notes", "--field", "id"]);
    std::fs::write(dir.path().join("schema.sql"), "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);")
        .unwrap();
    let tables = cli(&["schema", "apply", "--tenant", "acme", "--database", "notes", "--file", "schema.sql", "--json"]);
    assert!(tables.contains("\"notes\""), "{tables}");
    // The same database by name and by id, in either combination.
    let by_name = cli(&["database", "get", "--tenant", "acme", "notes", "--field", "sync_url"]);
    let by_id = cli(&["database", "get", "--tenant", &tenant, &db, "--field", "sync_url"]);
    assert_eq!(by_name, by_id);
    assert!(by_name.ends_with(&format!("/v1/sync/{db}")), "{by_name}");
    let key = cli(&["key", "create", "--tenant", "acme", "--name", "phones", "--scope", "sync", "--field", "key"]);
    assert!(key.starts_with("csk_"), "{key}");
    let listed: Value = serde_json::from_str(&cli(&["key", "list", "--tenant", "acme", "--json"])).unwrap();
    assert_eq!(listed["items"][0]["name"], "phones");
    cli(&["device", "list", "--tenant", "acme", "--database", "notes"]);
    cli(&["job", "list", "--tenant", "acme", "--database", "notes"]);

    // Unknown and ambiguous names are refused with what to do.
    let err = fails(&cli_in(dir.path(), &["database", "get", "--tenant", "acme", "nope"]));
    assert!(err.contains("no database is named 'nope'") && err.contains("cloudsync database list"), "{err}");
    let second = cli(&["tenant", "create", "--name", "acme", "--field", "id"]);
    let err = fails(&cli_in(dir.path(), &["tenant", "get", "acme"]));
    assert!(err.contains("2 tenants are named 'acme'") && err.contains(&tenant) && err.contains(&second), "{err}");
    // A field the answer lacks names the fields it has.
    let err = fails(&cli_in(dir.path(), &["tenant", "get", &tenant, "--field", "nope"]));
    assert!(err.contains("no field 'nope'") && err.contains("name"), "{err}");

    // Deleting by name takes the name again as confirmation.
    cli(&["database", "delete", "--tenant", &tenant, "notes", "--confirm", "notes"]);
    let left: Value = serde_json::from_str(&cli(&["database", "list", "--tenant", &tenant, "--json"])).unwrap();
    assert_eq!(left["items"], json!([]));
}

/// A device of `p`'s database whose every call goes through `sql`; returns the error.
fn device_error(dir: &Path, name: &str, url: &str, key: &str, sql: &str) -> String {
    let mut d = RustDevice::open(name, &dir.join(format!("{name}.db")));
    d.exec("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)", &[]).unwrap();
    d.exec("SELECT cloudsync_init('notes')", &[]).unwrap();
    d.exec("SELECT cloudsync_network_init(?1)", &[json!(url)]).unwrap();
    if !key.is_empty() {
        d.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(key)]).unwrap();
    }
    // Something to send, so that a send makes a request.
    d.exec("INSERT INTO notes VALUES ('n1', 'one')", &[]).unwrap();
    d.exec(sql, &[]).expect_err("the call succeeded")
}

/// Every extension error starts with `cloudsync: <code>: ` once.
fn assert_code(err: &str, code: &str) {
    assert!(err.starts_with(&format!("cloudsync: {code}: ")), "expected code {code}: {err}");
    assert_eq!(err.matches("cloudsync:").count(), 1, "{err}");
    assert!(!err.contains("network: network"), "{err}");
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn device_errors_say_where_and_why_with_a_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("node"), free_port(), &[]);
    let p = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let db = &p.database;

    // Nothing listens there.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/v1/sync/{db}");
    let err = device_error(dir.path(), "refused", &url, &p.key, "SELECT cloudsync_network_send_changes()");
    assert_code(&err, "server_unreachable");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("connection refused"), "{err}");

    // A host name that does not resolve.
    let url = format!("http://no-such-host.invalid/v1/sync/{db}");
    let err = device_error(dir.path(), "dns", &url, &p.key, "SELECT cloudsync_network_check_changes()");
    assert_code(&err, "dns_failed");
    assert!(err.contains("no-such-host.invalid"), "{err}");

    // https:// against the plain-HTTP node.
    let url = format!("https://127.0.0.1:{}/v1/sync/{db}", server.port);
    let err = device_error(dir.path(), "tls", &url, &p.key, "SELECT cloudsync_network_send_changes()");
    assert_code(&err, "tls_failed");
    assert!(err.contains("use an http:// URL"), "{err}");

    // http:// against something that is not HTTP (a TLS server answers a plain request
    // with an alert and closes).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
        }
    });
    let url = format!("http://127.0.0.1:{tls_port}/v1/sync/{db}");
    let err = device_error(dir.path(), "not-http", &url, &p.key, "SELECT cloudsync_network_check_changes()");
    assert_code(&err, "not_http");
    assert!(err.contains("use an https:// URL"), "{err}");

    // Credentials refused when set, before any request.
    let mut d = RustDevice::open("keys", &dir.path().join("keys.db"));
    d.exec("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)", &[]).unwrap();
    d.exec("SELECT cloudsync_init('notes')", &[]).unwrap();
    for (sql, arg, wanted) in [
        ("SELECT cloudsync_network_set_apikey(?1)", "", "the API key is empty"),
        ("SELECT cloudsync_network_set_apikey(?1)", " csk_abc", "holds characters no API key has"),
        ("SELECT cloudsync_network_set_apikey(?1)", "hello", "an API key is csk_ followed by"),
        ("SELECT cloudsync_network_set_apikey(?1)", &server.token, "the operator's admin token"),
        ("SELECT cloudsync_network_set_apikey(?1)", "eyJh.eyJz.c2ln", "cloudsync_network_set_token"),
        ("SELECT cloudsync_network_set_token(?1)", "", "the token is empty"),
        ("SELECT cloudsync_network_set_token(?1)", &p.key, "cloudsync_network_set_apikey"),
        ("SELECT cloudsync_network_set_token(?1)", "not-a-jwt", "three base64url parts"),
    ] {
        let err = d.exec(sql, &[json!(arg)]).expect_err(sql);
        assert_code(&err, "invalid_credential");
        assert!(err.contains(wanted), "{arg:?}: {err}");
        assert!(arg.is_empty() || !err.contains(arg), "the refused credential is echoed: {err}");
    }
    // Nothing refused was kept: the next call says no credential is set.
    let err = d.exec("SELECT cloudsync_network_send_changes()", &[]).unwrap_err();
    assert_code(&err, "invalid_argument");

    // A key of another tenant: not found, with what to check (and the same answer as
    // for a database that does not exist, so ids cannot be probed).
    let other = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let err = device_error(dir.path(), "foreign", &p.sync_url, &other.key, "SELECT cloudsync_network_send_changes()");
    assert_code(&err, "not_found");
    assert!(err.contains(&p.sync_url) && err.contains("answered 404"), "{err}");
    assert!(err.contains("the tenant that owns the database"), "{err}");
    let missing = p.sync_url.replace(db, "0190f4e8-0000-7000-8000-000000000000");
    let err2 = device_error(dir.path(), "missing", &missing, &p.key, "SELECT cloudsync_network_send_changes()");
    assert_code(&err2, "not_found");
    assert_eq!(err.split("answered 404: ").nth(1), err2.split("answered 404: ").nth(1), "{err}\n{err2}");

    // Local errors carry their codes too.
    let mut d = RustDevice::open("local", &dir.path().join("local.db"));
    assert_code(&d.exec("SELECT cloudsync_init('nope')", &[]).unwrap_err(), "unsupported_table");
    d.exec("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL)", &[]).unwrap();
    assert_code(&d.exec("SELECT cloudsync_enable('t')", &[]).unwrap_err(), "not_synced");
    assert_code(&d.exec("SELECT cloudsync_payload_apply(x'00')", &[]).unwrap_err(), "invalid_payload");
    assert_code(&d.exec("SELECT cloudsync_network_init('ftp://x')", &[]).unwrap_err(), "invalid_argument");
}
