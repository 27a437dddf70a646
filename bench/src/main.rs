//! `cloudsync-bench sqlite [--rows N] [--rounds R] [--scaling]`: the SQLite Sync workload, tracked
//! against plain SQLite in the same process, same SQLite build, same round.
//!
//! Prints a Markdown report on stdout (the task runner writes it into
//! `docs/benchmarks.md`). Ratios are per round (tracked ÷ plain); the report shows the
//! median over rounds.

mod sqlite;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rows = 100_000usize;
    let mut rounds = 5usize;
    let mut scaling = false;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--rows" => rows = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(rows),
            "--rounds" => rounds = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--scaling" => {
                scaling = true;
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
        _ => anyhow::bail!("usage: cloudsync-bench sqlite [--rows N] [--rounds R] [--scaling]"),
    }
}
