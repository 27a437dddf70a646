//! The SQLite Sync workload (see the issue text in `docs/benchmarks.md`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use rusqlite::{params, Connection};

/// Deterministic data: splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn text(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n).map(|_| char::from(ALPHABET[usize::try_from(self.next() % 62).unwrap_or(0)])).collect()
    }
    fn uuid4(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
    fn real(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 1000.0
    }
    fn blob(&mut self) -> Vec<u8> {
        let (a, b) = (self.next(), self.next());
        let mut v = a.to_le_bytes().to_vec();
        v.extend_from_slice(&b.to_le_bytes());
        v
    }
    fn int(&mut self) -> i64 {
        i64::try_from(self.next() >> 24).unwrap_or(0)
    }
}

struct Row {
    id: String,
    a: i64,
    b: String,
    c: f64,
    d: Vec<u8>,
}

fn data(n: usize) -> Vec<Row> {
    let mut rng = Rng(42);
    (0..n).map(|_| Row { id: rng.uuid4(), a: rng.int(), b: rng.text(20), c: rng.real(), d: rng.blob() }).collect()
}

const SCHEMA: &str = "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER, b TEXT, c REAL, d BLOB)";

fn open(path: &Path, memory_temp: bool, tracked: bool) -> Result<Connection> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let c = Connection::open(path)?;
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    if memory_temp {
        c.execute_batch("PRAGMA temp_store = MEMORY")?;
    }
    c.execute_batch(SCHEMA)?;
    if tracked {
        cloudsync_sqlite::register(&c)?;
        c.query_row("SELECT cloudsync_init('t')", [], |_| Ok(()))?;
    }
    Ok(c)
}

