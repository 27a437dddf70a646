//! `cargo xtask`: the project's task runner.
//!
//! | command | does |
//! |---|---|
//! | `test` | installs what the tests need (Debian packages, a Python venv with apsw, better-sqlite3), runs every Rust test, builds the loadable extension and runs it from the sqlite3 CLI, Python's sqlite3, apsw and Node |
//! | `build-extension` | builds `libcloudsync.so` in release mode, on its own, and prints its absolute path last |
//! | `bench sqlite [--rows N] [--rounds R]` | runs the SQLite Sync workload against plain SQLite and records the result in `docs/benchmarks.md` |
//! | `shell [DB]` | builds the extension and opens the sqlite3 shell with it loaded |
//!
//! Why a task runner and not plain `cargo test`: the loadable extension must never be
//! compiled in the same cargo invocation as crates that bundle SQLite (rusqlite's
//! `loadable_extension` and `bundled` features are incompatible at run time), and the
//! extension is tested from real hosts that cargo does not install.

mod bench;
mod ext;
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
        Some("bench") => bench::run(rest),
        Some("shell") => ext::shell(rest),
        _ => bail!("usage: cargo xtask <test | build-extension | bench sqlite [--rows N] [--rounds R] | shell [DB]>"),
    }
}

fn test(args: &[String]) -> Result<()> {
    let rust_only = args.iter().any(|a| a == "--rust-only");
    if !rust_only {
        sys::ensure_packages()?;
    }
    sys::step("Rust tests (unit, property, SQL-level, differential)");
    sys::cargo(&["test", "--workspace", "--exclude", "cloudsync-loadable"])?;
    if rust_only {
        return Ok(());
    }
    sys::step("Loadable extension");
    let so = ext::build()?;
    ext::test_hosts(&so)?;
    sys::step("All tests passed");
    Ok(())
}
