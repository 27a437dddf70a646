//! Local writes: how an INSERT, UPDATE or DELETE made on this replica moves a row's clock.
//!
//! Engines record local writes cheaply (an append-only log written by triggers) and
//! fold them into clocks later, in bulk, with [`apply_local`]. Folding the ops of one
//! key in log order gives the same clock as applying them one by one at write time.

use crate::algo::Algo;
use crate::clock::{CellClock, RowClock};
use crate::ids::{ColId, Stamp};

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
