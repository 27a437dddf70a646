//! `cargo xtask pg install|test`: Postgres Sync (the pgrx extension).
//!
//! The extension is built against the machine's PostgreSQL (the major version of its
//! cluster), with `cargo-pgrx` pinned to the `pgrx` version the crate uses. The plain
//! workspace build never needs any of this: `extensions/postgres` is not a default
//! member and the workspace-wide clippy/test runs exclude it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sys::{self, root, run, step};

/// The pgrx version the extension is built with (`extensions/postgres/Cargo.toml`).
const PGRX_VERSION: &str = "0.18.1";

pub fn run_command(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("install") => install().map(|_| ()),
        Some("test") => test(&crate::ext::build()?),
        _ => bail!("usage: cargo xtask pg <install | test>"),
    }
}

/// The PostgreSQL major version of the machine's cluster and its `pg_config`.
pub fn pg_config() -> Result<(String, PathBuf)> {
    let major = sys::installed_pg_version()?;
    let major = major.split('.').next().unwrap_or(&major).to_string();
    let path = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_config"));
    Ok((major, path))
}

/// Installs what building the extension needs: the server headers and clang for
/// bindgen (Debian packages), `cargo-pgrx` at the pinned version, and pgrx's config.
pub fn ensure_tooling() -> Result<(String, PathBuf)> {
    sys::ensure_postgres()?;
    let (major, pg_config) = pg_config()?;
    let headers = PathBuf::from(format!("/usr/include/postgresql/{major}/server/postgres.h"));
    if !headers.exists() || !sys::have("clang") || !sys::have("sudo") || !pg_config.exists() {
        step(&format!("Installing PostgreSQL {major} server headers and clang"));
        let dev = format!("postgresql-server-dev-{major}");
        let server = format!("postgresql-{major}");
        sys::apt_install(&[
            &server,
            &dev,
            "libclang-dev",
            "clang",
            "build-essential",
            "pkg-config",
            "libssl-dev",
            "sudo",
        ])?;
    }
    let installed = Command::new("cargo")
        .args(["pgrx", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !installed.ends_with(PGRX_VERSION) {
        step(&format!("Installing cargo-pgrx {PGRX_VERSION} (a few minutes, once per machine)"));
        sys::cargo(&["install", "cargo-pgrx", "--version", &format!("={PGRX_VERSION}"), "--locked"])?;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let config = std::fs::read_to_string(PathBuf::from(&home).join(".pgrx/config.toml")).unwrap_or_default();
    if !config.contains(&format!("pg{major}")) {
        step("cargo pgrx init (against the machine's PostgreSQL; nothing is downloaded)");
        run(Command::new("cargo").args(["pgrx", "init", &format!("--pg{major}"), &pg_config.to_string_lossy()]))?;
    }
    // So that building the crate outside cargo-pgrx (clippy) finds the headers too.
    std::env::set_var("PGRX_PG_CONFIG_PATH", &pg_config);
    Ok((major, pg_config))
}

fn ext_dir() -> PathBuf {
    root().join("extensions/postgres")
}

/// The target directory of the extension's builds: a subdirectory of the shared one,
/// because its library and the SQLite extension's are both `libcloudsync.so`.
fn target_dir() -> PathBuf {
    crate::sys::target_dir().join("pgrx")
}

/// `cargo pgrx <args>` (or `cargo <args>`) on the extension's crate, in its target directory.
fn cargo_pgrx(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args).current_dir(ext_dir()).env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Builds the extension in release mode and installs it into the machine's
/// PostgreSQL, so that `CREATE EXTENSION cloudsync` works in any of its databases.
pub fn install() -> Result<PathBuf> {
    let (major, pg_config) = ensure_tooling()?;
    step(&format!("Installing the cloudsync extension into PostgreSQL {major} (release build)"));
    run(cargo_pgrx(&["pgrx", "install", "--release", "--pg-config", &pg_config.to_string_lossy()]).args([
        "--no-default-features",
        "--features",
        &format!("pg{major}"),
    ]))?;
    let out = Command::new(&pg_config).arg("--pkglibdir").output().context("pg_config --pkglibdir")?;
    let so = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("cloudsync.so");
    println!("{}", so.display());
    Ok(so)
}

/// Lints the extension, runs its `#[pg_test]`s in a throw-away cluster, installs the
/// release build, then runs the scenarios, cross-engine property test and SQL
/// regression files against the machine's PostgreSQL.
/// Lints, `#[pg_test]`s, install, the scenarios against the installed extension, then
/// the service with a PostgreSQL backend end to end (devices on the loadable SQLite
/// extension `so`).
pub fn test(so: &std::path::Path) -> Result<()> {
    let (major, _) = ensure_tooling()?;
    let feature = format!("pg{major}");
    step("Postgres Sync: lints");
    let features = format!("{feature} pg_test");
    run(&mut cargo_pgrx(&[
        "clippy",
        "--all-targets",
        "--no-default-features",
        "--features",
        &features,
        "--",
        "-D",
        "warnings",
    ]))?;
    step("Postgres Sync: #[pg_test]s (cargo pgrx test, in a throw-away cluster)");
    let pgdata = std::env::temp_dir().join(format!("cloudsync-pgrx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pgdata);
    run(cargo_pgrx(&["pgrx", "test", &feature, "--runas", "postgres", "--pgdata", &pgdata.to_string_lossy()]).args([
        "--no-default-features",
        "--features",
        &feature,
    ]))?;
    let _ = std::fs::remove_dir_all(&pgdata);
    // `cargo pgrx test` installed its debug build into the machine's PostgreSQL.
    install()?;
    step("Postgres Sync: SQL scenarios against the installed extension and the cross-engine property test");
    sys::cargo(&["test", "-p", "cloudsync-pg-interop", "--", "--ignored"])?;
    step(
        "The service with PostgreSQL and SQLite backends: identities and row-level security, many devices at once, \
         time budgets, a noisy neighbour, a fleet on three schema versions",
    );
    run(crate::sys::cargo_command()
        .args([
            "test",
            "-p",
            "cloudsync",
            "--test",
            "rls",
            "--test",
            "concurrency",
            "--test",
            "budgets",
            "--test",
            "neighbours",
            "--test",
            "fleet",
            "--",
            "--ignored",
            // The noisy-neighbour test prints B's latency ratio (docs/benchmarks.md).
            "--nocapture",
        ])
        .env("CLOUDSYNC_EXTENSION", so)
        .current_dir(root()))
}
