//! `cargo xtask`: the project's task runner.
//!
//! | command | does |
//! |---|---|
//! | `test` | installs and starts what the tests need (Debian packages, PostgreSQL, a Python venv with apsw, better-sqlite3, schemathesis), runs every Rust test (control-plane tests on SQLite and PostgreSQL), builds the loadable extension and runs it from the sqlite3 CLI, Python's sqlite3, apsw and Node, runs the README's quick start verbatim, installs the packages as a user would (wheel, npm, Maven), then fuzzes the live server's OpenAPI contract with schemathesis |
//! | `contract` | starts a node and runs schemathesis against its OpenAPI document (also part of `test`) |
//! | `build-extension` | builds `libcloudsync.so` in release mode, on its own, and prints its absolute path last |
//! | `package [--record] [--test]` | the artifacts users install, in `<target>/package/` (stripped extension, Python wheel, npm package, JVM example, stripped service binary); prints their sizes and the folder last; `--record` writes the sizes into `docs/packaging.md`; `--test` installs each as a user would and syncs through it (also part of `test`) |
//! | `readme` | runs the README's quick start verbatim (also part of `test`) |
//! | `bench sqlite [--rows N] [--rounds R] [--scaling]` | runs the SQLite Sync workload against plain SQLite and records the result in `docs/benchmarks.md` |
//! | `bench core` | runs the core's criterion micro-benchmarks and records a summary |
//! | `bench sync [--devices N] [--rows M] [--listeners L] [--writes W]` | devices syncing through a release build of the service: apply throughput and propagation latency |
//! | `bench fleet [--devices N] [--seconds S] [--no-faults] [--check]` | device processes doing random writes and syncing while the node is killed, its payload store made unusable and devices killed; divergences, jobs, errors and latencies, recorded in `docs/reliability.md` |
//! | `pg install` | builds Postgres Sync (the pgrx extension) in release mode and installs it into the machine's PostgreSQL (`CREATE EXTENSION cloudsync`) |
//! | `pg test` | installs the pgrx tooling when missing, runs the extension's `#[pg_test]`s in a throw-away cluster, installs it, then runs the scenarios and the cross-engine property test (also part of `test`) |
//! | `bench firstsync [--rows N] [--devices D]` | the node's memory while D devices first-sync an N-row PostgreSQL table at once (bounded chunks), recorded in `docs/benchmarks.md` |
//! | `bench pg [--rows N] [--rounds R]` | tracked vs untracked writes and payload apply vs plain INSERT in PostgreSQL |
//! | `shell [DB]` | builds the extension and opens the sqlite3 shell with it loaded |
//! | `fuzz [TARGET] [SECONDS]` | runs a `cargo fuzz` target of the core (default: all, 60 s each) on the committed corpus |
//!
//! Why a task runner and not plain `cargo test`: the loadable extension must never be
//! compiled in the same cargo invocation as crates that bundle SQLite (rusqlite's
//! `loadable_extension` and `bundled` features are incompatible at run time), and the
//! extension is tested from real hosts that cargo does not install.

mod bench;
mod contract;
mod ext;
mod jvm;
mod package;
mod pg;
mod readme;
mod sys;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("test") => test(rest),
        Some("build-extension") => {
            let path = ext::build()?;
            println!("{}", path.display());
            Ok(())
        }
        Some("package") => package::command(rest),
        Some("readme") => readme::test(),
        Some("bench") => bench::run(rest),
        Some("contract") => contract::schemathesis(),
        Some("shell") => ext::shell(rest),
        Some("pg") => pg::run_command(rest),
        Some("fuzz") => fuzz(rest),
        _ => {
            bail!("usage: cargo xtask <test | contract | build-extension | package [--record] [--test] | readme | bench sqlite|core|sync|pg|fleet | pg install|test | shell [DB] | fuzz>")
        }
    }
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`. cargo-fuzz needs nightly compiler flags;
/// `RUSTC_BOOTSTRAP=1` lets the installed stable toolchain accept them.
fn fuzz(args: &[String]) -> Result<()> {
    const TARGETS: [&str; 3] = ["payload_decode", "frame_body", "clock_decode"];
    if !sys::have("cargo-fuzz") {
        sys::cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    let targets: Vec<&str> = match args.first() {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => anyhow::bail!("unknown fuzz target {t}; one of {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let secs = args.get(1).cloned().unwrap_or_else(|| "60".into());
    let dir = sys::root().join("core/fuzz");
    let target_dir = sys::target_dir().join("fuzz");
    for t in targets {
        sys::step(&format!("Fuzzing {t} for {secs} s"));
        sys::run(
            std::process::Command::new("cargo")
                .args([
                    "fuzz",
                    "run",
                    t,
                    &format!("corpus/{t}"),
                    "--",
                    &format!("-max_total_time={secs}"),
                    "-max_len=4096",
                ])
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_DIR", &target_dir),
        )?;
    }
    Ok(())
}

/// The dashboard in headless Chromium; screenshots of its pages land in
/// `<target dir>/artifacts/dashboard`.
fn dashboard() -> Result<()> {
    sys::step("Dashboard in headless Chromium");
    let artifacts = sys::target_dir().join("artifacts");
    std::env::set_var("CLOUDSYNC_ARTIFACTS_DIR", &artifacts);
    sys::cargo(&["test", "-p", "cloudsync-dashboard", "--test", "browser", "--", "--ignored"])?;
    println!("screenshots: {}", artifacts.join("dashboard").display());
    Ok(())
}

/// The packages, installed and used as a user would (`docs/packaging.md`).
fn step_packages() -> Result<()> {
    let p = package::build()?;
    package::test(&p)
}

fn test(args: &[String]) -> Result<()> {
    let rust_only = args.iter().any(|a| a == "--rust-only");
    if !rust_only {
        sys::ensure_packages()?;
    }
    let pg = sys::ensure_postgres()?;
    // Read by the tests that run against a real PostgreSQL (each creates its own database).
    std::env::set_var("CLOUDSYNC_TEST_PG_URL", &pg);
    sys::step("Formatting and lints");
    sys::cargo(&["fmt", "--all", "--check"])?;
    // The loadable SQLite extension and the pgrx extension are built on their own
    // (`build-extension`, `pg test`).
    let others = ["--workspace", "--exclude", "cloudsync-loadable", "--exclude", "cloudsync-postgres"];
    sys::cargo(&[&["clippy"], &others[..], &["--all-targets", "--", "-D", "warnings"]].concat())?;
    sys::step("Rust tests (unit, property, SQL-level, differential)");
    sys::cargo(&[&["test"], &others[..]].concat())?;
    if rust_only {
        return Ok(());
    }
    sys::step("Loadable extension");
    let so = ext::build()?;
    ext::test_hosts(&so)?;
    readme::test()?;
    step_packages()?;
    pg::test(&so)?;
    dashboard()?;
    contract::schemathesis()?;
    sys::step("All tests passed");
    Ok(())
}