fn checkpoint(c: &Connection) -> Result<()> {
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

#[derive(Default, Clone)]
struct Round {
    /// (step name, plain, tracked)
    steps: Vec<(&'static str, Duration, Duration)>,
    size_plain: u64,
    size_tracked: u64,
    size_tracked_folded: u64,
    payload_bytes: u64,
    changes: i64,
    cells: i64,
    final_rows: i64,
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The write steps 1–4 on one database; returns their durations.
fn writes(
    c: &Connection,
    rows: &[Row],
    steps: &mut Vec<Duration>,
    size_after_insert: &mut u64,
    path: &Path,
) -> Result<()> {
    let n = rows.len();
    steps.push(timed(|| {
        let tx = c.unchecked_transaction()?;
        {
            let mut ins = tx.prepare("INSERT INTO t (id, a, b, c, d) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for r in rows {
                ins.execute(params![r.id, r.a, r.b, r.c, r.d])?;
            }
        }
        tx.commit()?;
        Ok(())
    })?);
    checkpoint(c)?;
    *size_after_insert = file_size(path);
    steps.push(timed(|| {
        c.execute_batch("BEGIN; UPDATE t SET a = a + 1; COMMIT;")?;
        Ok(())
    })?);
    checkpoint(c)?;
    let mut rng = Rng(7);
    let tenth: Vec<&Row> = rows.iter().step_by(10).collect();
    let updates: Vec<(String, i64, String, f64)> =
        tenth.iter().map(|r| (r.id.clone(), rng.int(), rng.text(20), rng.real())).collect();
    steps.push(timed(|| {
        let mut up = c.prepare("UPDATE t SET a = ?2, b = ?3, c = ?4 WHERE id = ?1")?;
        for chunk in updates.chunks(1000) {
            c.execute_batch("BEGIN")?;
            for (id, a, b, cc) in chunk {
                up.execute(params![id, a, b, cc])?;
            }
            c.execute_batch("COMMIT")?;
        }
        Ok(())
    })?);
    checkpoint(c)?;
    let deletes: Vec<&str> = rows.iter().skip(5).step_by(10).map(|r| r.id.as_str()).collect();
    assert!(deletes.len() <= n / 10 + 1);
    steps.push(timed(|| {
        let tx = c.unchecked_transaction()?;
        {
            let mut del = tx.prepare("DELETE FROM t WHERE id = ?1")?;
            for id in &deletes {
                del.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    })?);
    checkpoint(c)?;
    Ok(())
}

type FinalRow = (String, i64, String, f64, Vec<u8>);

fn round(dir: &Path, rows: &[Row], memory_temp: bool) -> Result<Round> {
    let mut out = Round::default();
    let plain_path = dir.join("plain.db");
    let tracked_path = dir.join("tracked.db");
    let plain = open(&plain_path, memory_temp, false)?;
    let tracked = open(&tracked_path, memory_temp, true)?;
    let (mut p, mut t) = (Vec::new(), Vec::new());
    // Interleave per step so both see the same machine conditions.
    writes(&plain, rows, &mut p, &mut out.size_plain, &plain_path)?;
    writes(&tracked, rows, &mut t, &mut out.size_tracked, &tracked_path)?;
    for (i, name) in [
        "1. insert N rows, one txn",
        "2. UPDATE a of all rows, one txn",
        "3. update 3 columns of 10% of rows, 1 txn / 1,000",
        "4. delete 10% of rows, one txn",
    ]
    .into_iter()
    .enumerate()
    {
        out.steps.push((name, p[i], t[i]));
    }

    // 5a. Extract: plain reads the final rows; tracked folds its log, then encodes
    // every change into one payload.
    let mut final_rows: Vec<FinalRow> = Vec::new();
    let plain_extract = timed(|| {
        let mut s = plain.prepare("SELECT id, a, b, c, d FROM t")?;
        final_rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(())
    })?;
    let fold = timed(|| {
        tracked.query_row("SELECT cloudsync_terminate()", [], |_| Ok(()))?;
        Ok(())
    })?;
    checkpoint(&tracked)?;
    out.size_tracked_folded = file_size(&tracked_path);
    let mut payload: Vec<u8> = Vec::new();
    let encode = timed(|| {
        payload = tracked.query_row(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) FROM cloudsync_changes",
            [],
            |r| r.get(0),
        )?;
        Ok(())
    })?;
    out.changes = tracked.query_row("SELECT count(*) FROM cloudsync_changes", [], |r| r.get(0))?;
    out.cells =
        tracked.query_row("SELECT count(*) FROM cloudsync_changes WHERE col_name IS NOT NULL", [], |r| r.get(0))?;
    out.payload_bytes = payload.len() as u64;
    out.final_rows = i64::try_from(final_rows.len())?;
    out.steps.push(("5a. fold the change log (first sync after steps 1–4)", plain_extract, fold));
    out.steps.push(("5b. extract all changes as one payload (after the fold)", plain_extract, encode));
    out.steps.push(("5a+5b. fold + extract, total", plain_extract, fold + encode));

    // 5c. Apply into a fresh database vs plain INSERT of the final rows.
    let plain2 = open(&dir.join("plain2.db"), memory_temp, false)?;
    let plain_apply = timed(|| {
        let tx = plain2.unchecked_transaction()?;
        {
            let mut ins = tx.prepare("INSERT INTO t (id, a, b, c, d) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for r in &final_rows {
                ins.execute(params![r.0, r.1, r.2, r.3, r.4])?;
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    let replica_path = dir.join("replica.db");
    let replica = open(&replica_path, memory_temp, true)?;
    let apply = timed(|| {
        replica.query_row("SELECT cloudsync_payload_apply(?1)", [&payload], |_| Ok(()))?;
        Ok(())
    })?;
    out.steps.push((
        "5c. apply the payload into a fresh database (vs plain INSERT of the final rows)",
        plain_apply,
        apply,
    ));

    // Correctness check: the replica holds exactly the final rows.
    let count: i64 = replica.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    anyhow::ensure!(count == out.final_rows, "replica has {count} rows, expected {}", out.final_rows);
    replica.execute_batch(&format!("ATTACH '{}' AS src", tracked_path.display()))?;
    let same: i64 = replica.query_row(
        "SELECT count(*) FROM t r JOIN src.t s ON s.id = r.id AND s.a IS r.a AND s.b IS r.b AND s.c IS r.c AND s.d IS r.d",
        [],
        |r| r.get(0),
    )?;
    anyhow::ensure!(same == out.final_rows, "replica differs from the source in {} rows", out.final_rows - same);
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One round at N/4, N/2, N and 2N rows per `temp_store` mode: the cloudsync time per
/// row of each step must stay flat (no step is quadratic).
pub fn scaling(n: usize) -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("cloudsync-scaling-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sizes = [n / 4, n / 2, n, n * 2];
    println!("#### Scaling: cloudsync µs per row (ratio to plain in parentheses)\n");
    for memory_temp in [false, true] {
        let mut table: Vec<(&'static str, Vec<String>)> = Vec::new();
        for &size in &sizes {
            let rows = data(size);
            let r = round(&dir, &rows, memory_temp)?;
            for (i, (name, plain, tracked)) in r.steps.iter().enumerate() {
                if table.len() <= i {
                    table.push((name, Vec::new()));
                }
                let per_row = tracked.as_secs_f64() * 1e6 / size as f64;
                table[i].1.push(format!("{per_row:.2} ({:.2}×)", ms(*tracked) / ms(*plain)));
            }
        }
        println!("temp_store = {}\n", if memory_temp { "MEMORY" } else { "default" });
        println!("| step | {} |", sizes.iter().map(|s| format!("N = {s}")).collect::<Vec<_>>().join(" | "));
        println!("|---|{}", "---:|".repeat(sizes.len()));
        for (name, cells) in table {
            println!("| {name} | {} |", cells.join(" | "));
        }
        println!();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub fn run(n: usize, rounds: usize) -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("cloudsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rows = data(n);
    println!("### SQLite Sync workload, N = {n}, {rounds} rounds (SQLite {})\n", rusqlite::version());
    for memory_temp in [false, true] {
        let mut results = Vec::new();
        for _ in 0..rounds {
            results.push(round(&dir, &rows, memory_temp)?);
        }
        println!("#### temp_store = {}\n", if memory_temp { "MEMORY" } else { "default" });
        println!("| step | plain ms | cloudsync ms | ratio (median) | ratio min–max |");
        println!("|---|---:|---:|---:|---:|");
        let nsteps = results[0].steps.len();
        for s in 0..nsteps {
            let name = results[0].steps[s].0;
            let ratios: Vec<f64> = results.iter().map(|r| ms(r.steps[s].2) / ms(r.steps[s].1)).collect();
            let p = median(results.iter().map(|r| ms(r.steps[s].1)).collect());
            let t = median(results.iter().map(|r| ms(r.steps[s].2)).collect());
            let (lo, hi) = ratios.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            println!("| {name} | {p:.1} | {t:.1} | {:.2}× | {lo:.2}–{hi:.2} |", median(ratios.clone()));
        }
        let r = &results[0];
        let size_ratio = median(results.iter().map(|r| r.size_tracked as f64 / r.size_plain as f64).collect());
        let folded_ratio = median(results.iter().map(|r| r.size_tracked_folded as f64 / r.size_plain as f64).collect());
        println!(
            "| 6. file size after the inserts | {:.1} MiB | {:.1} MiB | {size_ratio:.2}× | |",
            r.size_plain as f64 / 1048576.0,
            r.size_tracked as f64 / 1048576.0
        );
        println!(
            "| 6b. file size after steps 1–4 and the fold (vs plain after steps 1–4) | | {:.1} MiB | {folded_ratio:.2}× | |",
            r.size_tracked_folded as f64 / 1048576.0
        );
        println!(
            "\nPayload: {} bytes for {} changes ({} cells, {} final rows): **{:.1} bytes per changed cell** \
             ({:.1} per change record including row deletions).\n",
            r.payload_bytes,
            r.changes,
            r.cells,
            r.final_rows,
            r.payload_bytes as f64 / r.cells as f64,
            r.payload_bytes as f64 / r.changes as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
