//! Helpers of the end-to-end tests: the real `cloudsync` binary as a child process, and
//! devices that load the built `libcloudsync.so` — in-process through rusqlite, or in a
//! Python child process through its `sqlite3` module.
#![allow(dead_code, unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Path of the built extension (set by `cargo xtask test`).
pub fn extension() -> String {
    std::env::var("CLOUDSYNC_EXTENSION")
        .expect("CLOUDSYNC_EXTENSION must point at the built libcloudsync.so (cargo xtask test sets it)")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `cloudsync serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub url: String,
    pub token: String,
    extra: Vec<String>,
}

impl Server {
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        Self::spawn(data_dir, port, extra, None)
    }

    /// Like [`Server::start`], logging everything (debug level) to `log`.
    #[allow(dead_code)]
    pub fn start_logged(data_dir: &Path, port: u16, extra: &[&str], log: &Path) -> Server {
        Self::spawn(data_dir, port, extra, Some(log))
    }

    fn spawn(data_dir: &Path, port: u16, extra: &[&str], log: Option<&Path>) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (level, stderr) = match log {
            Some(path) => ("debug", Stdio::from(std::fs::File::create(path).unwrap())),
            None => ("warn", Stdio::inherit()),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start cloudsync serve");
        // The first line says where it listens; later lines are drained by a thread so
        // the pipe never fills.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("server output").unwrap();
        assert!(first.contains("listening on"), "unexpected first line: {first}");
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap().trim().to_string();
        let url = format!("http://127.0.0.1:{port}");
        let s = Server { child, port, data_dir: data_dir.to_path_buf(), url, token, extra };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http("GET", &format!("{}/readyz", self.url), None, None, &[]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become ready");
    }

    /// SIGKILL: no cleanup of any kind.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }

    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let fresh = Server::start(&self.data_dir, self.port, &extra);
        *self = fresh;
    }

    /// `POST`s `body` to `path` as the operator; panics unless it succeeds.
    pub fn admin(&self, path: &str, body: Value) -> Value {
        self.operator("POST", path, body)
    }

    /// `GET`s `path` as the operator; panics unless it succeeds.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = http("GET", &format!("{}{path}", self.url), Some(&self.token), None, &[]).unwrap();
        assert!((200..300).contains(&status), "{path}: {status} {}", String::from_utf8_lossy(&v));
        serde_json::from_slice(&v).unwrap()
    }

    /// `PUT`s `body` to `path` as the operator; panics unless it succeeds.
    pub fn put(&self, path: &str, body: Value) -> Value {
        self.operator("PUT", path, body)
    }

    fn operator(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = http(
            method,
            &format!("{}{path}", self.url),
            Some(&self.token),
            Some(body.to_string().into_bytes()),
            &[("content-type", "application/json")],
        )
        .unwrap();
        assert!((200..300).contains(&status), "{path}: {status} {}", String::from_utf8_lossy(&v));
        serde_json::from_slice(&v).unwrap()
    }

    /// A tenant with one database holding `schema`, and a sync key.
    pub fn provision(&self, schema: &str) -> Provisioned {
        let tenant = self.admin("/v1/tenants", json!({ "name": "e2e" }));
        let t = tenant["id"].as_str().unwrap().to_string();
        let db = self
            .admin(&format!("/v1/tenants/{t}/databases"), json!({ "name": "main", "backend": { "kind": "sqlite" } }));
        let d = db["id"].as_str().unwrap().to_string();
        self.admin(&format!("/v1/tenants/{t}/databases/{d}/schema"), json!({ "sql": schema }));
        let key = self.admin(&format!("/v1/tenants/{t}/api-keys"), json!({ "name": "devices", "scopes": ["sync"] }));
        Provisioned {
            tenant: t,
            database: d.clone(),
            sync_url: db["sync_url"].as_str().unwrap().to_string(),
            key: key["key"].as_str().unwrap().to_string(),
            central: self.data_dir.join("databases").join(format!("{d}.sqlite")),
        }
    }
}

impl Server {
    /// A database of `tenant` whose central copy is the PostgreSQL database at `url`,
    /// holding `schema`, synced by devices with the API key `key`.
    pub fn postgres_database(&self, tenant: &str, key: &str, name: &str, url: &str, schema: &str) -> Provisioned {
        let db = self.admin(
            &format!("/v1/tenants/{tenant}/databases"),
            json!({ "name": name, "backend": { "kind": "postgres", "url": format!("{url}?sslmode=disable") } }),
        );
        let d = db["id"].as_str().unwrap().to_string();
        self.admin(&format!("/v1/tenants/{tenant}/databases/{d}/schema"), json!({ "sql": schema }));
        Provisioned {
            tenant: tenant.to_string(),
            database: d,
            sync_url: db["sync_url"].as_str().unwrap().to_string(),
            key: key.to_string(),
            central: self.data_dir.join("not-a-sqlite-backend"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Provisioned {
    pub tenant: String,
    pub database: String,
    pub sync_url: String,
    pub key: String,
    pub central: PathBuf,
}

/// Runs the operator CLI against `server` with `--json`; panics with its stderr on failure.
pub fn cli(server: &Server, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args(args)
        .args(["--server", &server.url, "--admin-token", &server.token, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cloudsync {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the operator CLI against `server`, expecting it to fail; returns its stderr.
pub fn cli_fails(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args(args)
        .args(["--server", &server.url, "--admin-token", &server.token])
        .output()
        .unwrap();
    assert!(!out.status.success(), "cloudsync {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One HTTP request; returns status and body (transport errors as Err).
pub fn http(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    http_with_headers(method, url, bearer, body, headers).map(|(status, _, body)| (status, body))
}

/// An HTTP answer: status, headers (names lower case), body.
pub type Answer = (u16, std::collections::BTreeMap<String, String>, Vec<u8>);

/// [`http`], with the answer's headers.
pub fn http_with_headers(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.unwrap_or_default()).map_err(|e| e.to_string())?;
    let mut resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let answer_headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.body_mut().read_to_vec().map_err(|e| e.to_string())?;
    Ok((status, answer_headers, body))
}

/// A SQL value in the tests' neutral form.
pub type Row = Vec<Value>;

/// A device: a SQLite database with the extension loaded.
pub trait Device {
    fn name(&self) -> &str;
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, String>;

    fn sql(&mut self, sql: &str) -> Vec<Row> {
        self.exec(sql, &[]).unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name()))
    }

    fn one(&mut self, sql: &str) -> Value {
        self.sql(sql).into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Value::Null)
    }

    fn join(&mut self, schema: &str, p: &Provisioned) {
        self.sql(schema);
        self.sql("SELECT cloudsync_init('notes')");
        self.exec("SELECT cloudsync_network_init(?1)", &[json!(p.sync_url)]).unwrap();
        self.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(p.key)]).unwrap();
    }

    fn sync(&mut self, wait_ms: u64) -> Result<Value, String> {
        let rows = self.exec(&format!("SELECT cloudsync_network_sync({wait_ms}, 5)"), &[])?;
        Ok(serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap())
    }

    fn rows(&mut self) -> Vec<Row> {
        self.sql("SELECT * FROM notes ORDER BY id")
    }
}

fn value_of(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => json!({ "blob": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    }
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Number(n) if n.is_i64() => rusqlite::types::Value::Integer(n.as_i64().unwrap()),
        Value::Number(n) => rusqlite::types::Value::Real(n.as_f64().unwrap()),
        Value::String(s) => rusqlite::types::Value::Text(s.clone()),
        other => rusqlite::types::Value::Text(other.to_string()),
    }
}

/// Rows of a SQLite file (the central database), read directly.
pub fn file_rows(path: &Path, sql: &str) -> Vec<Row> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c.prepare(sql).unwrap();
    let n = s.column_count();
    s.query_map([], |r| (0..n).map(|i| r.get_ref(i).map(value_of)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// A device in this process: rusqlite (bundled SQLite) loading the extension.
pub struct RustDevice {
    pub name: String,
    pub conn: rusqlite::Connection,
}

impl RustDevice {
    pub fn open(name: &str, path: &Path) -> RustDevice {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        // SAFETY: the library is this workspace's own extension, built by `cargo xtask
        // test`; its entry point follows SQLite's loadable-extension protocol. The guard
        // turns extension loading off again when it goes out of scope.
        unsafe {
            let _guard = rusqlite::LoadExtensionGuard::new(&conn).unwrap();
            conn.load_extension(extension(), None::<&str>).unwrap();
        }
        RustDevice { name: name.to_string(), conn }
    }
}

