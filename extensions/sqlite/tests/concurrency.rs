//! The cursor invariant on a real SQLite file under concurrency: writers merge
//! payloads touching two tables into a central database while readers, each on its own
//! connection, download its feed in small chunks (as the service does) and apply them to
//! their own replicas. When the writers stop and every reader has read to the end, each
//! replica equals the central database exactly.
//!
//! Before, the page of the first table was read in an older snapshot than the page that
//! set the cursor, and a row positioned after a chunk's end was later sent without its
//! changes older than that end: readers ended a few rows short, or with rows missing
//! cells (issue "every device receives every row"). `cloudsync_core::feed` has the rules
//! that fixed both.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::SiteId;
use cloudsync_sqlite::Replica;
use rusqlite::Connection;

mod common;

const SCHEMA: &str = "CREATE TABLE events (id TEXT PRIMARY KEY NOT NULL, kind TEXT, n INTEGER);
                      CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, label TEXT, qty INTEGER);
                      SELECT cloudsync_init('events'); SELECT cloudsync_init('items');";

/// A central database as the service opens it: a [`Replica`] (the engine's own
/// functions only).
fn open(path: &Path) -> Replica {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    Replica::new(conn).unwrap()
}

/// A connection with every `cloudsync_*` function, to set a database up by SQL.
fn open_sql(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    cloudsync_sqlite::register(&conn).unwrap();
    conn
}

fn replica() -> Connection {
    let c = common::db();
    c.execute_batch(SCHEMA).unwrap();
    c
}

fn site_of(c: &Connection) -> SiteId {
    SiteId::from_slice(&common::one::<Vec<u8>>(c, "SELECT cloudsync_siteid()")).unwrap()
}

/// One download as the service makes it: the chunk after `after` that `site` did not
/// write, at most about `max_bytes`.
fn chunk(central: &Replica, from: Checkpoint, site: SiteId, max_bytes: usize) -> Chunk {
    central.chunk(from, site, max_bytes, &[]).unwrap()
}

#[test]
fn readers_paging_during_applies_end_equal_to_the_central_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.sqlite");
    open_sql(&path).execute_batch(SCHEMA).unwrap();

    let (writers, readers, rounds) = (3, 3, 120);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(writers + readers));
    let mut handles = Vec::new();
    for w in 0..writers {
        let (path, start) = (path.clone(), Arc::clone(&start));
        handles.push(thread::spawn(move || {
            let central = open(&path);
            let device = replica();
            let device_site = site_of(&device);
            start.wait();
            let mut sent = 0i64;
            for i in 0..rounds {
                // One transaction on the device touching both tables, as in the issue's
                // reproduction, then its payload merged centrally.
                device
                    .execute_batch(&format!(
                        "BEGIN; INSERT INTO events VALUES ('e{w}-{i}', 'k', {i}); \
                         INSERT INTO items VALUES ('i{w}-{i}', 'l', {i}); \
                         UPDATE items SET qty = qty + 1 WHERE id = 'i{w}-{}'; COMMIT;",
                        i / 2
                    ))
                    .unwrap();
                let version: i64 = common::one(&device, "SELECT cloudsync_db_version()");
                if let Some(p) = common::payload(&device, sent) {
                    // As the service applies: one write transaction taken up front.
                    let done = central.apply(&p, device_site, &[]).unwrap();
                    assert!(done.refused.is_empty(), "{:?}", done.refused);
                }
                sent = version;
            }
        }));
    }
    let mut replicas = Vec::new();
    for r in 0..readers {
        let (path, start, stop) = (path.clone(), Arc::clone(&start), Arc::clone(&stop));
        replicas.push(thread::spawn(move || {
            let central = open(&path);
            let mine = replica();
            let site = site_of(&mine);
            // Chunks of a few rows: many checkpoints handed out partway through a pass.
            let max_bytes = 64 << r;
            let mut after = Checkpoint::ZERO;
            start.wait();
            let mut quiet = 0;
            loop {
                let c = chunk(&central, after, site, max_bytes);
                if let Some(p) = &c.payload {
                    common::apply(&mine, p).unwrap();
                }
                assert!(c.next.after >= after.after && c.next.base >= after.base, "a checkpoint never moves back");
                assert_eq!(c.next.is_partial(), c.more, "a pass is complete exactly when nothing more follows");
                after = c.next;
                // Read to the end twice after the writers stopped.
                if stop.load(Ordering::SeqCst) && c.payload.is_none() {
                    quiet += 1;
                    if quiet == 2 {
                        break;
                    }
                }
            }
            mine
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let central = open_sql(&path);
    for (r, handle) in replicas.into_iter().enumerate() {
        let mine = handle.join().unwrap();
        for table in ["events", "items"] {
            let want = common::rows(&central, table);
            assert_eq!(want.len(), writers * rounds);
            assert_eq!(common::rows(&mine, table), want, "reader {r}, table {table}");
        }
    }
}

/// No concurrency needed: a row positioned after a chunk's end holds a change older
/// than that end. The next chunk must still send it (it is newer than the pass's base).
#[test]
fn a_row_positioned_after_a_chunk_end_arrives_with_its_older_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.sqlite");
    let central = open_sql(&path);
    central
        .execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT, b TEXT); SELECT cloudsync_init('t');
             BEGIN; INSERT INTO t VALUES ('x', 'x-a', 'x-b1'); INSERT INTO t VALUES ('y', 'y-a', 'y-b'); COMMIT;
             SELECT count(*) FROM cloudsync_changes; -- folds: version 1
             UPDATE t SET b = 'x-b2' WHERE id = 'x';",
        )
        .unwrap();
    let reader = common::db();
    reader
        .execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT, b TEXT); SELECT cloudsync_init('t');")
        .unwrap();
    // 'y' (version 1) comes first, 'x' (version 2) after: one row per chunk.
    let replica = open(&path);
    let first = chunk(&replica, Checkpoint::ZERO, site_of(&reader), 1);
    assert!(first.more && first.next.is_partial(), "{:?}", first.next);
    common::apply(&reader, first.payload.as_ref().unwrap()).unwrap();
    let second = chunk(&replica, first.next, site_of(&reader), 1);
    assert!(!second.more && !second.next.is_partial());
    common::apply(&reader, second.payload.as_ref().unwrap()).unwrap();
    assert_eq!(common::rows(&reader, "t"), common::rows(&central, "t"));
}
