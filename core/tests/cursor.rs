//! A model of the cursor protocol (`cloudsync_core::feed`).
//!
//! The central database's transactions take versions in one order and commit in
//! another; rows have two cells, and a write changes one, so a row's older cell keeps
//! its older position. Readers download the feed in chunks of random sizes, with writes
//! committing between any two chunks. Whatever the interleaving, a reader following the
//! protocol (one state per read, a horizon below which everything committed, a base per
//! pass) ends with exactly the database's cells once it reads to the end.
//!
//! The same model shows each rule is needed: without the horizon, or without the
//! base, or as the service read before (a snapshot per page, resuming from the last row
//! read, changes newer than the chunk's start), readers lose changes.

use std::collections::BTreeMap;

use cloudsync_core::feed::{Checkpoint, Merge, Pages};
use cloudsync_core::Cursor;
use proptest::prelude::*;

const COLUMNS: usize = 2;

/// A row: each cell's position and value.
type Row = [Option<(Cursor, u64)>; COLUMNS];
type Table = BTreeMap<u32, Row>;

fn position(row: &Row) -> Cursor {
    row.iter().flatten().map(|(at, _)| *at).max().unwrap_or(Cursor::ZERO)
}

struct Txn {
    version: u64,
    /// (table, key, column, value), in write order (the seq).
    writes: Vec<(usize, u32, usize, u64)>,
}

/// The central database.
struct Central {
    tables: Vec<Table>,
    open: Vec<Txn>,
    next_version: u64,
    next_value: u64,
}

impl Central {
    fn new(tables: usize) -> Central {
        Central { tables: vec![Table::new(); tables], open: Vec::new(), next_version: 1, next_value: 1 }
    }

    /// The highest version at or below which every version has committed.
    fn watermark(&self) -> u64 {
        self.open.iter().map(|t| t.version - 1).min().unwrap_or(self.next_version - 1)
    }

    /// The highest committed version (what a reader sees, ignoring gaps).
    fn max_committed(&self) -> u64 {
        self.tables.iter().flat_map(|t| t.values()).map(|r| position(r).db_version).max().unwrap_or(0)
    }

    fn commit(&mut self, i: usize) {
        let txn = self.open.remove(i);
        for (seq, (table, key, col, value)) in (0u64..).zip(txn.writes) {
            let row = self.tables[table].entry(key).or_insert([None; COLUMNS]);
            row[col] = Some((Cursor::new(txn.version, seq), value));
        }
    }

    /// One random step of the writers: start a transaction (it takes its version now),
    /// write a cell in an open one, or commit any open one (out of version order).
    fn step(&mut self, rng: &mut Rng) {
        match rng.below(3) {
            0 if self.open.len() < 4 => {
                self.open.push(Txn { version: self.next_version, writes: Vec::new() });
                self.next_version += 1;
            }
            1 if !self.open.is_empty() => {
                let i = rng.below(self.open.len());
                let (table, key) = (rng.below(self.tables.len()), u32::try_from(rng.below(10)).unwrap_or(0));
                let col = rng.below(COLUMNS);
                // A row is locked by the open transaction writing it, and a transaction
                // cannot write a row that a later version already changed (both engines
                // take versions under a lock held until commit, so neither happens there).
                let mine = self.open[i].writes.iter().any(|w| (w.0, w.1) == (table, key));
                let locked = self.open.iter().any(|t| t.writes.iter().any(|w| (w.0, w.1) == (table, key)));
                let newer = self.tables[table].get(&key).is_some_and(|r| position(r).db_version > self.open[i].version);
                if (mine || !locked) && !newer {
                    self.next_value += 1;
                    let value = self.next_value;
                    self.open[i].writes.push((table, key, col, value));
                }
            }
            _ if !self.open.is_empty() => {
                let i = rng.below(self.open.len());
                self.commit(i);
            }
            _ => {}
        }
    }
}

/// How a reader reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reader {
    /// The protocol: one snapshot per chunk, bounded by the watermark, cells newer than
    /// the pass's base.
    Protocol,
    /// Without the horizon: bounded by the highest committed version seen.
    NoHorizon,
    /// Without the base: cells newer than the chunk's start.
    NoBase,
    /// The service before: a snapshot per page, no horizon, no base, resuming from the
    /// last row read.
    Before,
}

/// Pages of one chunk: from a snapshot taken when the chunk began, or (`Before`) from the
/// live database after letting the writers run (a snapshot per page).
struct Snapshot<'a> {
    snapshot: Vec<Table>,
    live: Option<(&'a mut Central, &'a mut Rng)>,
}

