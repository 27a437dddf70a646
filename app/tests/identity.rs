//! End-to-end: devices authenticating with JWTs from a tenant's identity provider
//! published as a JWKS (served by this test over HTTP), including a key rotation the
//! running service picks up without a restart; on a PostgreSQL control plane
//! (`--control-plane-url`), managed with the operator CLI.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use support::*;

const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT, n INTEGER DEFAULT 0)";
const ISSUER: &str = "https://login.example.test";
const AUDIENCE: &str = "notes-app";

/// A signing key and its public JWK.
struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

fn key(kid: &str) -> Key {
    let signing = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    Key { kid: kid.to_string(), encoding, jwk }
}

fn token(k: &Key, user: &str) -> String {
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(k.kid.clone());
    let claims = json!({ "sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(&header, &claims, &k.encoding).unwrap()
}

/// A minimal identity provider: serves the current JWKS at `/jwks.json` and counts
/// fetches.
struct Idp {
    url: String,
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    fn start() -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(String::from("{\"keys\":[]}")));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (Arc::clone(&jwks), Arc::clone(&fetches));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Request line and headers, up to the blank line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Idp { url, jwks, fetches }
    }

    fn publish(&self, keys: &[&Key]) {
        let set = JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() };
        *self.jwks.lock().unwrap() = serde_json::to_string(&set).unwrap();
    }
}

/// A fresh PostgreSQL database for the control plane; dropped at the end.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create() -> PgDatabase {
        let admin = std::env::var("CLOUDSYNC_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("cs_test_{}", std::process::id());
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        PgDatabase { admin, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql").args([url, "-XAtqc", sql]).output().expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

fn join_with_token(d: &mut dyn Device, sync_url: &str, jwt: &str) {
    d.sql(SCHEMA);
    d.sql("SELECT cloudsync_init('notes')");
    d.exec("SELECT cloudsync_network_init(?1)", &[json!(sync_url)]).unwrap();
    d.exec("SELECT cloudsync_network_set_token(?1)", &[json!(jwt)]).unwrap();
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn devices_sync_with_jwks_tokens_across_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create();
    let server = Server::start(
        &dir.path().join("server"),
        free_port(),
        // The identity provider runs on loopback, as on an operator's single machine.
        &["--control-plane-url", &pg.url, "--usage-flush-secs", "1", "--egress-allow", "127.0.0.1"],
    );
    let idp = Idp::start();
    let k1 = key("k1");
    idp.publish(&[&k1]);

    // Provisioning with the CLI.
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, SCHEMA).unwrap();
    let t = cli(&server, &["tenant", "create", "--name", "jwks"]);
    let tid = t["id"].as_str().unwrap();
    let db = cli(&server, &["database", "create", "--tenant", tid, "--name", "main"]);
    let did = db["id"].as_str().unwrap();
    let sync_url = db["sync_url"].as_str().unwrap();
    cli(&server, &["schema", "apply", "--tenant", tid, "--database", did, "--file", schema.to_str().unwrap()]);
    let identity = cli(
        &server,
        &[
            "identity",
            "set",
            "--tenant",
            tid,
            "--method",
            "jwks",
            "--jwks-url",
            &idp.url,
            "--algorithm",
            "ES256",
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
        ],
    );
    assert_eq!((identity["method"].as_str(), identity["algorithm"].as_str()), (Some("jwks"), Some("ES256")));

    // Alice syncs with a token signed by k1.
    let mut alice = PyDevice::open("alice", &dir.path().join("alice.db"));
    join_with_token(&mut alice, sync_url, &token(&k1, "alice"));
    alice.sql("INSERT INTO notes (id, title) VALUES ('a1', 'from alice')");
    alice.sync(0).unwrap();
    drain(&mut [&mut alice]);
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);

    // The provider rotates to k2 and drops k1; the running service follows.
    let k2 = key("k2");
    idp.publish(&[&k2]);
    let mut bob = RustDevice::open("bob", &dir.path().join("bob.db"));
    join_with_token(&mut bob, sync_url, &token(&k2, "bob"));
    bob.sync(0).unwrap();
    assert_eq!(bob.rows().len(), 1, "bob, on the new key, received alice's row");
    bob.sql("INSERT INTO notes (id, title) VALUES ('b1', 'from bob')");
    bob.sync(0).unwrap();
    drain(&mut [&mut bob]);
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2, "one refetch for the new key id");

    // Alice's old token names a key the provider withdrew: refused, clearly.
    let e = alice.sync(0).unwrap_err();
    assert!(e.contains("401") || e.contains("unauthorized"), "{e}");
    // Unknown key ids right after a refetch do not make the service fetch again.
    let mut mallory = RustDevice::open("mallory", &dir.path().join("m.db"));
    join_with_token(&mut mallory, sync_url, &token(&key("k-random"), "mallory"));
    assert!(mallory.sync(0).is_err());
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2, "refetches for unknown key ids are rate limited");
    // With a fresh token, alice syncs again and converges with bob.
    alice.exec("SELECT cloudsync_network_set_token(?1)", &[json!(token(&k2, "alice"))]).unwrap();
    alice.sync(0).unwrap();
    assert_eq!(alice.rows(), bob.rows());

    // The operator sees both devices with their users (usage is flushed each second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let users = loop {
        let devices = cli(&server, &["device", "list", "--tenant", tid, "--database", did]);
        let mut users: Vec<String> = devices["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["user_id"].as_str().map(str::to_string))
            .collect();
        users.sort();
        if users == ["alice", "bob"] || Instant::now() > deadline {
            break users;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(users, ["alice", "bob"]);
    let usage = cli(&server, &["database", "usage", "--tenant", tid, did]);
    assert!(usage["changes_in"].as_i64().unwrap() >= 2 && usage["active_devices"].as_i64() == Some(2), "{usage}");
    // A blocked device is refused with a clear error until unblocked.
    let site = bob.one("SELECT lower(hex(cloudsync_siteid()))");
    cli(&server, &["device", "block", "--tenant", tid, "--database", did, site.as_str().unwrap(), "--reason", "lost"]);
    let e = bob.sync(0).unwrap_err();
    assert!(e.contains("blocked"), "{e}");
    cli(&server, &["device", "unblock", "--tenant", tid, "--database", did, site.as_str().unwrap()]);
    bob.sync(0).unwrap();

    // `cloudsync migrate` on the same store: nothing left to apply.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args(["migrate", "--control-plane-url", &pg.url, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["applied"], 0);
    assert!(m["version"].as_i64().unwrap() >= 2);
}
