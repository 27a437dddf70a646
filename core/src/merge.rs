//! Remote changes: merging another replica's view of a row into the local clock.
//!
//! The state of a row is a join-semilattice ordered **lexicographically**: first by
//! causal length `cl` (a longer causal history wins outright: its life replaces the
//! local one), then, within the same life, column by column by the key
//! `(version, value, site id)`. Every replica applies the same join, so replicas that
//! have seen the same changes hold the same rows, whatever the order, duplication or
//! batching of delivery. The row's values are a function of its clock: each column
//! holds its winning cell's value, or the column default when the current life has no
//! cell for it.

use crate::algo::Algo;
use crate::clock::{CellClock, RowClock};
use crate::ids::{ColId, Cursor, SiteId, SiteOrd, Stamp};
use crate::value::Value;

/// One column of an incoming row record.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingCell<'a> {
    /// Local column id.
    pub col: ColId,
    /// Cell version within the life.
    pub version: u64,
    /// The value.
    pub value: &'a Value,
    /// Writer site, as a local ordinal.
    pub site: SiteOrd,
    /// Writer site id (for tie-breaks).
    pub site_id: SiteId,
}

/// Another replica's view of one row: its causal length and the cells of that life
/// that changed since the receiver last heard from it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingRow<'a> {
    /// Causal length of the sender's row.
    pub cl: u64,
    /// Site that started the sender's current life, when the record carries that event.
    pub event_site: Option<SiteOrd>,
    /// Changed cells of that life (distinct columns).
    pub cells: Vec<IncomingCell<'a>>,
}

/// What must happen to the row in the user table.
#[derive(Clone, Debug, PartialEq)]
pub enum RowWrite<'a> {
    /// Nothing.
    None,
    /// Delete the row.
    Delete,
    /// Create the row from its key: these columns get these values, every other column
    /// its default. If a row with this key exists anyway (written while untracked), it
    /// is overwritten the same way.
    Create(Vec<(ColId, &'a Value)>),
    /// Update an existing row. With `reset_others`, every column not listed goes back
    /// to its default (the row started a new life).
    Update {
        /// Columns to write.
        values: Vec<(ColId, &'a Value)>,
        /// Reset the other columns to their defaults.
        reset_others: bool,
    },
}

/// Result of merging one row record.
#[derive(Clone, Debug, PartialEq)]
pub struct RowMerge<'a> {
    /// The new clock, or `None` when nothing changed.
    pub clock: Option<RowClock>,
    /// What to do to the user table.
    pub write: RowWrite<'a>,
    /// How many of the incoming records (row event and cells) changed local state.
    pub applied: u32,
}

impl RowMerge<'_> {
    fn unchanged() -> Self {
        RowMerge { clock: None, write: RowWrite::None, applied: 0 }
    }
}

/// Hands out consecutive positions in the local feed for merged changes.
#[derive(Clone, Debug)]
pub struct SeqAlloc {
    db_version: u64,
    next_seq: u64,
}

impl SeqAlloc {
    /// Positions `(db_version, first_seq)`, `(db_version, first_seq + 1)`, …
    pub fn new(db_version: u64, first_seq: u64) -> Self {
        SeqAlloc { db_version, next_seq: first_seq }
    }

    /// The next position.
    pub fn allocate(&mut self) -> Cursor {
        let c = Cursor::new(self.db_version, self.next_seq);
        self.next_seq += 1;
        c
    }

    /// The db_version being allocated.
    pub fn db_version(&self) -> u64 {
        self.db_version
    }

    /// Number of positions handed out so far plus the first seq.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// What the merge needs to read from the replica.
pub trait MergeEnv {
    /// Storage error.
    type Error;
    /// Current values of these columns of the (live) row being merged.
    fn local_values(&mut self, cols: &[ColId]) -> Result<Vec<Value>, Self::Error>;
    /// The site id behind a local ordinal.
    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId, Self::Error>;
}

/// Merges `incoming` into `local` (see the module docs for the order).
pub fn merge_row<'a, E: MergeEnv>(
    local: Option<&RowClock>,
    incoming: &IncomingRow<'a>,
    algo: Algo,
    alloc: &mut SeqAlloc,
    env: &mut E,
) -> Result<RowMerge<'a>, E::Error> {
    let local_cl = local.map_or(0, |c| c.cl);
    if incoming.cl < local_cl || incoming.cl == 0 {
        return Ok(RowMerge::unchanged());
    }
    let local_dead = local_cl > 0 && local_cl.is_multiple_of(2);
    if algo == Algo::Dws && local_dead && incoming.cl > local_cl && incoming.cl % 2 == 1 {
        // Delete-wins: a deleted key never comes back.
        return Ok(RowMerge::unchanged());
    }
    if incoming.cl > local_cl {
        return Ok(new_life(local_cl, incoming, alloc));
    }
    if local_dead {
        // Same (deleted) life: nothing to merge.
        return Ok(RowMerge::unchanged());
    }
    let Some(local) = local else {
        return Ok(RowMerge::unchanged());
    };
    same_life(local, incoming, alloc, env)
}

