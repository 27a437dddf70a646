//! Local writes: how an INSERT, UPDATE or DELETE made on this replica moves a row's clock.
//!
//! Engines record local writes cheaply (an append-only log written by triggers) and
//! fold them into clocks later, in bulk, with [`apply_local`]. Folding the ops of one
//! key in log order gives the same clock as applying them one by one at write time.

use crate::algo::Algo;
use crate::clock::{CellClock, RowClock};
use crate::ids::{ColId, Stamp};
use crate::value::Value;

/// One recorded local write to a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalOp {
    /// The row was inserted (or replaced: `INSERT OR REPLACE` on an existing key).
    Insert,
    /// These columns changed value (never empty).
    Update(Vec<ColId>),
    /// The row was deleted.
    Delete,
}

/// Log operation code of an insert, as both engines' tracking triggers write it.
pub const OP_INSERT: u8 = 1;
/// Log operation code of an update, with masks of the changed columns.
pub const OP_UPDATE: u8 = 2;
/// Log operation code of a delete.
pub const OP_DELETE: u8 = 3;

/// The write a change-log entry records: `op` is its operation code; for an update,
/// `masks` are its words of column bits (column id = word × `bits_per_word` + bit, as
/// the engine's triggers set them) and only `live` columns count. `Ok(None)` for an
/// update naming no live column (nothing to track); `Err(op)` for an unknown code
/// (corrupt metadata: the engine reports it).
pub fn logged_op(
    op: i64,
    masks: impl IntoIterator<Item = u64>,
    bits_per_word: u32,
    live: &[ColId],
) -> Result<Option<LocalOp>, i64> {
    match u8::try_from(op) {
        Ok(OP_INSERT) => Ok(Some(LocalOp::Insert)),
        Ok(OP_DELETE) => Ok(Some(LocalOp::Delete)),
        Ok(OP_UPDATE) => {
            let mut changed = Vec::new();
            for (w, bits) in masks.into_iter().enumerate() {
                for b in 0..bits_per_word.min(64) {
                    if bits & (1u64 << b) != 0 {
                        let id =
                            ColId::try_from(w).unwrap_or(ColId::MAX).saturating_mul(bits_per_word).saturating_add(b);
                        if live.contains(&id) {
                            changed.push(id);
                        }
                    }
                }
            }
            Ok((!changed.is_empty()).then_some(LocalOp::Update(changed)))
        }
        _ => Err(op),
    }
}

/// The fold driver: turns one table's change log, read in key order (and in log order
/// within a key), into the new clocks of the rows it changed. Each engine keeps only
/// its SQL: it reads the entries, hands each key's stored clock to [`Fold::start`] and
/// each entry to [`Fold::apply`], and writes back what [`Fold::start`] and
/// [`Fold::finish`] return.
///
/// Every row whose clock changed gets the next position `(db_version, seq)` of the
/// local feed; a row whose entries change nothing (updates of columns no longer synced,
/// a delete of a row already deleted) gets none and is not written back, so a fold
/// that changes nothing uses no position at all: the engine then keeps its
/// `db_version` ([`Fold::seq`] tells it).
#[derive(Debug)]
pub struct Fold<'a> {
    algo: Algo,
    live: &'a [ColId],
    bits_per_word: u32,
    db_version: u64,
    seq: u64,
    row: Option<FoldRow>,
}

#[derive(Debug)]
struct FoldRow {
    key: Vec<Value>,
    stored: Option<RowClock>,
    clock: Option<RowClock>,
}

/// A row whose clock the fold changed, to be written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The row's key values.
    pub key: Vec<Value>,
    /// Its new clock.
    pub clock: RowClock,
}

