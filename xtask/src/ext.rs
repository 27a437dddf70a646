//! Building the loadable extension and testing it from real SQLite hosts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sys::{self, root, run, step, tools_dir};

/// Builds `libcloudsync.so` in release mode — alone, so no crate that bundles SQLite
/// is compiled in the same invocation — and returns its absolute path.
pub fn build() -> Result<PathBuf> {
    let out = crate::sys::cargo_command()
        .args(["build", "--release", "-p", "cloudsync-loadable", "--message-format=json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the extension failed");
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "cloudsync" {
            if let Some(files) = msg["filenames"].as_array() {
                for f in files.iter().filter_map(|f| f.as_str()) {
                    if f.ends_with(".so") || f.ends_with(".dylib") {
                        return Ok(PathBuf::from(f).canonicalize()?);
                    }
                }
            }
        }
    }
    bail!("cargo did not report the extension's path")
}

fn ext_tests() -> PathBuf {
    root().join("extensions/sqlite/tests/ext")
}

/// Runs the extension from rusqlite, the sqlite3 CLI, Debian's Python, apsw and Node.
pub fn test_hosts(so: &Path) -> Result<()> {
    let so_arg = so.to_string_lossy().to_string();
    step("rusqlite load_extension (bundled SQLite)");
    run(crate::sys::cargo_command()
        .args(["test", "-p", "cloudsync-sqlite", "--test", "host_rusqlite", "--", "--ignored"])
        .env("CLOUDSYNC_EXTENSION", &so_arg))?;

    step("End to end: the cloudsync binary with devices on the built extension (API keys, JWKS tokens, error texts)");
    run(crate::sys::cargo_command()
        .args([
            "test",
            "-p",
            "cloudsync",
            "--test",
            "e2e",
            "--test",
            "identity",
            "--test",
            "first_hour",
            "--",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("CLOUDSYNC_EXTENSION", &so_arg))?;

    step("sqlite3 CLI (Debian's SQLite)");
    run(Command::new("bash").arg(ext_tests().join("test_cli.sh")).arg(&so_arg))?;

    step("Python sqlite3 module (/usr/bin/python3, Debian's SQLite)");
    run(Command::new("/usr/bin/python3").arg("test_python_sqlite3.py").arg(&so_arg).current_dir(ext_tests()))?;

    step("apsw (current SQLite from PyPI)");
    let venv = tools_dir().join("py");
    if !venv.join("bin/python").exists()
        || !Command::new(venv.join("bin/python")).args(["-c", "import apsw"]).status()?.success()
    {
        std::fs::create_dir_all(tools_dir())?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "apsw"]))?;
    }
    run(Command::new(venv.join("bin/python")).arg("test_apsw.py").arg(&so_arg).current_dir(ext_tests()))?;

    step("Node better-sqlite3@12");
    let node = tools_dir().join("node");
    if !node.join("node_modules/better-sqlite3").exists() {
        std::fs::create_dir_all(&node)?;
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "better-sqlite3@12"])
            .current_dir(&node))?;
    }
    run(Command::new("node")
        .arg("test_node.cjs")
        .arg(&so_arg)
        .env("NODE_PATH", node.join("node_modules"))
        .current_dir(ext_tests()))?;
    Ok(())
}

/// `cargo xtask shell [DB]`: the sqlite3 shell with the extension loaded.
pub fn shell(args: &[String]) -> Result<()> {
    if !sys::have("sqlite3") {
        sys::ensure_packages()?;
    }
    let so = build()?;
    let db = args.first().cloned().unwrap_or_else(|| "cloudsync-demo.db".into());
    let lib = so.with_extension("");
    eprintln!("Opening {db} with {} loaded. Try:\n  CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL DEFAULT (cloudsync_uuid()), body TEXT);\n  SELECT cloudsync_init('notes');", so.display());
    run(Command::new("sqlite3").arg("-cmd").arg(format!(".load {}", lib.display())).arg(db))
}
