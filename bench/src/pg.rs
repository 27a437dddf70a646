//! `cloudsync-bench pg [--rows N] [--rounds R]`: Postgres Sync against plain
//! PostgreSQL, same server, same database, same round.
//!
//! Two tables of the same shape (`id uuid` key, bigint, text, double precision), one
//! synced, one not. Each write is measured two ways: as one set-based statement over
//! all rows (what a migration, a batch job or `COPY` does) and row by row, one
//! statement per row inside a PL/pgSQL loop (what an ORM does, without client round
//! trips muddying the numbers). The apply is a payload of the same rows, produced by
//! a second database, merged into an empty synced table, against plain `INSERT`s of
//! those rows. The fold (turning the statement log into clocks, done when changes are
//! first read or merged) is reported on its own. Ratios are per round; the report
//! shows medians.

use std::time::Instant;

use anyhow::{Context, Result};
use cloudsync_pg_interop::{server_url, url_for};
use postgres::{Client, NoTls};

pub(crate) struct Db {
    pub(crate) name: String,
    pub(crate) client: Client,
}

impl Db {
    pub(crate) fn new(tag: &str) -> Result<Db> {
        let name = format!("cs_bench_{tag}_{}", std::process::id());
        let mut admin = Client::connect(&server_url(), NoTls).context("connect to PostgreSQL")?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let mut client = Client::connect(&url_for(&name), NoTls)?;
        client
            .batch_execute("CREATE EXTENSION cloudsync")
            .context("CREATE EXTENSION cloudsync (install it first: cargo xtask pg install)")?;
        Ok(Db { name, client })
    }