impl<'a> Fold<'a> {
    /// A fold of one table: `live` lists its synced non-key columns, `bits_per_word`
    /// how its triggers lay out update masks ([`logged_op`]); changed rows get
    /// positions `(db_version, seq)`, `(db_version, seq + 1)`, … (`seq` is where an
    /// earlier table of the same fold stopped).
    pub fn new(algo: Algo, live: &'a [ColId], bits_per_word: u32, db_version: u64, seq: u64) -> Fold<'a> {
        Fold { algo, live, bits_per_word, db_version, seq, row: None }
    }

    /// Whether an entry of `key` belongs to the row being folded (else the engine reads
    /// that key's stored clock and calls [`Fold::start`]).
    pub fn continues(&self, key: &[Value]) -> bool {
        self.row.as_ref().is_some_and(|r| r.key == key)
    }

    /// Moves to the row of `key`, whose stored clock is `stored`; returns the row just
    /// finished if its clock changed.
    pub fn start(&mut self, key: Vec<Value>, stored: Option<RowClock>) -> Option<Folded> {
        let done = self.take();
        self.row = Some(FoldRow { key, clock: stored.clone(), stored });
        done
    }

    /// Applies one log entry (its operation code and, for an update, its mask words) to
    /// the current row. `Err(op)` for an unknown code (corrupt metadata: the engine
    /// reports it); an entry before any [`Fold::start`] is ignored.
    pub fn apply(&mut self, op: i64, masks: impl IntoIterator<Item = u64>) -> Result<(), i64> {
        let Some(op) = logged_op(op, masks, self.bits_per_word, self.live)? else { return Ok(()) };
        if let Some(row) = self.row.as_mut() {
            let stamp = Stamp::local(self.db_version, self.seq);
            row.clock = apply_local(row.clock.take(), &op, self.algo, self.live, stamp);
        }
        Ok(())
    }

    /// Ends the fold; returns the last row if its clock changed.
    pub fn finish(&mut self) -> Option<Folded> {
        self.take()
    }

    /// The next free position: rows changed so far, plus the `seq` the fold began at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn take(&mut self) -> Option<Folded> {
        let row = self.row.take()?;
        let clock = row.clock?;
        if row.stored.as_ref() == Some(&clock) {
            return None;
        }
        self.seq += 1;
        Some(Folded { key: row.key, clock })
    }
}

/// Applies one local write to a row's clock. `columns` lists every synced non-key
/// column of the table; `stamp` is the position the write gets in the local feed.
///
/// Returns the new clock, or `None` when the write leaves nothing to track (a delete of
/// a key this replica never tracked).
pub fn apply_local(
    clock: Option<RowClock>,
    op: &LocalOp,
    algo: Algo,
    columns: &[ColId],
    stamp: Stamp,
) -> Option<RowClock> {
    match (op, clock) {
        (LocalOp::Delete, None) => None,
        (LocalOp::Delete, Some(c)) if !c.is_alive() => Some(c),
        (LocalOp::Delete, Some(c)) => Some(RowClock { cl: c.cl + 1, row_stamp: stamp, cells: Vec::new() }),
        // A write to a row whose clock says absent (unknown, or deleted): the row now
        // exists in the table, so it starts a new life holding every column.
        (_, None) => Some(new_life(1, columns, &[], stamp)),
        (_, Some(c)) if !c.is_alive() => Some(new_life(c.cl + 1, columns, &[], stamp)),
        (LocalOp::Insert, Some(c)) => Some(update(c, columns, algo, columns, stamp)),
        (LocalOp::Update(changed), Some(c)) => Some(update(c, changed, algo, columns, stamp)),
    }
}

/// A new life `cl` in which every column is written; `bumped` columns get version 2
/// so they beat the unchanged ones written by a concurrent new life of the same length.
fn new_life(cl: u64, columns: &[ColId], bumped: &[ColId], stamp: Stamp) -> RowClock {
    let cells = columns
        .iter()
        .map(|&col| CellClock { col, version: if bumped.contains(&col) { 2 } else { 1 }, stamp })
        .collect::<Vec<_>>();
    let mut clock = RowClock { cl, row_stamp: stamp, cells };
    clock.cells.sort_by_key(|c| c.col);
    clock
}

