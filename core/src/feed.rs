//! Reading a feed spread over several tables, in chunks, with a resume point that
//! never passes over a change: the **cursor invariant**, written once for every engine.
//!
//! A replica's feed is the set of its rows, each at the position `(db_version, seq)` of
//! its latest change; a row that changes again moves to a new, higher position, and its
//! other changes keep their older positions. A reader receives rows in position order,
//! each with the changes it lacks, and then a [`Checkpoint`] that promises: every row
//! positioned at or before `after` was delivered, and every change at or before `base`
//! was delivered. Three rules keep that promise:
//!
//! 1. **One state per read.** The rows of one read, their positions and the horizon come
//!    from one state of the clocks: one read transaction on SQLite; on PostgreSQL one
//!    snapshot (read-only SPI statements share their calling query's) or clocks frozen by
//!    holding the `db_version` lock. A row that moved while pages were being read would
//!    otherwise be missed at both its old and its new position.
//! 2. **A horizon.** Every page is bounded by a `db_version` `h` such that every
//!    transaction that took a version at or below `h` had committed when the read began
//!    (on both engines the `db_version` stored then: versions are taken under a lock held
//!    until commit). Where transactions could commit out of the order of their versions,
//!    a read that saw version 7 but not yet 5 would otherwise hand out a cursor past 5.
//! 3. **A base for every pass.** A pass of chunks starts from a complete state `base`
//!    (everything at or before it delivered) and sends each row with its changes newer
//!    than `base`, not newer than the chunk's start: a row positioned after a chunk's end
//!    may hold changes older than that end, which no chunk delivered yet. Only a read that
//!    reaches the horizon moves `base` (to the horizon, [`Merge::end`]).
//!
//! `tests/cursor.rs` checks the three on a model (commits out of version order, random
//! chunk sizes, writes between any two chunks) and shows that leaving out any one of the
//! horizon and the base loses changes; the service had neither.

use std::collections::VecDeque;

use crate::ids::Cursor;

/// Rows fetched per page and table by the engines.
pub const PAGE_ROWS: usize = 256;

/// An engine's pages: the rows of one table, in position order. Every page of one
/// [`Merge`] must come from the same state of the clocks (rule 1 above).
pub trait Pages {
    /// What a row carries (its changes, say).
    type Row;
    /// The engine's error.
    type Error;
    /// Up to `limit` rows of table `table` (an index into the tables the [`Merge`] was
    /// built for) positioned strictly after `after` and at a `db_version` at or below
    /// `horizon`, in ascending position order.
    fn page(
        &mut self,
        table: usize,
        after: Cursor,
        horizon: u64,
        limit: usize,
    ) -> Result<Vec<(Cursor, Self::Row)>, Self::Error>;

    /// Whether table `table` has a row positioned above `horizon` (in the same state).
    /// Where versions commit in order (both engines) there is none; where they do not,
    /// such a row may hold changes at or below the horizon that this read did not send,
    /// so the pass's base must not move past them.
    fn beyond(&mut self, table: usize, horizon: u64) -> Result<bool, Self::Error>;
}

struct Table<R> {
    /// Position of the last row fetched.
    fetched: Cursor,
    rows: VecDeque<(Cursor, R)>,
    /// The last page was short: nothing more up to the horizon.
    exhausted: bool,
}

/// Rows of several tables merged into one feed ordered by position, bounded by a
/// horizon, read from a [`Checkpoint`] and ending at the next one (the module
/// documentation's three rules).
pub struct Merge<R> {
    from: Checkpoint,
    horizon: u64,
    limit: usize,
    tables: Vec<Table<R>>,
    /// Position of the last row handed out.
    position: Cursor,
}

impl<R> Merge<R> {
    /// A merge of `tables` tables, of the rows positioned after `from.after` up to
    /// `horizon`, fetched `limit` rows at a time (at least one). Each row must be sent
    /// with its changes newer than [`Merge::since`].
    pub fn new(tables: usize, from: Checkpoint, horizon: u64, limit: usize) -> Merge<R> {
        let tables =
            (0..tables).map(|_| Table { fetched: from.after, rows: VecDeque::new(), exhausted: false }).collect();
        Merge { from, horizon, limit: limit.max(1), tables, position: from.after }
    }

    /// The horizon this merge reads up to.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// A row's changes newer than this are sent: the base of the reader's pass.
    pub fn since(&self) -> Cursor {
        self.from.base
    }

