//! Malformed requests against the real server, sent byte for byte (no client rewrites
//! the path): every route of the OpenAPI document with hostile values in each path
//! segment, invalid UTF-8, dot segments, encoded slashes, oversized request lines and
//! header fields, too many header fields. Each answer is a JSON error with a code (4xx),
//! never a success and never a 5xx; afterwards the server is healthy and the central
//! database and the control plane are unchanged.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// One raw HTTP/1.1 exchange; returns the status, the content type and the body.
fn raw(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before reading a huge request to its end.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").map_or(out.len(), |p| p + 4);
    (status, content_type, out[body_at..].to_vec())
}

fn request(method: &str, path: &str, bearer: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n{extra}Connection: close\r\n\r\n{{}}"
    )
    .into_bytes()
}

/// Asserts a JSON error with a code and a 4xx status; returns the code.
fn json_error(what: &str, (status, content_type, body): (u16, String, Vec<u8>)) -> String {
    assert!((400..500).contains(&status), "{what}: status {status}: {}", String::from_utf8_lossy(&body));
    assert!(content_type.starts_with("application/json"), "{what}: {status} {content_type}");
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
    let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("{what}: no code in {v}"));
    assert!(!code.is_empty() && v["error"]["message"].is_string(), "{what}: {v}");
    code.to_string()
}

const HOSTILE: &[&str] = &[
    "..",
    "%2e%2E",
    ".",
    "..%2f..%2fcontrol.sqlite",
    "%2F",
    "%5C..%5C",
    "%FF%FE",
    "%C3",
    "%00",
    "a%0Ab",
    "x%20y",
    "%27%3B%20DROP%20TABLE%20tenants%3B--",
    "999999999999999999999999",
    "-1",
    "null",
    "%E2%80%AE",
];

#[test]
fn every_malformed_request_gets_a_json_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &[]);
    let p = server.provision("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);");
    let port = server.port;
    let before_rows = file_rows(&p.central, "SELECT count(*) FROM sqlite_master");
    let control = dir.path().join("data/control.sqlite");
    let state_sql = "SELECT (SELECT count(*) FROM tenants) || '/' || (SELECT count(*) FROM databases) || '/' || \
                     (SELECT count(*) FROM api_keys) || '/' || (SELECT group_concat(settings) FROM databases)";
    let before_control = file_rows(&control, state_sql);

    // Every route of the document, every path parameter hostile in turn.
    let (_, doc) = http("GET", &format!("{}/openapi.json", server.url), None, None, &[]).unwrap();
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    let real = |name: &str| match name {
        "tenant" => p.tenant.clone(),
        "db" => p.database.clone(),
        _ => "x".to_string(),
    };
    let mut checked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        let params: Vec<String> = template
            .split('{')
            .skip(1)
            .filter_map(|s| s.split('}').next())
            .map(|s| s.trim_start_matches('*').to_string())
            .collect();
        for method in ops.as_object().unwrap().keys() {
            let bearer = if template.starts_with("/v1/sync") { &p.key } else { &server.token };
            for target in &params {
                for bad in HOSTILE {
                    let mut path = template.clone();
                    for name in &params {
                        let value = if name == target { (*bad).to_string() } else { real(name) };
                        path = path.replace(&format!("{{{name}}}"), &value).replace(&format!("{{*{name}}}"), &value);
                    }
                    let what = format!("{} {path}", method.to_uppercase());
                    json_error(&what, raw(port, &request(&method.to_uppercase(), &path, bearer, "")));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} requests");

    // Paths no route serves, and malformed ones anywhere.
    for path in ["/%FF", "/v1/tenants/%FF%FE", "/v1/../control.sqlite", "/admin/%C0%AF", "/nothing/here", "/v1/sync/"] {
        json_error(path, raw(port, &request("GET", path, &server.token, "")));
    }
    // Oversized request line and header fields, too many fields: JSON 414/431.
    let long = format!("/v1/tenants?x={}", "a".repeat(60 << 10));
    assert_eq!(json_error("60 KiB target", raw(port, &request("GET", &long, &server.token, ""))), "uri_too_long");
    // hyper refuses targets over 64 KiB itself, without a body, and the server lives on.
    let longer = format!("/v1/tenants?x={}", "a".repeat(1 << 20));
    assert_eq!(raw(port, &request("GET", &longer, &server.token, "")).0, 414);
    let big_header = format!("X-Big: {}\r\n", "b".repeat(1 << 20));
    assert_eq!(
        json_error("1 MiB header", raw(port, &request("GET", "/v1/tenants", &server.token, &big_header))),
        "headers_too_large"
    );
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        json_error("300 headers", raw(port, &request("GET", "/v1/tenants", &server.token, &many))),
        "headers_too_large"
    );
    // Beyond what the server buffers at all, it still refuses (without a body) and lives on.
    let huge = format!("X-Huge: {}\r\n", "c".repeat(3 << 20));
    let (status, _, _) = raw(port, &request("GET", "/v1/tenants", &server.token, &huge));
    assert_eq!(status, 431);

    // Healthy, and nothing changed.
    let (status, _) = http("GET", &format!("{}/readyz", server.url), None, None, &[]).unwrap();
    assert_eq!(status, 200);
    let (status, body) =
        http("GET", &format!("{}/v1/tenants/{}", server.url, p.tenant), Some(&server.token), None, &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(file_rows(&p.central, "SELECT count(*) FROM sqlite_master"), before_rows);
    assert_eq!(file_rows(&control, state_sql), before_control);
    assert_eq!(json!(file_rows(&p.central, "SELECT count(*) FROM notes")), json!([[0]]));
}
