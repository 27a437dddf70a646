//! Running commands, finding the workspace, installing system packages.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where downloaded test tools live (a Python venv, node modules): next to the shared
/// target directory so that CI runs reuse them, and never inside the repository.
pub fn tools_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CLOUDSYNC_TOOLS_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(t) => PathBuf::from(t).join("tools"),
        Err(_) => root().join("target").join("tools"),
    }
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
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args).current_dir(root()))
}

/// Whether a command is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success())
}

/// Installs the Debian packages the tests use when any is missing.
pub fn ensure_packages() -> Result<()> {
    let needed = [("sqlite3", "sqlite3"), ("/usr/bin/python3", "python3"), ("node", "nodejs"), ("npm", "npm")];
    let missing: Vec<&str> = needed.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    let venv_ok = Command::new("python3").args(["-c", "import venv, ensurepip"]).status().is_ok_and(|s| s.success());
    let mut packages: Vec<&str> = missing;
    if !venv_ok {
        packages.push("python3-venv");
    }
    if packages.is_empty() {
        return Ok(());
    }
    step(&format!("Installing Debian packages: {}", packages.join(" ")));
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
    install.extend(packages);
    apt(&install)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
