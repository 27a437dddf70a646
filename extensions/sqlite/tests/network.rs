//! The network layer against a server that answers wrongly. The real service is what
//! the extension host tests and `app/tests/e2e.rs` sync with; these cases need a server
//! that misbehaves on purpose, so a few lines of HTTP over a loopback socket play it.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;

/// Serves `answer(method, path)` — a status line and a JSON body — to every request,
/// and records what was asked.
fn server(answer: fn(&str, &str) -> (&'static str, String)) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/sync/db1", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(format!("{method} {path}"));
            let (status, json) = answer(&method, &path);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    (url, asked)
}

fn device(url: &str) -> rusqlite::Connection {
    let c = db_with_t("cls");
    c.query_row("SELECT cloudsync_network_init(?1)", [url], |_| Ok(())).unwrap();
    c.query_row("SELECT cloudsync_network_set_apikey('csk_test')", [], |_| Ok(())).unwrap();
    c.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    c
}

/// A `202` naming another position than the one the upload ended at is not an
/// acknowledgement of these changes: the device raises and keeps them unsent.
#[test]
fn an_upload_acknowledged_at_another_position_stays_unsent() {
    let (url, asked) = server(|_, _| ("202 Accepted", r#"{"job":1,"accepted":"0","changes":1}"#.to_string()));
    let c = device(&url);
    let e = err(&c, "SELECT cloudsync_network_send_changes()");
    assert!(e.contains("not counted as sent"), "{e}");
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_network_has_unsent_changes()"), 1);
    assert_eq!(asked.lock().unwrap().first().map(String::as_str), Some("POST /v1/sync/db1/changes"));
}

/// An answer that is not the protocol's body is refused as such, and an error body is
/// read for its code and message.
#[test]
fn answers_outside_the_protocol_are_errors_not_guesses() {
    let (url, _) = server(|_, _| ("202 Accepted", r#"{"job":"one"}"#.to_string()));
    let c = device(&url);
    let e = err(&c, "SELECT cloudsync_network_send_changes()");
    assert!(e.starts_with("cloudsync: bad_response: unexpected answer from http://"), "{e}");
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_network_has_unsent_changes()"), 1);

    let (url, _) = server(|_, _| {
        ("403 Forbidden", r#"{"error":{"code":"device_blocked","message":"this device is blocked"}}"#.to_string())
    });
    let c = device(&url);
    let e = err(&c, "SELECT cloudsync_network_send_changes()");
    assert!(e.contains("device_blocked") && e.contains("this device is blocked"), "{e}");
    assert_eq!(one::<i64>(&c, "SELECT cloudsync_network_has_unsent_changes()"), 1);
}
