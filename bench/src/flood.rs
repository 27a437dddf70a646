//! `cloudsync-bench flood --server <cloudsync binary>`: the node's resident memory while
//! strangers and devices push what they should not.
//!
//! 1. 100 concurrent unauthenticated uploads declaring 64 MiB each: half to the sync
//!    endpoint without credentials, half to a signed-upload URL with a forged
//!    signature (both refused before the body is read);
//! 2. 20, then 100 concurrent decompression bombs from a device with a valid key: half declaring
//!    1 GiB once decompressed (refused before decompressing), half declaring exactly the
//!    limit and really decompressing to it (decoded one per core at a time, then refused).
//!
//! The report gives the server's resident memory before, and its peak (`VmHWM`) after
//! each phase, next to the documented bound (`docs/security.md`). It measures; it does
//! not assert.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

const BODY: usize = 64 << 20;
const LIMIT: u32 = 64 << 20;

/// A raw request with `declared` body bytes, sending as many as the server takes;
/// returns the status (0 when the connection ended without one).
fn raw(port: u16, head: &str, declared: usize, chunk: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = s.write_all(format!("{head}Content-Length: {declared}\r\nConnection: close\r\n\r\n").as_bytes());
    let mut sent = 0;
    while sent < declared {
        let n = chunk.len().min(declared - sent);
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A payload of one zstd frame declaring `raw_len` bytes that really are `raw_len` zeros.
fn bomb(raw_len: u32) -> Vec<u8> {
    let zeros = vec![0u8; usize::try_from(raw_len.min(LIMIT)).unwrap_or(0)];
    let compressed = zstd::bulk::compress(&zeros, 19).unwrap_or_default();
    let mut bytes = cloudsync_core::payload::PayloadEncoder::default().finish();
    bytes[6..10].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..10]);
    bytes[10..14].copy_from_slice(&crc.to_le_bytes());
    bytes.push(cloudsync_core::payload::CODEC_ZSTD);
    bytes.extend_from_slice(&u32::try_from(compressed.len()).unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&raw_len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
    bytes.extend_from_slice(&compressed);
    bytes
}

fn statuses(mut v: Vec<u16>) -> String {
    v.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    for s in &v {
        let n = v.iter().filter(|x| *x == s).count();
        let label = format!("{n}× {s}");
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out.join(", ")
}

pub fn run(server: &Path) -> Result<()> {
    let node = crate::node::Node::start(server, "flood", crate::node::UNLIMITED)?;
    let port = node.port;
    let admin = |path: &str, body: Value| node.admin(path, &body);
    let t = admin("/v1/tenants", json!({ "name": "flood" }))?;
    let tid = t["id"].as_str().context("tenant")?.to_string();
    let db = admin(&format!("/v1/tenants/{tid}/databases"), json!({ "name": "flood" }))?;
    let did = db["id"].as_str().context("database")?.to_string();
    admin(
        &format!("/v1/tenants/{tid}/databases/{did}/schema"),
        json!({ "sql": "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT)" }),
    )?;
    let key = admin(&format!("/v1/tenants/{tid}/api-keys"), json!({ "name": "k", "scopes": ["sync"] }))?;
    let key = key["key"].as_str().context("key")?.to_string();
    std::thread::sleep(Duration::from_millis(500));
    let base = node.mem("VmRSS:");

    // 1. Unauthenticated 64 MiB uploads.
    let chunk = vec![0x5a_u8; 1 << 16];
    let site = "ab".repeat(16);
    let a: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let (chunk, did, site) = (&chunk, &did, &site);
                s.spawn(move || {
                    let head = if i % 2 == 0 {
                        format!("POST /v1/sync/{did}/changes HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.cloudsync.payload\r\n")
                    } else {
                        format!("PUT /v1/blobs/{did}/{site}/{i}.csyn?op=put&len={BODY}&expires=99999999999999&sig=00 HTTP/1.1\r\nHost: x\r\n")
                    };
                    raw(port, &head, BODY, chunk)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let after_a = node.mem("VmHWM:");

    // 2. Decompression bombs from a device with a valid key: 20, then 100 (the peak
    // must not grow with their number).
    let (big, exact) = (bomb(1 << 30), bomb(LIMIT));
    let bombs = |n: usize| -> Vec<u16> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let (body, did, site, key) = (if i % 2 == 0 { &big } else { &exact }, &did, &site, &key);
                    s.spawn(move || {
                        let head = format!(
                            "POST /v1/sync/{did}/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                             Content-Type: application/vnd.cloudsync.payload\r\nX-Cloudsync-Site: {site}\r\n\
                             X-Cloudsync-From: 0\r\nX-Cloudsync-To: 1\r\n"
                        );
                        raw(port, &head, body.len(), body)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
        })
    };
    let b20 = bombs(20);
    let after_b20 = node.mem("VmHWM:");
    let b = bombs(100);
    let after_b = node.mem("VmHWM:");
    let alive = ureq::get(&format!("http://127.0.0.1:{port}/readyz")).call().is_ok();
    drop(node);

    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    println!("### Memory under a flood (one node, {cores} cores)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| resident memory before | {base} MiB |");
    println!("| 100 unauthenticated uploads declaring 64 MiB (6.4 GiB offered): answers | {} |", statuses(a));
    println!("| peak resident memory after them | {after_a} MiB |");
    println!(
        "| 20 decompression bombs at once (half declaring 1 GiB, half declaring and holding 64 MiB, {} KiB each on the wire): answers | {} |",
        exact.len() / 1024,
        statuses(b20)
    );
    println!("| peak resident memory after them | {after_b20} MiB |");
    println!("| then 100 at once: answers | {} |", statuses(b));
    println!("| peak resident memory after them | {after_b} MiB |");
    let bound = base + u64::try_from(cores).unwrap_or(2) * 65;
    println!("| decoding bound: before + {cores} decoding at once × (64 MiB limit + 1 MiB inline) | {bound} MiB |");
    println!(
        "| above that bound (open connections, the blocking pool's threads and allocator arenas) | {} MiB |",
        after_b.saturating_sub(bound)
    );
    println!("| server ready afterwards | {} |", if alive { "yes" } else { "**no**" });
    println!();
    Ok(())
}
