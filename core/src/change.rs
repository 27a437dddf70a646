//! Change records: the unit of exchange between replicas.
//!
//! A [`Change`] is one row of the `cloudsync_changes` view: either a cell (a column
//! value with its clock) or a row event (`column == None`: the row entered a new life,
//! alive or deleted). A [`Changeset`] groups consecutive changes of the same row into
//! one [`ChangeRow`] and interns table names, column names and site ids; it is what a
//! payload carries.

use crate::algo::Algo;
use crate::ids::{Cursor, SiteId};
use crate::value::Value;

/// One change, as listed by `cloudsync_changes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Table name.
    pub table: String,
    /// Encoded primary key ([`crate::value::encode_key`]).
    pub pk: Vec<u8>,
    /// Column name, or `None` for a row event.
    pub column: Option<String>,
    /// The value (NULL for row events).
    pub value: Value,
    /// Cell version within the row's life (0 for row events).
    pub col_version: u64,
    /// Position of the change in the sender's feed.
    pub at: Cursor,
    /// Site that wrote the change.
    pub site: SiteId,
    /// Causal length of the row's life this change belongs to.
    pub cl: u64,
}

/// A table as described inside a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDesc {
    /// Table name, as the sender knows it.
    pub name: String,
    /// The sender's algorithm for the table.
    pub algo: Algo,
    /// The sender's schema fingerprint ([`crate::schema::TableSchema::fingerprint`]),
    /// or 0 when unknown.
    pub fingerprint: u64,
    /// Column names referenced by cells of this table, indexed by [`ChangeCell::col`].
    pub columns: Vec<String>,
}

/// Where and by whom a change was recorded at the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Position in the sender's feed.
    pub at: Cursor,
    /// Index into [`Changeset::sites`].
    pub site: usize,
}

/// One changed cell of a [`ChangeRow`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeCell {
    /// Index into the table's [`TableDesc::columns`].
    pub col: usize,
    /// Cell version.
    pub version: u64,
    /// The value.
    pub value: Value,
    /// Where it was recorded.
    pub origin: Origin,
}

/// Changes of one row of one life.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRow {
    /// Index into [`Changeset::tables`].
    pub table: usize,
    /// Encoded primary key.
    pub pk: Vec<u8>,
    /// Causal length of the life.
    pub cl: u64,
    /// The row event, when the record carries one.
    pub event: Option<Origin>,
    /// Changed cells (distinct columns).
    pub cells: Vec<ChangeCell>,
}

/// An interned, row-grouped list of changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changeset {
    /// Sites referenced by origins.
    pub sites: Vec<SiteId>,
    /// Tables referenced by rows.
    pub tables: Vec<TableDesc>,
    /// The rows, in feed order.
    pub rows: Vec<ChangeRow>,
}

/// A change that cannot be added to a changeset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// A row event must carry a NULL value and version 0.
    #[error("row event for table '{0}' carries a value; row events have col_name NULL and col_value NULL")]
    EventWithValue(String),
    /// Causal length 0 does not exist.
    #[error("change for table '{0}' has causal length 0")]
    ZeroCl(String),
    /// Cells only exist in live rows.
    #[error(
        "cell change for table '{table}' column '{column}' has even causal length {cl} (cells exist only in live rows)"
    )]
    CellOfDeletedRow {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// The causal length.
        cl: u64,
    },
    /// An empty table name.
    #[error("change has an empty table name")]
    EmptyTable,
}

impl Changeset {
    /// The algorithm and schema fingerprint the sender gave `table`, as
    /// [`Changeset::push`] and the encoder take them; `(Cls, 0)` for a table this
    /// changeset does not describe.
    pub fn table_info(&self, table: &str) -> (Algo, u64) {
        self.tables.iter().find(|t| t.name == table).map_or((Algo::Cls, 0), |t| (t.algo, t.fingerprint))
    }