/// The incoming record has a longer causal history: its life replaces ours.
fn new_life<'a>(local_cl: u64, incoming: &IncomingRow<'a>, alloc: &mut SeqAlloc) -> RowMerge<'a> {
    let event_site =
        incoming.event_site.or_else(|| incoming.cells.first().map(|c| c.site)).unwrap_or(crate::LOCAL_SITE);
    let mut clock =
        RowClock { cl: incoming.cl, row_stamp: Stamp { at: alloc.allocate(), site: event_site }, cells: Vec::new() };
    let alive = incoming.cl % 2 == 1;
    let mut values = Vec::new();
    if alive {
        for cell in &incoming.cells {
            clock.set_cell(CellClock {
                col: cell.col,
                version: cell.version,
                stamp: Stamp { at: alloc.allocate(), site: cell.site },
            });
            values.push((cell.col, cell.value));
        }
    }
    let local_alive = local_cl % 2 == 1;
    let write = match (alive, local_alive) {
        (false, true) => RowWrite::Delete,
        (false, false) => RowWrite::None,
        (true, true) => RowWrite::Update { values, reset_others: true },
        (true, false) => RowWrite::Create(values),
    };
    // The row event counts when the record carried it; a life implied by cells does not
    // count twice.
    let cells = if alive { u32::try_from(incoming.cells.len()).unwrap_or(u32::MAX) } else { 0 };
    let applied = u32::from(incoming.event_site.is_some()).saturating_add(cells).max(1);
    RowMerge { clock: Some(clock), write, applied }
}

/// Same life on both sides: column-wise last-writer-wins.
fn same_life<'a, E: MergeEnv>(
    local: &RowClock,
    incoming: &IncomingRow<'a>,
    alloc: &mut SeqAlloc,
    env: &mut E,
) -> Result<RowMerge<'a>, E::Error> {
    // Values are only read for version ties, which are rare.
    let ties: Vec<ColId> = incoming
        .cells
        .iter()
        .filter(|c| local.cell(c.col).is_some_and(|l| l.version == c.version))
        .map(|c| c.col)
        .collect();
    let tie_values = if ties.is_empty() { Vec::new() } else { env.local_values(&ties)? };

    let mut clock = local.clone();
    let mut values = Vec::new();
    let mut applied = 0;
    for cell in &incoming.cells {
        let wins_value = match local.cell(cell.col) {
            None => Some(true),
            Some(l) if cell.version > l.version => Some(true),
            Some(l) if cell.version < l.version => None,
            Some(l) => {
                let pos = ties.iter().position(|&c| c == cell.col).unwrap_or(0);
                let local_value = tie_values.get(pos).unwrap_or(&Value::Null);
                match cell.value.total_cmp(local_value) {
                    std::cmp::Ordering::Greater => Some(true),
                    std::cmp::Ordering::Less => None,
                    // Same value: the site id decides who owns the cell, so that
                    // metadata converges too; the user table does not change.
                    std::cmp::Ordering::Equal => (cell.site_id > env.site_id(l.stamp.site)?).then_some(false),
                }
            }
        };
        if let Some(write_value) = wins_value {
            clock.set_cell(CellClock {
                col: cell.col,
                version: cell.version,
                stamp: Stamp { at: alloc.allocate(), site: cell.site },
            });
            if write_value {
                values.push((cell.col, cell.value));
            }
            applied += 1;
        }
    }
    if applied == 0 {
        return Ok(RowMerge::unchanged());
    }
    let write = if values.is_empty() { RowWrite::None } else { RowWrite::Update { values, reset_others: false } };
    Ok(RowMerge { clock: Some(clock), write, applied })
}
