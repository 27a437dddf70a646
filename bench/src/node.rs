//! A `cloudsync serve` child for the benchmarks that measure the node itself: started
//! on a free loopback port with its own data directory, called as the operator, its
//! memory read from `/proc`, and killed (its directory removed) when dropped — also
//! when a benchmark fails half-way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

/// Flags of a node that serves every request a benchmark makes: no request rates,
/// no cap on new devices.
pub const UNLIMITED: &[&str] = &["--rate-limit", "0", "--quota-requests-per-second", "0", "--new-sites-per-hour", "0"];

/// A running node.
pub struct Node {
    child: Child,
    dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
    token: String,
}

impl Node {
    /// Starts `server` (`cloudsync serve`) with `args` and a fresh data directory named
    /// after `tag`.
    pub fn start(server: &Path, tag: &str, args: &[&str]) -> Result<Node> {
        let dir = std::env::temp_dir().join(format!("cloudsync-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(server)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().context("stdout")?));
        lines.next().context("the server printed nothing")??;
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(dir.join("admin-token"))?.trim().to_string();
        Ok(Node { child, dir, port, token })
    }

    /// `POST path` with a JSON body, as the operator; the JSON answer.
    pub fn admin(&self, path: &str, body: &Value) -> Result<Value> {
        let mut r = ureq::post(&format!("http://127.0.0.1:{}{path}", self.port))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(body)?;
        Ok(r.body_mut().read_json()?)
    }

    /// A `/proc/<pid>/status` field in MiB (`VmRSS:` now, `VmHWM:` the peak so far).
    pub fn mem(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