impl Snapshot<'_> {
    fn table(&self, t: usize) -> &Table {
        match &self.live {
            Some((central, _)) => &central.tables[t],
            None => &self.snapshot[t],
        }
    }
}

impl Pages for Snapshot<'_> {
    type Row = (usize, u32, Row);
    type Error = std::convert::Infallible;
    fn beyond(&mut self, t: usize, h: u64) -> Result<bool, Self::Error> {
        Ok(self.table(t).values().any(|r| position(r).db_version > h))
    }
    fn page(&mut self, t: usize, after: Cursor, h: u64, limit: usize) -> Result<Vec<(Cursor, Self::Row)>, Self::Error> {
        let table = match &mut self.live {
            Some((central, rng)) => {
                for _ in 0..rng.below(3) {
                    central.step(rng);
                }
                &central.tables[t]
            }
            None => &self.snapshot[t],
        };
        let mut rows: Vec<(Cursor, Self::Row)> = table
            .iter()
            .map(|(k, r)| (position(r), (t, *k, *r)))
            .filter(|(at, _)| *at > after && at.db_version <= h)
            .collect();
        rows.sort_by_key(|(at, _)| *at);
        rows.truncate(limit);
        Ok(rows)
    }
}

struct Device {
    from: Checkpoint,
    tables: Vec<Table>,
}

/// One chunk of at most `chunk` rows; returns how many rows it received.
fn download(
    dev: &mut Device,
    central: &mut Central,
    rng: &mut Rng,
    reader: Reader,
    chunk: usize,
    page: usize,
) -> usize {
    let horizon = match reader {
        Reader::Protocol | Reader::NoBase => central.watermark(),
        Reader::NoHorizon => central.max_committed(),
        Reader::Before => u64::MAX,
    };
    let snapshot = central.tables.clone();
    let live = (reader == Reader::Before).then_some((central, rng));
    let mut pages = Snapshot { snapshot, live };
    let from = match reader {
        Reader::Protocol | Reader::NoHorizon => dev.from,
        Reader::NoBase | Reader::Before => Checkpoint::complete(dev.from.after),
    };
    let mut merge = Merge::new(dev.tables.len(), from, horizon, page);
    let (mut got, mut finished) = (0, false);
    while got < chunk {
        let Some((_, (t, key, row))) = merge.next(&mut pages).unwrap() else {
            finished = true;
            break;
        };
        let mine = dev.tables[t].entry(key).or_insert([None; COLUMNS]);
        for (col, cell) in row.iter().enumerate() {
            if let Some((at, value)) = cell {
                if *at > merge.since() && mine[col].is_none_or(|(have, _)| have < *at) {
                    mine[col] = Some((*at, *value));
                }
            }
        }
        got += 1;
    }
    dev.from = match (reader, finished) {
        (Reader::Before, _) => Checkpoint::complete(merge.position()),
        (_, true) => merge.end(&mut pages).unwrap(),
        (_, false) => merge.stopped_at(merge.position()),
    };
    got
}

/// Runs one interleaving; returns whether the device ended with the database's cells.
fn converges(seed: u64, tables: usize, page: usize, reader: Reader) -> bool {
    let mut rng = Rng(seed | 1);
    let mut central = Central::new(tables);
    let mut dev = Device { from: Checkpoint::ZERO, tables: vec![Table::new(); tables] };
    for _ in 0..150 {
        if rng.below(3) == 0 {
            let chunk = 1 + rng.below(5);
            download(&mut dev, &mut central, &mut rng, reader, chunk, page);
        } else {
            central.step(&mut rng);
        }
    }
    while !central.open.is_empty() {
        central.commit(0);
    }
    // Read to the end: until a whole pass brings nothing.
    while download(&mut dev, &mut central, &mut rng, reader, usize::MAX, page) > 0 {}
    dev.tables == central.tables
}

/// A small deterministic generator: the interleaving is a function of the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every interleaving of writers (commits out of version order, between any two
    /// chunks) and chunked downloads ends with the device equal to the database.
    #[test]
    fn the_protocol_never_loses_a_change(seed in any::<u64>(), tables in 1usize..4, page in 1usize..5) {
        prop_assert!(converges(seed, tables, page, Reader::Protocol));
    }
}

/// How many of 300 interleavings leave the device short with this reader.
fn losses(reader: Reader) -> usize {
    (1..=300u64).filter(|&seed| !converges(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 2, 2, reader)).count()
}

#[test]
fn each_rule_is_needed_and_the_old_reader_loses_changes() {
    assert_eq!(losses(Reader::Protocol), 0);
    for reader in [Reader::NoHorizon, Reader::NoBase, Reader::Before] {
        assert!(losses(reader) > 0, "{reader:?} should lose changes in some interleaving");
    }
}