impl Device for RustDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, String> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| (0..n).map(|i| r.get_ref(i).map(value_of)).collect())
            .map_err(|e| e.to_string())?
            .collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(|e| e.to_string())?;
        Ok(rows)
    }
}

/// A device in a Python child process (Debian's /usr/bin/python3 and its SQLite 3.40).
pub struct PyDevice {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyDevice {
    pub fn open(name: &str, path: &Path) -> PyDevice {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/device.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(extension())
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python device");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut hello = String::new();
        stdout.read_line(&mut hello).unwrap();
        assert!(hello.contains("\"ok\": true"), "python device failed to start: {hello}");
        PyDevice { name: name.to_string(), child, stdin, stdout }
    }
}

impl Device for PyDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, String> {
        writeln!(self.stdin, "{}", json!({ "sql": sql, "params": params })).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line}: {e}"));
        if v["ok"] == json!(true) {
            Ok(serde_json::from_value(v["rows"].clone()).unwrap())
        } else {
            Err(v["error"].as_str().unwrap_or("").to_string())
        }
    }
}

impl Drop for PyDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server has applied every upload of `devices` (no pending jobs).
pub fn drain(devices: &mut [&mut dyn Device]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for d in devices.iter_mut() {
        loop {
            let status = d.exec("SELECT cloudsync_network_status()", &[]);
            if let Ok(rows) = status {
                let v: Value = serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap();
                if v["device"]["pending"] == json!(0) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{}: uploads not applied in time", d.name());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The PostgreSQL server of the tests (`CLOUDSYNC_TEST_PG_URL`, set by `cargo xtask
/// test`), without a database name.
pub fn pg_server_base() -> String {
    let url =
        std::env::var("CLOUDSYNC_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url[..url.rfind('/').unwrap()].to_string()
}

/// Runs SQL with psql; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-XAtqc", sql]).output().expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL database ready for a backend whose devices act as `authenticated`.
pub const PG_BACKEND_SETUP: &str = r#"
DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
CREATE EXTENSION cloudsync;
"#;

/// Row-level security on a synced table `notes (id, body)` whose write policy never
/// returns for the body 'spin' (its PL/pgSQL loop checks for interrupts at every
/// statement): a tenant's runaway policy. Every row is readable.
pub const PG_RUNAWAY_POLICY: &str = r#"
CREATE FUNCTION spins(body text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    WHILE body = 'spin' LOOP PERFORM 1; END LOOP;
    RETURN true;
END $f$;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
CREATE POLICY notes_read ON notes FOR SELECT TO authenticated USING (true);
CREATE POLICY notes_write ON notes FOR INSERT TO authenticated WITH CHECK (spins(body));
CREATE POLICY notes_update ON notes FOR UPDATE TO authenticated USING (true) WITH CHECK (spins(body));
"#;

/// A throw-away PostgreSQL database, dropped at the end.
pub struct PgDb {
    pub admin: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// `cs_test_<label>_<pid>`, created afresh and set up with `setup`.
    pub fn new(label: &str, setup: &str) -> PgDb {
        let admin = format!("{}/postgres", pg_server_base());
        let name = format!("cs_test_{label}_{}", std::process::id());
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", pg_server_base());
        if !setup.is_empty() {
            psql(&url, setup);
        }
        PgDb { admin, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

#[path = "../../../service/tests/s3_server/mod.rs"]
mod s3_server;
// Not every test crate including this module starts an S3 server.
#[allow(unused_imports)]
pub use s3_server::s3_server;
