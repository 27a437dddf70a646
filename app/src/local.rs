//! What a node leaves in its data directory for clients on the same machine: the
//! admin token (`admin-token`, generated on first start unless one is configured) and
//! where it listens (`server.json`, written once it listens, removed when it stops).
//! The CLI reads both, so next to a node it needs no flags (`docs/configuration.md`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Where a running node says it listens.
pub const SERVER_FILE: &str = "server.json";

/// The content of [`SERVER_FILE`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The admin API's base URL, reachable from this machine (loopback when the node
    /// listens on every address).
    pub url: String,
    /// The node's process id.
    pub pid: u32,
    /// The node's version.
    pub version: String,
}

/// The URL a client on this machine reaches a listener at: an unspecified address
/// (`0.0.0.0`, `::`) becomes loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Records that this process listens at `addr` (written to a temporary file, then
/// renamed, so a reader never sees half of it).
pub fn record_server(data_dir: &Path, addr: SocketAddr) -> Result<PathBuf> {
    let path = data_dir.join(SERVER_FILE);
    let record =
        ServerRecord { url: local_url(addr), pid: std::process::id(), version: env!("CARGO_PKG_VERSION").into() };
    let tmp = data_dir.join(format!("{SERVER_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&record)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Removes the record when it is still this process's (another node may have started
/// on the same directory since).
pub fn forget_server(data_dir: &Path) {
    if read_server(data_dir).is_some_and(|r| r.pid == std::process::id()) {
        let _ = std::fs::remove_file(data_dir.join(SERVER_FILE));
    }
}

/// The record of a node in `data_dir`, if one is there and readable.
pub fn read_server(data_dir: &Path) -> Option<ServerRecord> {
    let bytes = std::fs::read(data_dir.join(SERVER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(local_url("0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080");
        assert_eq!(local_url("[::]:9".parse().unwrap()), "http://[::1]:9");
        assert_eq!(local_url("10.1.2.3:80".parse().unwrap()), "http://10.1.2.3:80");
    }

    #[test]
    fn a_record_round_trips_and_is_forgotten_only_by_its_process() {
        let dir = tempfile::tempdir().unwrap();
        record_server(dir.path(), "0.0.0.0:4321".parse().unwrap()).unwrap();
        let r = read_server(dir.path()).unwrap();
        assert_eq!((r.url.as_str(), r.pid), ("http://127.0.0.1:4321", std::process::id()));
        // Another process's record stays.
        let other = ServerRecord { url: "http://127.0.0.1:1".into(), pid: u32::MAX, version: "x".into() };
        std::fs::write(dir.path().join(SERVER_FILE), serde_json::to_vec(&other).unwrap()).unwrap();
        forget_server(dir.path());
        assert!(read_server(dir.path()).is_some());
        record_server(dir.path(), "127.0.0.1:5".parse().unwrap()).unwrap();
        forget_server(dir.path());
        assert!(read_server(dir.path()).is_none());
    }
}