    /// Number of change records (row events plus cells).
    pub fn change_count(&self) -> usize {
        self.rows.iter().map(|r| r.cells.len() + usize::from(r.event.is_some())).sum()
    }

    /// Adds one change, merging it into the previous row record when it belongs to the
    /// same row and life. `table_info` supplies algorithm and fingerprint for tables
    /// seen for the first time.
    pub fn push(&mut self, change: Change, table_info: impl FnOnce(&str) -> (Algo, u64)) -> Result<(), ChangeError> {
        if change.table.is_empty() {
            return Err(ChangeError::EmptyTable);
        }
        if change.cl == 0 {
            return Err(ChangeError::ZeroCl(change.table));
        }
        let site = match self.sites.iter().position(|s| *s == change.site) {
            Some(i) => i,
            None => {
                self.sites.push(change.site);
                self.sites.len() - 1
            }
        };
        let origin = Origin { at: change.at, site };
        let table = match self.tables.iter().position(|t| t.name == change.table) {
            Some(i) => i,
            None => {
                let (algo, fingerprint) = table_info(&change.table);
                self.tables.push(TableDesc { name: change.table.clone(), algo, fingerprint, columns: Vec::new() });
                self.tables.len() - 1
            }
        };
        let same_row = self.rows.last().is_some_and(|r| r.table == table && r.cl == change.cl && r.pk == change.pk);
        if !same_row {
            self.rows.push(ChangeRow { table, pk: change.pk, cl: change.cl, event: None, cells: Vec::new() });
        }
        let row = self.rows.last_mut().unwrap_or_else(|| unreachable!("a row was just pushed"));
        match change.column {
            None => {
                if !matches!(change.value, Value::Null) {
                    return Err(ChangeError::EventWithValue(change.table));
                }
                row.event = Some(origin);
            }
            Some(column) => {
                if change.cl.is_multiple_of(2) {
                    return Err(ChangeError::CellOfDeletedRow { table: change.table, column, cl: change.cl });
                }
                let columns = &mut self.tables[table].columns;
                let col = match columns.iter().position(|c| *c == column) {
                    Some(i) => i,
                    None => {
                        columns.push(column);
                        columns.len() - 1
                    }
                };
                let cell = ChangeCell { col, version: change.col_version, value: change.value, origin };
                // A later change of the same cell supersedes an earlier one.
                match row.cells.iter_mut().find(|c| c.col == col) {
                    Some(existing) => *existing = cell,
                    None => row.cells.push(cell),
                }
            }
        }
        Ok(())
    }

    /// The changes back as flat records, in order.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        self.rows.iter().flat_map(move |row| {
            let table = &self.tables[row.table];
            let event = row.event.map(|o| Change {
                table: table.name.clone(),
                pk: row.pk.clone(),
                column: None,
                value: Value::Null,
                col_version: 0,
                at: o.at,
                site: self.sites[o.site],
                cl: row.cl,
            });
            event.into_iter().chain(row.cells.iter().map(move |c| Change {
                table: table.name.clone(),
                pk: row.pk.clone(),
                column: Some(table.columns[c.col].clone()),
                value: c.value.clone(),
                col_version: c.version,
                at: c.origin.at,
                site: self.sites[c.origin.site],
                cl: row.cl,
            }))
        })
    }

    /// The changeset split into one changeset per row, in order: what applying a
    /// payload row by row needs (a row refused by the receiver's rules must not take
    /// the others with it, and must not be half-applied itself).
    pub fn single_rows(&self) -> impl Iterator<Item = Changeset> + '_ {
        self.rows.iter().map(move |row| Changeset {
            sites: self.sites.clone(),
            tables: self.tables.clone(),
            rows: vec![row.clone()],
        })
    }

    /// The largest sender position in the changeset (its checkpoint once applied).
    pub fn max_cursor(&self) -> Option<Cursor> {
        self.rows.iter().flat_map(|r| r.event.iter().map(|o| o.at).chain(r.cells.iter().map(|c| c.origin.at))).max()
    }
}
