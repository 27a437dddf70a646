//! `cargo xtask bench sqlite|core`: run a benchmark and record its report in
//! `docs/benchmarks.md`, between markers, so the narrative around it stays.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sys::{cargo, root, step};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("sqlite") => sqlite(&args[1..]),
        Some("core") => core(),
        Some("sync") => sync(&args[1..]),
        Some("pg") => pg(&args[1..]),
        Some("fleet") => fleet(&args[1..]),
        Some("flood") => through_the_service("flood", "docs/security.md", &args[1..]),
        Some("firstsync") => through_the_service("firstsync", "docs/benchmarks.md", &args[1..]),
        _ => bail!("usage: cargo xtask bench <sqlite [--rows N] [--rounds R] [--scaling] | pg [--rows N] [--rounds R] | sync [--devices N] [--rows M] [--listeners L] [--writes W] | fleet [--devices N] [--seconds S] [--no-faults] [--check] | flood | firstsync [--rows N] [--devices D] | core>"),
    }
}

/// Replaces the section between `start` and `end` markers of `docs/benchmarks.md`.
fn record(start: &str, end: &str, body: &str) -> Result<()> {
    record_in("docs/benchmarks.md", start, end, body)
}

/// Replaces the section between `start` and `end` markers of `doc`.
fn record_in(doc: &str, start: &str, end: &str, body: &str) -> Result<()> {
    let path = root().join(doc);
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!("{start}\n{body}{end}");
    let updated = match (doc.find(start), doc.find(end)) {
        (Some(s), Some(e)) if e > s => format!("{}{section}{}", &doc[..s], &doc[e + end.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(&path, updated)?;
    eprintln!("\nRecorded in {}", path.display());
    Ok(())
}

/// Date, cores and CPU model, for the record.
fn machine() -> String {
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
    format!("{date} on {cores} cores ({cpu})")
}

/// Builds the harness, runs `cloudsync-bench <workload> <args>`, prints its report and
/// records it between the workload's markers in `docs/benchmarks.md`.
fn run_recorded(workload: &str, title: &str, args: &[String]) -> Result<()> {
    step("Building the benchmark harness (release)");
    cargo(&["build", "--release", "-p", "cloudsync-bench"])?;
    let target = crate::sys::target_dir();
    let bin = target.join("release/cloudsync-bench");
    step(&format!("Running the {title} workload"));
    let out = Command::new(&bin)
        .arg(workload)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8(out.stdout)?;
    print!("{report}");
    let body = format!("_Recorded {} by `cargo xtask bench {workload} {}`._\n\n{report}", machine(), args.join(" "));
    record(&format!("<!-- bench:{workload}:start -->"), &format!("<!-- bench:{workload}:end -->"), &body)
}

fn sqlite(args: &[String]) -> Result<()> {
    run_recorded("sqlite", "SQLite Sync", args)
}

/// `cargo xtask bench pg`: Postgres Sync against plain PostgreSQL (installs the
/// extension's release build first).
fn pg(args: &[String]) -> Result<()> {
    crate::pg::install()?;
    run_recorded("pg", "Postgres Sync", args)
}

/// `cargo xtask bench sync`: devices syncing through a release build of the service.
fn sync(args: &[String]) -> Result<()> {
    through_the_service("sync", "docs/benchmarks.md", args)
}

/// `cargo xtask bench fleet`: device processes under faults, recorded in
/// `docs/reliability.md`.
fn fleet(args: &[String]) -> Result<()> {
    through_the_service("fleet", "docs/reliability.md", args)
}

/// Builds the service and the harness (release), runs `cloudsync-bench <workload>
/// --server <binary> <args>` and records its report between the workload's markers in
/// `doc`.
fn through_the_service(workload: &str, doc: &str, args: &[String]) -> Result<()> {
    step("Building the service and the harness (release)");
    cargo(&["build", "--release", "-p", "cloudsync", "-p", "cloudsync-bench"])?;
    let target = crate::sys::target_dir();
    let server = target.join("release/cloudsync");
    step(&format!("Running the {workload} benchmark"));
    let out = Command::new(target.join("release/cloudsync-bench"))
        .arg(workload)
        .arg("--server")
        .arg(&server)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the harness")?;
    let report = String::from_utf8(out.stdout)?;
    print!("{report}");
    if !out.status.success() {
        bail!("benchmark failed");
    }
    let body = format!("_Recorded {} by `cargo xtask bench {workload} {}`._\n\n{report}", machine(), args.join(" "));
    record_in(doc, &format!("<!-- bench:{workload}:start -->"), &format!("<!-- bench:{workload}:end -->"), &body)
}

/// `cargo xtask bench core`: the criterion micro-benchmarks, summarised.
fn core() -> Result<()> {
    step("Running the core's criterion benchmarks");
    let out = crate::sys::cargo_command()
        .args(["bench", "-p", "cloudsync-core", "--bench", "core"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    // Criterion prints "name\n    time: [low mid high]", or both on one line.
    let mut rows = Vec::new();
    let mut name = String::new();
    let mut in_change = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("change:") {
            // The comparison with the previous run, not a measurement; with throughput
            // configured its own "time:" line follows.
            in_change = !rest.contains('[');
            continue;
        }
        if in_change && trimmed.starts_with("time:") {
            in_change = false;
            continue;
        }
        if let Some(pos) = trimmed.find("time:") {
            let head = trimmed[..pos].trim();
            if !head.is_empty() {
                name = head.to_string();
            }
            let values: Vec<&str> = trimmed[pos + 5..].trim().trim_matches(['[', ']']).split_whitespace().collect();
            if values.len() >= 4 {
                rows.push(format!("| {name} | {} {} |", values[2], values[3]));
            }
        } else if !trimmed.is_empty() && !trimmed.starts_with("thrpt") && !trimmed.contains(':') {
            name = trimmed.to_string();
        }
    }
    let body = format!(
        "_Recorded {} by `cargo xtask bench core` (criterion, median)._\n\n| benchmark | time |\n|---|---:|\n{}\n",
        machine(),
        rows.join("\n")
    );
    record("<!-- bench:core:start -->", "<!-- bench:core:end -->", &body)
}
