//! Running commands, finding the workspace, installing system packages.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` at run time too; it wins
/// over the compile-time value because checkouts that share one target directory
/// (a session and its CI clone) also share the `xtask` binary cargo runs.
pub fn root() -> PathBuf {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").map_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or the workspace's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root().join("target"), PathBuf::from)
}

/// Where downloaded test tools live (a Python venv, node modules): next to the shared
/// target directory so that CI runs reuse them, and never inside the repository.
pub fn tools_dir() -> PathBuf {
    std::env::var("CLOUDSYNC_TOOLS_DIR").map_or_else(|_| target_dir().join("tools"), PathBuf::from)
}

/// A command running the cargo that runs this task (`CARGO`), in the workspace.
pub fn cargo_command() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Prints a section header.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs a command to completion, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Runs cargo in the workspace.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(cargo_command().args(args))
}

/// Whether a command is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success())
}

/// Installs the Debian packages the tests use when any is missing.
pub fn ensure_packages() -> Result<()> {
    let needed = [
        ("sqlite3", "sqlite3"),
        ("/usr/bin/python3", "python3"),
        ("node", "nodejs"),
        ("npm", "npm"),
        // The dashboard's browser tests.
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
        // Stripping the packaged artifacts and reading the glibc a wheel needs.
        ("strip", "binutils"),
        ("objdump", "binutils"),
    ];
    let mut missing: Vec<&str> = needed.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    missing.dedup();
    // The packaging test makes a venv of Debian's Python.
    let venv_ok =
        Command::new("/usr/bin/python3").args(["-c", "import venv, ensurepip"]).status().is_ok_and(|s| s.success());
    let mut packages: Vec<&str> = missing;
    if !venv_ok {
        packages.push("python3-venv");
    }
    if packages.is_empty() {
        return Ok(());
    }
    step(&format!("Installing Debian packages: {}", packages.join(" ")));
    apt_install(&packages)
}

/// `apt-get update && apt-get install` (through sudo when not root).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let sudo = if have("sudo") && !is_root() { vec!["sudo"] } else { vec![] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = sudo.clone();
        all.push("apt-get");
        all.extend_from_slice(&["-o", "DPkg::Lock::Timeout=600"]);
        all.extend_from_slice(args);
        run(Command::new(all[0]).args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The PostgreSQL the tests use: `CLOUDSYNC_TEST_PG_URL`, or the local server on
/// 127.0.0.1:5432 (trust auth, user `postgres`), which is installed and started when it
/// is missing or down.
pub fn ensure_postgres() -> Result<String> {
    if let Ok(url) = std::env::var("CLOUDSYNC_TEST_PG_URL") {
        return Ok(url);
    }
    let url = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
    let ready =
        || Command::new("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", "5432"]).status().is_ok_and(|s| s.success());
    if have("pg_isready") && ready() {
        drop_test_databases()?;
        return Ok(url);
    }
    let sudo: Vec<&str> = if have("sudo") && !is_root() { vec!["sudo"] } else { vec![] };
    if !have("pg_ctlcluster") {
        step("Installing PostgreSQL");
        apt_install(&["postgresql"])?;
    }
    step("Starting PostgreSQL");
    let version = installed_pg_version()?;
    let mut cmd = sudo.clone();
    cmd.extend(["pg_ctlcluster", "--skip-systemctl-redirect", &version, "main", "start"]);
    // A cluster that is already starting makes this fail; readiness below decides.
    let _ = Command::new(cmd[0]).args(&cmd[1..]).status();
    for _ in 0..60 {
        if ready() {
            drop_test_databases()?;
            return Ok(url);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!("PostgreSQL did not become ready on 127.0.0.1:5432 (see /var/log/postgresql)")
}

pub fn installed_pg_version() -> Result<String> {
    let out = Command::new("pg_lsclusters").arg("-h").output().context("pg_lsclusters")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
        .context("no PostgreSQL cluster exists (pg_lsclusters is empty)")
}

/// Drops the throw-away databases (`cs_test_*`) an interrupted earlier run left behind.
fn drop_test_databases() -> Result<()> {
    let psql = |sql: &str| {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-XAtqc", sql])
            .output()
            .context("psql")
    };
    let out = psql("SELECT datname FROM pg_database WHERE datname LIKE 'cs\\_test\\_%'")?;
    for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|n| !n.is_empty()) {
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            psql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
        }
    }
    Ok(())
}
