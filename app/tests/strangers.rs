//! What a stranger (or a device going beyond its rights) can do with uploads, against
//! the real server: a signed upload URL is checked before its body is read, is bound to
//! the size and hash it was issued for (keys name the hash, so a replay writes nothing new); the object validated at
//! upload is the object applied; a payload declaring more than the decompression limit
//! is refused before it is decompressed (`docs/security.md`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Change, Cursor, SiteId, Value};
use serde_json::{json, Value as Json};
use support::*;

const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);";

fn payload(site: SiteId, ids: &[&str]) -> Vec<u8> {
    let mut enc = PayloadEncoder::new(EncodeOptions::default());
    for (i, id) in (1u64..).zip(ids) {
        let change = Change {
            table: "notes".into(),
            pk: encode_key(&[Value::Text(id.as_bytes().to_vec())]),
            column: Some("title".into()),
            value: Value::Text(format!("title of {id}").into_bytes()),
            col_version: 1,
            at: Cursor::new(i, 1),
            site,
            cl: 1,
        };
        enc.push(change, |_| (cloudsync_core::Algo::Cls, 0)).unwrap();
    }
    enc.finish()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A raw PUT of `len` declared bytes of which `send` are sent; the status answered.
fn raw_put(port: u16, path_and_query: &str, len: usize, send: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(send);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn signed_uploads_are_checked_first_and_bound_to_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let site = SiteId([7; 16]);
    let site_hex = site.to_string();
    let body = payload(site, &["a", "b"]);
    let call = |method: &str, path: &str, body: Option<Vec<u8>>, ct: &str| -> (u16, Json) {
        let (status, raw) = http(
            method,
            &format!("{}{path}", p.sync_url),
            Some(&p.key),
            body,
            &[
                ("content-type", ct),
                ("x-cloudsync-site", &site_hex),
                ("x-cloudsync-from", "0"),
                ("x-cloudsync-to", "1"),
            ],
        )
        .unwrap();
        (status, serde_json::from_slice(&raw).unwrap_or(Json::Null))
    };

    // A stranger's 64 MiB body behind a forged signature: refused before it is read.
    let forged =
        format!("/v1/blobs/{}/{site_hex}/x.csyn?op=put&len=67108864&expires=99999999999999&sig=00", p.database);
    assert_eq!(raw_put(server.port, &forged, 64 << 20, &[0; 1 << 16]), 403);

    // A ticket is issued for a size and a hash.
    let (s, v) = call("POST", "/uploads", Some(b"{}".to_vec()), "application/json");
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(
        "POST",
        "/uploads",
        Some(json!({ "bytes": 300u64 << 20, "sha256": "00".repeat(32) }).to_string().into_bytes()),
        "application/json",
    );
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");
    let announce = json!({ "bytes": body.len(), "sha256": sha256_hex(&body) }).to_string().into_bytes();
    let (s, ticket) = call("POST", "/uploads", Some(announce.clone()), "application/json");
    assert_eq!(s, 201, "{ticket}");
    let url = ticket["upload_url"].as_str().unwrap();
    let path = &url[url.find("/v1/blobs/").unwrap()..];
    let object = ticket["object"].as_str().unwrap();
    assert!(object.ends_with(&format!("/{}.csyn", sha256_hex(&body))));

    // Other sizes, other bytes: refused; the announced bytes: stored; replayed: nothing
    // new (the key names the bytes' hash).
    assert_eq!(raw_put(server.port, path, body.len() + 1, &[0; 8]), 400);
    let mut other = body.clone();
    *other.last_mut().unwrap() ^= 1;
    assert_eq!(raw_put(server.port, path, other.len(), &other), 400);
    assert_eq!(raw_put(server.port, path, body.len(), &body), 201);
    assert_eq!(raw_put(server.port, path, body.len(), &body), 201);
    let (s, v) =
        call("POST", "/changes", Some(json!({ "object": object }).to_string().into_bytes()), "application/json");
    assert_eq!(s, 202, "{v}");
    drain_jobs(&server, &p);
    assert_eq!(file_rows(&p.central, "SELECT id FROM notes ORDER BY id"), vec![vec![json!("a")], vec![json!("b")]]);

    // A payload declaring more than the decompression limit: refused unread.
    let mut bomb = payload(site, &["c"]);
    let frame = 14; // the first frame's header, after the payload's
    bomb[frame + 5..frame + 9].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let (s, v) = call("POST", "/changes", Some(bomb), "application/vnd.cloudsync.payload");
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("once decompressed"), "{v}");
}

/// Waits until the database's jobs are all done.
fn drain_jobs(server: &Server, p: &Provisioned) {
    for _ in 0..200 {
        let (_, raw) = http(
            "GET",
            &format!("{}/v1/tenants/{}/databases/{}/jobs", server.url, p.tenant, p.database),
            Some(&server.token),
            None,
            &[],
        )
        .unwrap();
        let v: Json = serde_json::from_slice(&raw).unwrap();
        if v["items"].as_array().unwrap().iter().all(|j| j["state"] == "done") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("jobs not done");
}

/// Guessing credentials costs the guesser its address: past the limit every
/// authentication from it is refused, valid or not, so a guess learns nothing, while
/// other addresses are untouched. Behind a proxy the address is the header the
/// operator names.
#[test]
#[ignore = "needs the built binary; run by cargo xtask test"]
fn failed_authentications_lock_out_their_address() {
    let call = |server: &Server, token: &str, client: Option<&str>| {
        let headers: Vec<(&str, &str)> = client.map(|c| vec![("x-client-address", c)]).unwrap_or_default();
        let (status, body) = http("GET", &format!("{}/v1/tenants", server.url), Some(token), None, &headers).unwrap();
        let body: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
    };
    let unauthorized = (401, "unauthorized".to_string());
    let locked = (429, "too_many_failed_attempts".to_string());

    // The connection's peer: here, loopback.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &["--auth-failures-per-minute", "3"]);
    let admin = server.token.clone();
    assert_eq!(call(&server, &admin, None).0, 200);
    for guess in ["csk_guess1", "csk_guess2", "not-a-token", "csk_guess4"] {
        assert_eq!(call(&server, guess, None), unauthorized);
    }
    assert_eq!(call(&server, &admin, None), locked, "the right token from a locked-out address is refused too");
    // The dashboard's sign-in counts and refuses alike.
    let (status, _) = http(
        "POST",
        &format!("{}/admin/login", server.url),
        None,
        Some(b"token=x&csrf=x".to_vec()),
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .unwrap();
    assert_eq!(status, 429);

    // Behind a proxy: the header it sets is the address; clients without it are not
    // counted, and each address has its own bucket.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        free_port(),
        &["--auth-failures-per-minute", "3", "--client-address-header", "x-client-address"],
    );
    let admin = server.token.clone();
    for _ in 0..4 {
        assert_eq!(call(&server, "csk_guess", Some("198.51.100.7, 203.0.113.9")), unauthorized);
    }
    assert_eq!(call(&server, &admin, Some("203.0.113.9")), locked, "the proxy's own entry (the last) counts");
    assert_eq!(call(&server, &admin, Some("198.51.100.7, 203.0.113.10")).0, 200);
    assert_eq!(call(&server, &admin, Some("2001:db8::1")).0, 200);
}
