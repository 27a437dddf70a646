//! `cloudsync-bench sqlite [--rows N] [--rounds R] [--scaling]`: the SQLite Sync workload, tracked
//! against plain SQLite in the same process, same SQLite build, same round. Also `pg`,
//! `sync` (devices through a node), `fleet` (devices under faults, `fleet.rs`) and `flood`
//! (the node's memory under hostile uploads, `flood.rs`).
//!
//! Prints a Markdown report on stdout (the task runner writes it into
//! `docs/benchmarks.md`). Ratios are per round (tracked ÷ plain); the report shows the
//! median over rounds.

mod firstsync;
mod fleet;
mod flood;
mod node;
mod pg;
mod sqlite;
mod sync;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fleet-device") {
        return fleet::device(&args[1..]);
    }
    let mut rows = 100_000usize;
    let mut rounds = 5usize;
    let mut scaling = false;
    let mut server = None;
    let (mut devices, mut listeners, mut writes) = (10usize, 100usize, 50usize);
    let (mut seconds, mut faults, mut check) = (60u64, true, false);
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--rows" => rows = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(rows),
            "--rounds" => rounds = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--server" => server = args.get(i + 1).map(std::path::PathBuf::from),
            "--devices" => devices = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(devices),
            "--listeners" => listeners = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(listeners),
            "--writes" => writes = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(writes),
            "--seconds" => seconds = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--scaling" | "--no-faults" | "--check" => {
                match args[i].as_str() {
                    "--scaling" => scaling = true,
                    "--no-faults" => faults = false,
                    _ => check = true,
                }
                i += 1;
                continue;
            }
            other => anyhow::bail!("unknown option {other}"),
        }
        i += 2;
    }
    match args.first().map(String::as_str) {
        Some("sqlite") => {
            sqlite::run(rows, rounds)?;
            if scaling {
                sqlite::scaling(rows)?;
            }
            Ok(())
        }
        Some("pg") => pg::run(rows, if rounds == 5 { 3 } else { rounds }),
        Some("sync") => {
            let server = server.ok_or_else(|| anyhow::anyhow!("sync needs --server <path of the cloudsync binary>"))?;
            sync::run(&server, devices, if rows == 100_000 { 2_000 } else { rows }, listeners, writes)
        }
        Some("fleet") => {
            let server = server.ok_or_else(|| anyhow::anyhow!("fleet needs --server <path of the cloudsync binary>"))?;
            fleet::run(&server, &fleet::Options { devices, seconds, faults, check })
        }
        Some("firstsync") => {
            let server =
                server.ok_or_else(|| anyhow::anyhow!("firstsync needs --server <path of the cloudsync binary>"))?;
            firstsync::run(&server, if rows == 100_000 { 200_000 } else { rows }, if devices == 10 { 50 } else { devices })
        }
        Some("flood") => {
            let server = server.ok_or_else(|| anyhow::anyhow!("flood needs --server <path of the cloudsync binary>"))?;
            flood::run(&server)
        }
        _ => anyhow::bail!(
            "usage: cloudsync-bench sqlite [--rows N] [--rounds R] [--scaling] | pg [--rows N] [--rounds R] | sync --server BIN [--devices N] [--rows M] [--listeners L] [--writes W] | fleet --server BIN [--devices N] [--seconds S] [--no-faults] [--check] | flood --server BIN | firstsync --server BIN [--rows N] [--devices D]"
        ),
    }
}