    /// The next row in position order, or `None` once every table is read up to the
    /// horizon.
    pub fn next<P: Pages<Row = R>>(&mut self, pages: &mut P) -> Result<Option<(Cursor, R)>, P::Error> {
        for (i, t) in self.tables.iter_mut().enumerate() {
            if t.rows.is_empty() && !t.exhausted {
                let page = pages.page(i, t.fetched, self.horizon, self.limit)?;
                t.exhausted = page.len() < self.limit;
                // Only rows in (fetched, horizon], ascending, are kept: an engine
                // returning anything else would otherwise move the cursor wrongly.
                for (at, row) in page {
                    if at > t.fetched && at.db_version <= self.horizon {
                        t.fetched = at;
                        t.rows.push_back((at, row));
                    }
                }
            }
        }
        let best = self.tables.iter().enumerate().filter_map(|(i, t)| t.rows.front().map(|(at, _)| (*at, i))).min();
        let Some((at, i)) = best else { return Ok(None) };
        self.position = at;
        Ok(self.tables[i].rows.pop_front())
    }

    /// Position of the last row handed out (the starting position before the first).
    pub fn position(&self) -> Cursor {
        self.position
    }

    /// Where a reader that stopped after the row at `at` (every row up to it handed
    /// out) resumes: partway through its pass.
    pub fn stopped_at(&self, at: Cursor) -> Checkpoint {
        Checkpoint::partial(at.max(self.from.after), self.from.base)
    }

    /// Where a reader that received every row ([`Merge::next`] returned `None`)
    /// resumes: through the horizon, and complete there unless some row lies beyond it
    /// ([`Pages::beyond`]); never before where it started.
    pub fn end<P: Pages<Row = R>>(&self, pages: &mut P) -> Result<Checkpoint, P::Error> {
        let through = self.from.after.max(Cursor::through(self.horizon));
        for i in 0..self.tables.len() {
            if pages.beyond(i, self.horizon)? {
                return Ok(Checkpoint::partial(through, self.from.base));
            }
        }
        Ok(Checkpoint::complete(through))
    }
}

/// What a reader holds of a feed, hence where it resumes (rule 3 of the module
/// documentation): every row positioned at or before `after` and every change at or
/// before `base` were delivered; so the next read sends the rows positioned after
/// `after`, each with its changes newer than `base`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Rows positioned at or before this were delivered.
    pub after: Cursor,
    /// Changes at or before this were delivered (never after `after`).
    pub base: Cursor,
}

impl Checkpoint {
    /// Nothing received yet.
    pub const ZERO: Checkpoint = Checkpoint { after: Cursor::ZERO, base: Cursor::ZERO };

    /// Everything up to `c` received (the end of a complete read).
    pub fn complete(c: Cursor) -> Checkpoint {
        Checkpoint { after: c, base: c }
    }

    /// Partway through a pass that started complete at `base`: rows up to `after`.
    /// `base` is clamped to `after`.
    pub fn partial(after: Cursor, base: Cursor) -> Checkpoint {
        Checkpoint { after, base: base.min(after) }
    }

    /// Whether a read that starts here sends whole rows' worth of history again for
    /// some rows (the pass is not complete).
    pub fn is_partial(&self) -> bool {
        self.base < self.after
    }

    /// Parses the protocol's text form: a cursor (`<db_version>[.<seq>]`, complete), or
    /// `<after>~<base>` with `base` not after `after`.
    pub fn parse(s: &str) -> Option<Checkpoint> {
        match s.split_once('~') {
            None => Cursor::parse(s).map(Checkpoint::complete),
            Some((a, b)) => {
                let (after, base) = (Cursor::parse(a)?, Cursor::parse(b)?);
                (base < after).then_some(Checkpoint { after, base })
            }
        }
    }
}

/// The text form [`Checkpoint::parse`] reads.
impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_partial() {
            write!(f, "{}~{}", self.after, self.base)
        } else {
            write!(f, "{}", self.after)
        }
    }
}

