//! Per-row clocks: the metadata that decides every merge.
//!
//! One [`RowClock`] per known primary key (alive or deleted) — never one record per
//! cell. It holds the row's **causal length** `cl` (odd: alive, even: deleted; each
//! delete or re-insert moves it up by one) and, for the row's current life only, one
//! [`CellClock`] per column that has been written in that life.
//!
//! The clock is stored next to the row as a compact blob ([`RowClock::encode`]);
//! the largest stamp `(db_version, seq)` is stored outside the blob, in indexed
//! columns, so the stamps inside are delta-encoded against it.

use crate::error::DecodeError;
use crate::ids::{ColId, Cursor, SiteOrd, Stamp};
use crate::varint;

/// Version of the packed clock layout (first byte of the blob).
pub const CLOCK_FORMAT: u8 = 1;

/// The clock of one column of a live row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellClock {
    /// Stable column id.
    pub col: ColId,
    /// Number of writes to this cell within the current life (starts at 1).
    pub version: u64,
    /// When and from where the current value was recorded.
    pub stamp: Stamp,
}

/// The clock of one row (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowClock {
    /// Causal length: odd = alive, even = deleted. Never 0 for a stored clock.
    pub cl: u64,
    /// When the row entered its current life (insert, delete or resurrection).
    pub row_stamp: Stamp,
    /// Clocks of the cells written in the current life, sorted by column id.
    pub cells: Vec<CellClock>,
}

impl RowClock {
    /// Whether the row currently exists.
    pub fn is_alive(&self) -> bool {
        self.cl % 2 == 1
    }

    /// The clock of a column in the current life.
    pub fn cell(&self, col: ColId) -> Option<&CellClock> {
        self.cells.binary_search_by_key(&col, |c| c.col).ok().map(|i| &self.cells[i])
    }

    /// Inserts or replaces the clock of a column, keeping cells sorted.
    pub fn set_cell(&mut self, cell: CellClock) {
        match self.cells.binary_search_by_key(&cell.col, |c| c.col) {
            Ok(i) => self.cells[i] = cell,
            Err(i) => self.cells.insert(i, cell),
        }
    }

    /// The latest position at which anything in this row was recorded. Indexed, so
    /// "changes since X" costs O(changed rows).
    pub fn max_stamp(&self) -> Cursor {
        self.cells.iter().map(|c| c.stamp.at).fold(self.row_stamp.at, Cursor::max)
    }

    /// Encodes everything except `cl` and [`RowClock::max_stamp`], which are stored in
    /// their own columns.
    ///
    /// Layout: `format:u8, n_stamps, stamps…, row_stamp_idx, n_cells, (col_delta,
    /// version, stamp_idx)…` where a stamp is `dbv_delta` (max − dbv), then `seq_delta`
    /// (max − seq) when `dbv_delta` is 0 or the absolute `seq` otherwise, then `site`.
    /// Column ids are delta-coded against the previous id + 1.
    pub fn encode(&self) -> Vec<u8> {
        let max = self.max_stamp();
        let mut stamps: Vec<Stamp> = Vec::with_capacity(2);
        let index_of = |s: Stamp, stamps: &mut Vec<Stamp>| -> u64 {
            match stamps.iter().position(|x| *x == s) {
                Some(i) => i as u64,
                None => {
                    stamps.push(s);
                    (stamps.len() - 1) as u64
                }
            }
        };
        let row_idx = index_of(self.row_stamp, &mut stamps);
        let cell_idx: Vec<u64> = self.cells.iter().map(|c| index_of(c.stamp, &mut stamps)).collect();

        let mut out = Vec::with_capacity(4 + stamps.len() * 3 + self.cells.len() * 3);
        out.push(CLOCK_FORMAT);
        varint::put_u64(&mut out, stamps.len() as u64);
        for s in &stamps {
            let dbv_delta = max.db_version - s.at.db_version;
            varint::put_u64(&mut out, dbv_delta);
            if dbv_delta == 0 {
                varint::put_u64(&mut out, max.seq - s.at.seq);
            } else {
                varint::put_u64(&mut out, s.at.seq);
            }
            varint::put_u64(&mut out, u64::from(s.site));
        }
        varint::put_u64(&mut out, row_idx);
        varint::put_u64(&mut out, self.cells.len() as u64);
        let mut next_col: u64 = 0;
        for (c, idx) in self.cells.iter().zip(cell_idx) {
            varint::put_u64(&mut out, u64::from(c.col) - next_col);
            next_col = u64::from(c.col) + 1;
            varint::put_u64(&mut out, c.version);
            varint::put_u64(&mut out, idx);
        }
        out
    }