fn update(mut clock: RowClock, changed: &[ColId], algo: Algo, columns: &[ColId], stamp: Stamp) -> RowClock {
    if algo == Algo::Aws {
        // Add-wins: every update starts a new life that carries the whole row, so it
        // outranks a delete made concurrently at the previous life.
        return new_life(clock.cl + 2, columns, changed, stamp);
    }
    for &col in changed {
        let version = clock.cell(col).map_or(1, |c| c.version + 1);
        clock.set_cell(CellClock { col, version, stamp });
    }
    clock
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [ColId; 2] = [0, 1];

    fn s(dbv: u64) -> Stamp {
        Stamp::local(dbv, 0)
    }

    #[test]
    fn worked_example_insert_update_delete_reinsert() {
        let c = apply_local(None, &LocalOp::Insert, Algo::Cls, &COLS, s(1)).unwrap();
        assert_eq!((c.cl, c.cells.len()), (1, 2));
        let c = apply_local(Some(c), &LocalOp::Update(vec![0]), Algo::Cls, &COLS, s(2)).unwrap();
        assert_eq!(c.cell(0).unwrap().version, 2);
        assert_eq!(c.cell(1).unwrap().version, 1);
        assert_eq!(c.max_stamp().db_version, 2);
        let c = apply_local(Some(c), &LocalOp::Delete, Algo::Cls, &COLS, s(3)).unwrap();
        assert_eq!((c.cl, c.cells.len()), (2, 0));
        let c = apply_local(Some(c), &LocalOp::Insert, Algo::Cls, &COLS, s(4)).unwrap();
        assert_eq!(c.cl, 3);
        assert!(c.cells.iter().all(|cell| cell.version == 1 && cell.stamp == s(4)));
    }

    #[test]
    fn aws_update_starts_a_new_life() {
        let c = apply_local(None, &LocalOp::Insert, Algo::Aws, &COLS, s(1)).unwrap();
        let c = apply_local(Some(c), &LocalOp::Update(vec![1]), Algo::Aws, &COLS, s(2)).unwrap();
        assert_eq!(c.cl, 3);
        assert_eq!(c.cell(0).unwrap().version, 1);
        assert_eq!(c.cell(1).unwrap().version, 2);
    }

    #[test]
    fn delete_of_unknown_key_tracks_nothing() {
        assert_eq!(apply_local(None, &LocalOp::Delete, Algo::Cls, &COLS, s(1)), None);
    }

    fn fold_all(fold: &mut Fold<'_>, log: &[(i64, i64, u64)], stored: &[(i64, RowClock)]) -> Vec<Folded> {
        let mut out = Vec::new();
        for &(key, op, mask) in log {
            let key = vec![Value::Integer(key)];
            if !fold.continues(&key) {
                let clock = stored.iter().find(|(k, _)| key == [Value::Integer(*k)]).map(|(_, c)| c.clone());
                out.extend(fold.start(key, clock));
            }
            fold.apply(op, [mask]).unwrap();
        }
        out.extend(fold.finish());
        out
    }

    #[test]
    fn fold_gives_each_changed_row_one_position() {
        let mut fold = Fold::new(Algo::Cls, &COLS, 64, 7, 2);
        let out = fold_all(&mut fold, &[(1, 1, 0), (1, 2, 0b10), (2, 1, 0), (4, 3, 0)], &[]);
        // Key 4 was never tracked: its delete changes nothing and takes no position.
        assert_eq!(out.iter().map(|f| f.key.clone()).collect::<Vec<_>>(), [[Value::Integer(1)], [Value::Integer(2)]]);
        assert_eq!(out[0].clock.max_stamp(), crate::Cursor::new(7, 2));
        assert_eq!(out[0].clock.cell(1).unwrap().version, 2);
        assert_eq!(out[1].clock.max_stamp(), crate::Cursor::new(7, 3));
        assert_eq!(fold.seq(), 4);
    }

    /// The drift between the engines, resolved: a fold whose entries change no clock
    /// uses no position, so the engine keeps its `db_version` (SQLite used to take a new
    /// one whenever its log was not empty; PostgreSQL only on change).
    #[test]
    fn a_fold_that_changes_nothing_uses_no_position() {
        let dead = apply_local(None, &LocalOp::Insert, Algo::Cls, &COLS, s(1)).unwrap();
        let dead = apply_local(Some(dead), &LocalOp::Delete, Algo::Cls, &COLS, s(2)).unwrap();
        let mut fold = Fold::new(Algo::Cls, &COLS, 64, 9, 0);
        // An update of a column no longer synced, a delete of an untracked key and a
        // second delete of a deleted row.
        let out = fold_all(&mut fold, &[(1, 2, 1 << 5), (2, 3, 0), (3, 3, 0)], &[(3, dead)]);
        assert_eq!(out, []);
        assert_eq!(fold.seq(), 0);
        assert_eq!(fold.apply(9, []), Err(9));
    }

    #[test]
    fn log_entries_read_back_as_the_writes_they_record() {
        let live = [0, 1, 64, 130];
        assert_eq!(logged_op(1, [], 64, &live), Ok(Some(LocalOp::Insert)));
        assert_eq!(logged_op(3, [0], 64, &live), Ok(Some(LocalOp::Delete)));
        // Bit b of word w is column w × bits + b; columns no longer live are left out.
        assert_eq!(logged_op(2, [0b1011, 1, 1 << 4], 64, &live), Ok(Some(LocalOp::Update(vec![0, 1, 64]))));
        assert_eq!(logged_op(2, [0b11, 0, 1 << 4], 63, &live), Ok(Some(LocalOp::Update(vec![0, 1, 130]))));
        // An update of nothing live records nothing; an unknown code is reported.
        assert_eq!(logged_op(2, [1 << 3], 64, &live), Ok(None));
        assert_eq!(logged_op(7, [], 64, &live), Err(7));
        assert_eq!(logged_op(-1, [], 64, &live), Err(-1));
    }
}
