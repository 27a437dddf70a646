//! A hostile tenant against the real server: with an admin key of its own tenant it
//! tries to reach past its database through provisioning SQL and row policies —
//! statement smuggling in every comment and quoting form, `CREATE … AS SELECT`, views,
//! triggers, `ATTACH`, `VACUUM INTO`, `PRAGMA`, extension and file functions, subqueries
//! into the schema, error-message exfiltration. Each attempt is refused with a 4xx and a
//! stable code; afterwards the victim tenant's data and the control plane are unchanged
//! (compared by content), no file appeared outside the attacker's database, and no
//! response carried a path of the node or the victim's name or id (`docs/security.md`).

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use support::*;

fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A tenant of its own and an admin key of it: the attacker's means.
fn attacker(server: &Server) -> (String, String) {
    let attacker = server.admin("/v1/tenants", json!({ "name": "attacker" }));
    let a = attacker["id"].as_str().unwrap().to_string();
    let key = server.admin(&format!("/v1/tenants/{a}/api-keys"), json!({ "name": "admin", "scopes": ["admin"] }));
    (a, key["key"].as_str().unwrap().to_string())
}

/// A JSON request with `key`: the status, the JSON answer (or null) and its text.
fn call_as(server: &Server, key: &str, method: &str, path: &str, body: &Value) -> (u16, Value, String) {
    let (status, raw) = http(
        method,
        &format!("{}{path}", server.url),
        Some(key),
        Some(body.to_string().into_bytes()),
        &[("content-type", "application/json")],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

/// Everything the control plane holds, as text.
fn control_state(control: &Path) -> Vec<Vec<Value>> {
    file_rows(
        control,
        "SELECT 'tenant', id, name, suspended FROM tenants UNION ALL SELECT 'db', id, name, settings FROM databases \
         UNION ALL SELECT 'key', id, name, hex(hash) FROM api_keys ORDER BY 1, 2",
    )
}

const SMUGGLED: &[&str] = &[
    // The issue's own: a comment to pass a first-words classifier, then ATTACH.
    "/*CREATE TABLE*/ ATTACH DATABASE '{data}/control.sqlite' AS cp; \
     CREATE TABLE leak AS SELECT json_extract('{}', (SELECT group_concat(id||':'||name) FROM cp.tenants)) AS x",
    "CREATE TABLE p AS SELECT json_extract('{}', (SELECT group_concat(file) FROM pragma_database_list))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL); ATTACH DATABASE '{data}/control.sqlite' AS cp",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL) -- \n; ATTACH DATABASE 'x' AS y",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL); /* ; */ PRAGMA writable_schema = ON",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL); VACUUM INTO '{data}/stolen.sqlite'",
    "CREATE VIEW v AS SELECT * FROM sqlite_master",
    "CREATE TRIGGER t AFTER INSERT ON ok BEGIN SELECT load_extension('x'); END",
    "CREATE TEMP TABLE t (a)",
    "CREATE VIRTUAL TABLE f USING fts5(a)",
    "DROP TABLE notes",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT DEFAULT (load_extension('/tmp/x')))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT AS (readfile('{data}/admin-token')))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (cloudsync_payload_save('{data}/x', 0)))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (v IN (SELECT name FROM sqlite_master)))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (EXISTS (SELECT 1 FROM pragma_database_list)))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT DEFAULT (writefile('{data}/x', 'y')))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL); CREATE INDEX i ON ok (id) WHERE id IN (SELECT 1)",
    "CREATE TABLE \"ok\"\";ATTACH 'x' AS y;--\" (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (zeroblob(1000000000)))",
    "CREATE TABLE sqlite_stat1 (a)",
    "CREATE TABLE notes_cloudsync (a)",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (v REGEXP 'x'))",
    "CREATE TABLE ok (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (?1))",
];

const POLICIES: &[&str] = &[
    "owner = (SELECT name FROM tenants LIMIT 1)",
    "1); ATTACH DATABASE 'x' AS y; SELECT (1",
    "readfile('/etc/passwd') IS NOT NULL",
    "load_extension('x') IS NULL",
    "EXISTS (SELECT 1 FROM pragma_database_list)",
    "id IN (SELECT id FROM notes_cloudsync)",
    "cloudsync_payload_save('/tmp/x', 0) = 0",
    "title REGEXP 'x'",
];