/// One bounded piece of the feed, encoded: what a download returns, whatever the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The payload, or `None` when there was nothing after the reader's position.
    pub payload: Option<Vec<u8>>,
    /// Number of changes in it.
    pub changes: u64,
    /// Where the reader resumes: partway through its pass when `more`, else complete
    /// through the horizon the chunk was read up to.
    pub next: Checkpoint,
    /// Whether the feed has more after `next`.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tables in memory, with a hook run before every page read.
    struct Mem {
        tables: Vec<Vec<(Cursor, u32)>>,
        reads: usize,
    }

    impl Pages for Mem {
        type Row = u32;
        type Error = std::convert::Infallible;
        fn beyond(&mut self, t: usize, h: u64) -> Result<bool, Self::Error> {
            Ok(self.tables[t].iter().any(|(at, _)| at.db_version > h))
        }
        fn page(&mut self, t: usize, after: Cursor, h: u64, limit: usize) -> Result<Vec<(Cursor, u32)>, Self::Error> {
            self.reads += 1;
            let mut rows: Vec<(Cursor, u32)> =
                self.tables[t].iter().copied().filter(|(at, _)| *at > after && at.db_version <= h).collect();
            rows.sort();
            rows.truncate(limit);
            Ok(rows)
        }
    }

    fn c(v: u64, s: u64) -> Cursor {
        Cursor::new(v, s)
    }

    #[test]
    fn merges_tables_in_position_order_within_the_horizon() {
        let mut m = Mem {
            tables: vec![vec![(c(1, 0), 10), (c(3, 0), 30), (c(5, 0), 50)], vec![(c(2, 1), 21), (c(4, 0), 40)]],
            reads: 0,
        };
        let mut merge = Merge::new(2, Checkpoint::complete(c(1, 0)), 4, 1);
        let mut out = Vec::new();
        while let Some((_, r)) = merge.next(&mut m).unwrap() {
            out.push(r);
        }
        assert_eq!(out, vec![21, 30, 40]);
        assert_eq!(merge.position(), c(4, 0));
        assert_eq!(merge.stopped_at(c(3, 0)), Checkpoint::partial(c(3, 0), c(1, 0)));
        // Table 0 has a row at version 5, beyond the horizon: the base stays.
        assert_eq!(merge.end(&mut m).unwrap(), Checkpoint::partial(Cursor::through(4), c(1, 0)));
        m.tables[0].pop();
        assert_eq!(merge.end(&mut m).unwrap(), Checkpoint::complete(Cursor::through(4)));
        assert!(m.reads > 0);
    }

    #[test]
    fn checkpoints_round_trip_as_text() {
        for cp in [
            Checkpoint::ZERO,
            Checkpoint::complete(c(7, 3)),
            Checkpoint::complete(Cursor::through(9)),
            Checkpoint::partial(c(12, 5), Cursor::through(3)),
            Checkpoint::partial(c(12, 5), c(12, 4)),
        ] {
            assert_eq!(Checkpoint::parse(&cp.to_string()), Some(cp), "{cp}");
        }
        assert_eq!(Checkpoint::partial(c(12, 5), Cursor::through(3)).to_string(), "12.5~3");
        assert_eq!(Checkpoint::partial(c(2, 0), c(5, 0)), Checkpoint::complete(c(2, 0)));
        for bad in ["3~12.5", "3~3", "~", "1~", "~1", "1~2~3", "1.~0"] {
            assert_eq!(Checkpoint::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn end_never_goes_back() {
        let merge: Merge<u32> = Merge::new(0, Checkpoint::complete(c(9, 3)), 5, 10);
        let mut none = Mem { tables: Vec::new(), reads: 0 };
        assert_eq!(merge.end(&mut none).unwrap(), Checkpoint::complete(c(9, 3)));
    }

    #[test]
    fn rows_out_of_range_from_an_engine_are_ignored() {
        struct Bad;
        impl Pages for Bad {
            type Row = u32;
            type Error = std::convert::Infallible;
            fn beyond(&mut self, _: usize, _: u64) -> Result<bool, Self::Error> {
                Ok(false)
            }
            fn page(&mut self, _: usize, _: Cursor, _: u64, _: usize) -> Result<Vec<(Cursor, u32)>, Self::Error> {
                Ok(vec![(c(0, 1), 1), (c(2, 0), 2), (c(1, 5), 3), (c(7, 0), 4)])
            }
        }
        let mut merge = Merge::new(1, Checkpoint::complete(c(1, 0)), 5, 10);
        let mut out = Vec::new();
        while let Some((_, r)) = merge.next(&mut Bad).unwrap() {
            out.push(r);
        }
        assert_eq!(out, vec![2]);
    }
}
