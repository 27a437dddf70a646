//! `cargo xtask bench sqlite`: run the harness and record its report.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sys::{cargo, root, step};

const START: &str = "<!-- bench:sqlite:start -->";
const END: &str = "<!-- bench:sqlite:end -->";

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("sqlite") => sqlite(&args[1..]),
        _ => bail!("usage: cargo xtask bench sqlite [--rows N] [--rounds R]"),
    }
}

fn sqlite(args: &[String]) -> Result<()> {
    step("Building the benchmark harness (release)");
    cargo(&["build", "--release", "-p", "cloudsync-bench"])?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root().join("target"), std::path::PathBuf::from);
    let bin = target.join("release/cloudsync-bench");
    step("Running the SQLite Sync workload");
    let out = Command::new(&bin)
        .arg("sqlite")
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8(out.stdout)?;
    print!("{report}");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let section = format!(
        "{START}\n_Recorded {date} by `cargo xtask bench sqlite {}` on {cores} cores ({cpu})._\n\n{report}{END}",
        args.join(" ")
    );
    let path = root().join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) if e > s => format!("{}{section}{}", &doc[..s], &doc[e + END.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(&path, updated)?;
    eprintln!("\nRecorded in {}", path.display());
    Ok(())
}