    /// Runs `sql` and returns its wall time in seconds.
    fn time(&mut self, sql: &str) -> Result<f64> {
        let start = Instant::now();
        self.client.batch_execute(sql).with_context(|| sql.to_string())?;
        Ok(start.elapsed().as_secs_f64())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&server_url(), NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

const SHAPE: &str = "(id uuid PRIMARY KEY, a bigint, b text, c double precision)";

/// Deterministic rows from the row number `g` (md5-derived uuids, no randomness).
fn rows_select(n: usize) -> String {
    format!("SELECT md5(g::text)::uuid, g, 'text ' || g, g * 0.5 FROM generate_series(1, {n}) g")
}

fn row_loop(n: usize, body: &str) -> String {
    format!("DO $$ BEGIN FOR g IN 1..{n} LOOP {body} END LOOP; END $$")
}

#[derive(Default)]
struct Round {
    /// (label, plain seconds, tracked seconds)
    pairs: Vec<(&'static str, f64, f64)>,
    fold: f64,
    encode: f64,
}

fn round(db: &mut Db, peer: &mut Db, n: usize) -> Result<Round> {
    let mut r = Round::default();
    db.client.batch_execute(&format!(
        "DROP TABLE IF EXISTS plain; DROP TABLE IF EXISTS tracked;
         CREATE TABLE plain {SHAPE}; CREATE TABLE tracked {SHAPE}; SELECT cloudsync_init('tracked');"
    ))?;
    // Set-based statements.
    pair(db, &mut r, "INSERT, one statement", &|t| format!("INSERT INTO {t} {}", rows_select(n)))?;
    r.fold = db.time("SELECT cloudsync_db_version()")?;
    pair(db, &mut r, "UPDATE of one column, one statement", &|t| format!("UPDATE {t} SET a = a + 1"))?;
    pair(db, &mut r, "DELETE, one statement", &|t| format!("DELETE FROM {t}"))?;
    db.time("SELECT cloudsync_db_version()")?;
    // Row by row.
    pair(db, &mut r, "INSERT, row by row", &|t| {
        row_loop(n, &format!("INSERT INTO {t} VALUES (md5(g::text)::uuid, g, 'text ' || g, g * 0.5);"))
    })?;
    pair(db, &mut r, "UPDATE of one column, row by row", &|t| {
        row_loop(n, &format!("UPDATE {t} SET a = a + 1 WHERE id = md5(g::text)::uuid;"))
    })?;
    let start = Instant::now();
    let payload: Option<Vec<u8>> = db.client.query_one("SELECT cloudsync_payload_encode_since(0)", &[])?.get(0);
    r.encode = start.elapsed().as_secs_f64();
    pair(db, &mut r, "DELETE, row by row", &|t| {
        row_loop(n, &format!("DELETE FROM {t} WHERE id = md5(g::text)::uuid;"))
    })?;
    db.time("SELECT cloudsync_db_version()")?;

    // Apply of the same rows vs plain inserts, into empty tables of the peer.
    let payload = payload.context("the tracked table produced no payload")?;
    peer.client.batch_execute(&format!(
        "DROP TABLE IF EXISTS plain; DROP TABLE IF EXISTS tracked;
         CREATE TABLE plain {SHAPE}; CREATE TABLE tracked {SHAPE}; SELECT cloudsync_init('tracked');"
    ))?;
    let plain_rows =
        peer.time(&row_loop(n, "INSERT INTO plain VALUES (md5(g::text)::uuid, g + 1, 'text ' || g, g * 0.5);"))?;
    let start = Instant::now();
    peer.client.query_one("SELECT cloudsync_payload_apply($1)", &[&payload])?;
    let apply = start.elapsed().as_secs_f64();
    r.pairs.push(("payload apply vs INSERT row by row", plain_rows, apply));
    peer.client.batch_execute("TRUNCATE plain")?;
    let plain_bulk = peer.time(&format!("INSERT INTO plain {}", rows_select(n)))?;
    r.pairs.push(("payload apply vs INSERT, one statement", plain_bulk, apply));
    let count: i64 = peer.client.query_one("SELECT count(*) FROM tracked", &[])?.get(0);
    anyhow::ensure!(usize::try_from(count)? == n, "the apply produced {count} rows, expected {n}");
    Ok(r)
}

/// Times `sql` on the plain table, then on the synced one.
fn pair(db: &mut Db, r: &mut Round, label: &'static str, sql: &dyn Fn(&str) -> String) -> Result<()> {
    let plain = db.time(&sql("plain"))?;
    let tracked = db.time(&sql("tracked"))?;
    r.pairs.push((label, plain, tracked));
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the workload and prints a Markdown report.
pub fn run(rows: usize, rounds: usize) -> Result<()> {
    let mut db = Db::new("a")?;
    let mut peer = Db::new("b")?;
    let version: String = db.client.query_one("SELECT current_setting('server_version')", &[])?.get(0);
    let results: Vec<Round> = (0..rounds).map(|_| round(&mut db, &mut peer, rows)).collect::<Result<_>>()?;
    println!("PostgreSQL {version}, {rows} rows, {rounds} rounds (medians; ratio = synced ÷ plain, per round).\n");
    println!("| operation | plain | synced | ratio |");
    println!("|---|---:|---:|---:|");
    let labels: Vec<&str> = results[0].pairs.iter().map(|(l, _, _)| *l).collect();
    for (i, label) in labels.iter().enumerate() {
        let plain = median(results.iter().map(|r| r.pairs[i].1).collect());
        let synced = median(results.iter().map(|r| r.pairs[i].2).collect());
        let ratio = median(results.iter().map(|r| r.pairs[i].2 / r.pairs[i].1).collect());
        println!("| {label} | {:.0} ms | {:.0} ms | {ratio:.2}× |", plain * 1000.0, synced * 1000.0);
    }
    println!();
    println!(
        "Deferred work of the synced table: folding {rows} inserted rows into clocks {:.0} ms (done once, by the first \
         read or merge), encoding a payload of {rows} rows {:.0} ms.",
        median(results.iter().map(|r| r.fold).collect()) * 1000.0,
        median(results.iter().map(|r| r.encode).collect()) * 1000.0,
    );
    Ok(())
}