#[test]
fn a_hostile_tenant_reaches_nothing_beyond_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, free_port(), &[]);
    let data_text = std::fs::canonicalize(&data).unwrap().display().to_string();
    // The victim: a tenant whose name and data must stay out of reach.
    let victim = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let victim_name = "victim-tenant-name";
    let (s, _) = http(
        "PATCH",
        &format!("{}/v1/tenants/{}", server.url, victim.tenant),
        Some(&server.token),
        Some(json!({ "name": victim_name }).to_string().into_bytes()),
        &[("content-type", "application/json")],
    )
    .unwrap();
    assert_eq!(s, 200);
    // The attacker, with an admin key of its own tenant and a database.
    let (a, key) = attacker(&server);
    let a = a.as_str();
    let db = server.admin(&format!("/v1/tenants/{a}/databases"), json!({ "name": "mine" }));
    let d = db["id"].as_str().unwrap().to_string();
    let call = |method: &str, path: &str, body: Value| call_as(&server, &key, method, path, &body);
    let (s, v, _) = call(
        "POST",
        &format!("/v1/tenants/{a}/databases/{d}/schema"),
        json!({ "sql": "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, owner TEXT, title TEXT);" }),
    );
    assert_eq!(s, 200, "{v}");

    let control = data.join("control.sqlite");
    let before_control = control_state(&control);
    let before_victim = file_rows(&victim.central, "SELECT type, name, sql FROM sqlite_master ORDER BY name");
    let before_files = files(&data);
    let clean = |what: &str, text: &str| {
        for secret in [data_text.as_str(), victim_name, victim.tenant.as_str(), victim.database.as_str(), "/tmp/"] {
            assert!(!text.contains(secret), "{what}: the answer carries {secret:?}: {text}");
        }
    };

    let mut refused = 0;
    for template in SMUGGLED {
        let sql = template.replace("{data}", &data_text);
        for dry in ["?dry_run=true", ""] {
            let (s, v, text) =
                call("POST", &format!("/v1/tenants/{a}/databases/{d}/schema{dry}"), json!({ "sql": sql }));
            assert_eq!(s, 400, "{sql}: {text}");
            let code = v["error"]["code"].as_str().unwrap_or_default();
            assert!(["invalid_sql", "refused_sql"].contains(&code), "{sql}: {text}");
            clean(&sql, &text);
            refused += 1;
        }
    }
    for policy in POLICIES {
        for side in ["read", "write"] {
            let (s, v, text) =
                call("PUT", &format!("/v1/tenants/{a}/databases/{d}/tables/notes/policy"), json!({ side: policy }));
            assert_eq!(s, 400, "{policy}: {text}");
            assert_eq!(v["error"]["code"], "invalid_request", "{text}");
            clean(policy, &text);
            refused += 1;
        }
    }
    // The same attempts against the victim's database are not even found.
    let (s, _, text) = call(
        "POST",
        &format!("/v1/tenants/{}/databases/{}/schema", victim.tenant, victim.database),
        json!({ "sql": "CREATE TABLE x (id TEXT PRIMARY KEY NOT NULL)" }),
    );
    assert!(s == 403 || s == 404, "{text}");
    clean("another tenant's database", &text);

    assert!(refused > 60);
    assert_eq!(control_state(&control), before_control, "the control plane changed");
    assert_eq!(
        file_rows(&victim.central, "SELECT type, name, sql FROM sqlite_master ORDER BY name"),
        before_victim,
        "the victim's database changed"
    );
    let after_files = files(&data);
    let mine = format!("databases/{d}.sqlite");
    let new: Vec<&String> = after_files.difference(&before_files).filter(|f| !f.starts_with(&mine)).collect();
    assert!(new.is_empty(), "files appeared: {new:?}");
    // The attacker's own schema is as it made it, plus nothing.
    let own = file_rows(&data.join(&mine), "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    assert!(
        own.iter().all(|r| {
            let n = r[0].as_str().unwrap();
            n == "notes" || n.starts_with("notes_cloudsync") || n.starts_with("cloudsync_")
        }),
        "{own:?}"
    );
}