    /// Decodes a clock stored as `(cl, max_stamp, blob)`.
    pub fn decode(cl: u64, max: Cursor, blob: &[u8]) -> Result<RowClock, DecodeError> {
        let mut input = blob;
        let format = *varint::take(&mut input, 1, "clock format")?.first().unwrap_or(&0);
        if format != CLOCK_FORMAT {
            return Err(DecodeError::Invalid { what: "row clock", why: "unknown clock format" });
        }
        let n_stamps = varint::get_len(&mut input, "clock stamp count", blob.len())?;
        let mut stamps = Vec::with_capacity(n_stamps);
        for _ in 0..n_stamps {
            let dbv_delta = varint::get_u64(&mut input)?;
            let db_version = max
                .db_version
                .checked_sub(dbv_delta)
                .ok_or(DecodeError::Invalid { what: "row clock", why: "stamp after the row's maximum" })?;
            let seq = if dbv_delta == 0 {
                max.seq
                    .checked_sub(varint::get_u64(&mut input)?)
                    .ok_or(DecodeError::Invalid { what: "row clock", why: "stamp after the row's maximum" })?
            } else {
                varint::get_u64(&mut input)?
            };
            let site: SiteOrd = varint::get_u32(&mut input, "site ordinal")?;
            stamps.push(Stamp { at: Cursor::new(db_version, seq), site });
        }
        let stamp_at = |i: u64| -> Result<Stamp, DecodeError> {
            usize::try_from(i).ok().and_then(|i| stamps.get(i).copied()).ok_or(DecodeError::BadIndex {
                what: "clock stamp",
                index: i,
                len: stamps.len(),
            })
        };
        let row_stamp = stamp_at(varint::get_u64(&mut input)?)?;
        let n_cells = varint::get_len(&mut input, "clock cell count", blob.len())?;
        let mut cells = Vec::with_capacity(n_cells);
        let mut next_col: u64 = 0;
        for _ in 0..n_cells {
            let col = next_col
                .checked_add(varint::get_u64(&mut input)?)
                .and_then(|c| ColId::try_from(c).ok())
                .ok_or(DecodeError::Invalid { what: "row clock", why: "column id overflow" })?;
            next_col = u64::from(col) + 1;
            let version = varint::get_u64(&mut input)?;
            let stamp = stamp_at(varint::get_u64(&mut input)?)?;
            cells.push(CellClock { col, version, stamp });
        }
        if !input.is_empty() {
            return Err(DecodeError::TrailingBytes(input.len(), "row clock"));
        }
        Ok(RowClock { cl, row_stamp, cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_stamp() -> impl Strategy<Value = Stamp> {
        (0u64..1_000_000, 0u64..100_000, 0u32..5).prop_map(|(d, s, site)| Stamp { at: Cursor::new(d, s), site })
    }

    fn any_clock() -> impl Strategy<Value = RowClock> {
        (1u64..1000, any_stamp(), proptest::collection::btree_map(0u32..200, (1u64..1000, any_stamp()), 0..12))
            .prop_map(|(cl, row_stamp, cells)| RowClock {
                cl,
                row_stamp,
                cells: cells.into_iter().map(|(col, (version, stamp))| CellClock { col, version, stamp }).collect(),
            })
    }

    proptest! {
        #[test]
        fn roundtrip(clock in any_clock()) {
            let blob = clock.encode();
            let back = RowClock::decode(clock.cl, clock.max_stamp(), &blob).unwrap();
            prop_assert_eq!(back, clock);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48), dbv: u64, seq: u64) {
            let _ = RowClock::decode(1, Cursor::new(dbv, seq), &bytes);
        }
    }

    #[test]
    fn typical_row_is_small() {
        let stamp = Stamp::local(70_000, 12_345);
        let clock = RowClock {
            cl: 1,
            row_stamp: stamp,
            cells: (0..4).map(|col| CellClock { col, version: 1, stamp }).collect(),
        };
        // One shared stamp: format, count, 3-byte stamp, row index, cell count, 4 x 3.
        assert_eq!(clock.encode().len(), 19);
    }
}