/// A hostile tenant aiming the node at what sits next to it: JWKS and PostgreSQL URLs
/// at loopback (by address, by name, in IPv6 and numeric disguises), link-local (the
/// cloud metadata address), private ranges, unix sockets, and connection parameters
/// that redirect the connection or read the node's files. Each is refused with a 4xx
/// and a stable code, before anything connects: an internal service listening on
/// loopback sees no connection at all.
#[test]
fn a_hostile_tenant_cannot_aim_the_node_at_its_neighbours() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&hits);
    std::thread::spawn(move || {
        for _ in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, free_port(), &[]);
    let data_text = std::fs::canonicalize(&data).unwrap().display().to_string();
    let (a, key) = attacker(&server);
    let a = a.as_str();
    let call = |method: &str, path: &str, body: Value| call_as(&server, &key, method, path, &body);
    let control = data.join("control.sqlite");
    let before_control = control_state(&control);

    let refused_hosts = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("0x7f.1:{port}"),
        format!("2130706433:{port}"),
        format!("0.0.0.0:{port}"),
        "169.254.169.254".to_string(),
        "[fe80::1]".to_string(),
        "10.0.0.1".to_string(),
        "172.16.5.4".to_string(),
        "192.168.1.1".to_string(),
        "100.64.0.1".to_string(),
        "[fd00::1]".to_string(),
    ];
    let mut refused = 0;
    for host in &refused_hosts {
        let jwks = format!("http://{host}/.well-known/jwks.json");
        let (s, v, text) = call(
            "PUT",
            &format!("/v1/tenants/{a}/identity"),
            json!({ "method": "jwks", "jwks_url": jwks, "issuer": "i", "audience": "a" }),
        );
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("egress_refused")), "{jwks}: {text}");
        assert!(text.contains("egress policy"), "{text}");
        let pg = format!("postgres://u:secret@{host}/db");
        let (s, v, text) = call(
            "POST",
            &format!("/v1/tenants/{a}/databases"),
            json!({ "name": "internal", "backend": { "kind": "postgres", "url": pg } }),
        );
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("egress_refused")), "{pg}: {text}");
        assert!(!text.contains("secret"), "{text}");
        if host.starts_with("localhost") {
            assert!(!text.contains("127.0.0.1"), "the answer names what the host resolved to: {text}");
        }
        refused += 2;
    }
    // URLs that are not a host at all, or that redirect or read files: refused before
    // any name is resolved (example.com would not even resolve here).
    let malformed_jwks =
        ["file:///etc/passwd", "unix:/run/idp.sock", "http://user:pw@example.com/jwks", "ftp://example.com/x"];
    for jwks in malformed_jwks {
        let (s, v, text) = call(
            "PUT",
            &format!("/v1/tenants/{a}/identity"),
            json!({ "method": "jwks", "jwks_url": jwks, "issuer": "i", "audience": "a" }),
        );
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{jwks}: {text}");
        refused += 1;
    }
    let malformed_pg = [
        "postgres://u@%2Frun%2Fpostgresql/db".to_string(),
        "postgres://u:p@example.com,10.0.0.1/db".to_string(),
        "postgres://u:p@example.com/db?host=/run/postgresql".to_string(),
        "postgres://u:p@example.com/db?host=127.0.0.1".to_string(),
        format!("postgres://u:p@example.com/db?hostaddr=127.0.0.1&port={port}"),
        format!("postgres://u:p@example.com/db?port={port}"),
        format!("postgres://u:p@example.com/db?sslkey={data_text}/secrets.key"),
        format!("postgres://u:p@example.com/db?sslcert={data_text}/admin-token"),
        "postgres://u:p@example.com/db?sslrootcert=/etc/ssl/certs/ca.pem".to_string(),
        "postgres://u:p@example.com/db?service=internal".to_string(),
        "postgres://u:p@example.com/db?passfile=/root/.pgpass".to_string(),
        "postgres://u:p@example.com/db?options=-c%20search_path%3Dx".to_string(),
        "postgres://u:p@example.com/db?sslmode=bogus".to_string(),
        "postgres://u:p@example.com/db#frag".to_string(),
        "mysql://u:p@example.com/db".to_string(),
    ];
    for pg in &malformed_pg {
        let (s, v, text) = call(
            "POST",
            &format!("/v1/tenants/{a}/databases"),
            json!({ "name": "internal", "backend": { "kind": "postgres", "url": pg } }),
        );
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{pg}: {text}");
        assert!(!text.contains(&data_text), "{text}");
        refused += 1;
    }
    assert!(refused > 40);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the node connected to the internal service");
    assert_eq!(control_state(&control), before_control, "the control plane changed");
}
