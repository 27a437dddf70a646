//! The merge engine, written once against a small storage trait.
//!
//! An engine adapter (SQLite, PostgreSQL, the in-memory test store) implements
//! [`Store`]: read and write one row's clock, read some of a row's values, apply a
//! [`RowWrite`] to the user table, intern site ids, and hand out the local
//! `db_version` of a merge. [`apply_changeset`] does the rest: validate the whole
//! changeset against the local schema first (so an incompatible payload writes
//! nothing), then merge row by row. The caller owns the transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::algo::Algo;
use crate::change::{Change, ChangeRow, Changeset};
use crate::clock::{CellClock, RowClock};
use crate::error::DecodeError;
use crate::ids::{ColId, Cursor, SiteId, SiteOrd};
use crate::merge::{merge_row, IncomingCell, IncomingRow, MergeEnv, RowWrite, SeqAlloc};
use crate::schema::Affinity;
use crate::value::{decode_key, Value};

/// What the engine knows about a synced table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Algorithm.
    pub algo: Algo,
    /// Number of primary-key columns.
    pub pk_len: usize,
    /// Synced non-key columns: stable id and name.
    pub columns: Vec<(ColId, String)>,
    /// Schema fingerprint.
    pub fingerprint: u64,
    /// Names of columns that were dropped here: changes to them (from replicas still
    /// on the older schema) are skipped and counted, not refused.
    pub dropped: Vec<String>,
    /// How the engine converts stored values, for engines that do (SQLite's type
    /// affinity): a change whose value the column would convert is refused before
    /// anything is written. Empty for engines that check values exactly themselves
    /// (PostgreSQL).
    pub affinities: Affinities,
}

/// SQLite's type affinity of a table's columns ([`TableInfo::affinities`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affinities {
    /// Key columns' names and affinities, in key order (empty: unchecked).
    pub keys: Vec<(String, Affinity)>,
    /// Synced columns by id (a column not listed is unchecked).
    pub columns: Vec<(ColId, Affinity)>,
}

impl TableInfo {
    /// Column id by name (exact match first, then ASCII case-insensitive, as SQL does).
    pub fn column_id(&self, name: &str) -> Option<ColId> {
        self.columns
            .iter()
            .find(|(_, n)| n == name)
            .or_else(|| self.columns.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)))
            .map(|(id, _)| *id)
    }

    /// Column name by id.
    pub fn column_name(&self, id: ColId) -> Option<&str> {
        self.columns.iter().find(|(c, _)| *c == id).map(|(_, n)| n.as_str())
    }

    /// All column ids.
    pub fn column_ids(&self) -> Vec<ColId> {
        self.columns.iter().map(|(id, _)| *id).collect()
    }
}

/// A row's primary key, encoded and decoded (decoded once per row by the engine).
#[derive(Clone, Copy, Debug)]
pub struct RowKey<'a> {
    /// The encoded key ([`crate::value::encode_key`]).
    pub bytes: &'a [u8],
    /// The key's values, in key-column order.
    pub values: &'a [Value],
}

/// Storage an engine adapter provides.
pub trait Store {
    /// The adapter's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A synced table by name, or `None`.
    fn table(&mut self, name: &str) -> Result<Option<TableInfo>, Self::Error>;
    /// A row's clock.
    fn clock(&mut self, table: &TableInfo, key: RowKey<'_>) -> Result<Option<RowClock>, Self::Error>;
    /// Current values of some columns of a live row (in the order asked).
    fn values(&mut self, table: &TableInfo, key: RowKey<'_>, cols: &[ColId]) -> Result<Vec<Value>, Self::Error>;
    /// Applies a merge outcome to the user table.
    fn write_row(&mut self, table: &TableInfo, key: RowKey<'_>, write: &RowWrite<'_>) -> Result<(), Self::Error>;
    /// Stores a row's clock.
    fn save_clock(&mut self, table: &TableInfo, key: RowKey<'_>, clock: &RowClock) -> Result<(), Self::Error>;
    /// The local ordinal of a site id, interning it on first sight.
    fn site_ord(&mut self, site: &SiteId) -> Result<SiteOrd, Self::Error>;
    /// The site id of a local ordinal.
    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId, Self::Error>;
    /// Starts a merge: the `db_version` for its changes, at least `at_least`
    /// (Lamport) and above every local version.
    fn begin_merge(&mut self, at_least: u64) -> Result<SeqAlloc, Self::Error>;
    /// Records that a merge used versions up to `alloc`.
    fn end_merge(&mut self, alloc: &SeqAlloc) -> Result<(), Self::Error>;
}

/// Why a changeset does not fit this replica: the sender's schema or values, never a
/// failure of the storage. Each has a stable [`Incompatible::code`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Incompatible {
    /// The payload names a table that is not synced here.
    #[error("payload has changes for table '{0}', which is not synced in this database (run cloudsync_init on it, or migrate the schema)")]
    UnknownTable(String),
    /// The payload names a column this replica does not have.
    #[error("payload has changes for column '{column}' of table '{table}', which does not exist here: the sender runs a newer schema; migrate this database first")]
    UnknownColumn {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// Sender and receiver disagree on the algorithm.
    #[error("table '{table}' uses algorithm {local} here but {remote} at the sender; both sides must use the same algorithm")]
    AlgoMismatch {
        /// Table.
        table: String,
        /// Local algorithm.
        local: Algo,
        /// Sender's algorithm.
        remote: Algo,
    },
    /// A primary key that does not fit the local key columns.
    #[error("bad primary key for table '{table}': {source}")]
    BadKey {
        /// Table.
        table: String,
        /// What is wrong with it.
        source: DecodeError,
    },
    /// A value the column would store as something else ([`Affinity::converts`]): the
    /// replica would hold a different value than every payload of it carries.
    #[error("value {value} for column '{column}' of table '{table}' would be stored as {stored_as} (the column's type affinity is {affinity}); send values of the type the column stores")]
    BadValue {
        /// Table.
        table: String,
        /// Column (a key column or a synced one).
        column: String,
        /// The value, shortened, with its type.
        value: String,
        /// What it would be stored as.
        stored_as: &'static str,
        /// The column's affinity.
        affinity: &'static str,
    },
    /// A payload uploaded by one site that carries changes written by another: a
    /// device speaks only for itself ([`written_by`]).
    #[error("payload contains changes attributed to site {other}, but was uploaded by {uploader}")]
    ForeignSite {
        /// The site the payload names.
        other: SiteId,
        /// The site that uploaded it.
        uploader: SiteId,
    },
}

impl Incompatible {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Incompatible::UnknownTable(_) => "unknown_table",
            Incompatible::UnknownColumn { .. } => "unknown_column",
            Incompatible::AlgoMismatch { .. } => "algorithm_mismatch",
            Incompatible::BadKey { .. } => "invalid_key",
            Incompatible::BadValue { .. } => "invalid_value",
            Incompatible::ForeignSite { .. } => "foreign_site",
        }
    }
}

/// Refuses a changeset uploaded by `uploader` that holds changes another site wrote.
/// Every engine checks this where it decodes an uploaded payload, before writing.
pub fn written_by(cs: &Changeset, uploader: SiteId) -> Result<(), Incompatible> {
    match cs.sites.iter().find(|s| **s != uploader) {
        Some(other) => Err(Incompatible::ForeignSite { other: *other, uploader }),
        None => Ok(()),
    }
}

/// Why a changeset was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError<E: std::error::Error + 'static> {
    /// It does not fit this replica; nothing was written.
    #[error(transparent)]
    Incompatible(#[from] Incompatible),
    /// The storage failed.
    #[error(transparent)]
    Store(E),
}

/// Refuses a row whose key or cell values its columns would convert (SQLite affinity).
fn check_values(info: &TableInfo, cols: &[Option<ColId>], row: &ChangeRow, key: &[Value]) -> Result<(), Incompatible> {
    let refuse = |column: &str, v: &Value, stored_as, affinity: Affinity| Incompatible::BadValue {
        table: info.name.clone(),
        column: column.to_string(),
        value: v.describe(),
        stored_as,
        affinity: affinity.name(),
    };
    for (v, (name, a)) in key.iter().zip(&info.affinities.keys) {
        if let Some(stored_as) = a.converts(v) {
            return Err(refuse(name, v, stored_as, *a));
        }
    }
    for cell in &row.cells {
        let Some(id) = cols.get(cell.col).copied().flatten() else { continue };
        let Some((_, a)) = info.affinities.columns.iter().find(|(c, _)| *c == id) else { continue };
        if let Some(stored_as) = a.converts(&cell.value) {
            return Err(refuse(info.column_name(id).unwrap_or("?"), &cell.value, stored_as, *a));
        }
    }
    Ok(())
}

/// Outcome of an apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Incoming change records that changed local state.
    pub applied: u64,
    /// Incoming change records in total.
    pub received: u64,
    /// Changes to columns dropped here, or to tables and columns this replica does
    /// not have when they are skipped ([`Unknown::Skip`]), skipped.
    pub skipped: u64,
    /// The tables and columns (`table.column`) skipped as unknown here
    /// ([`Unknown::Skip`]).
    pub unknown: BTreeSet<String>,
    /// Applied records per table.
    pub tables: BTreeMap<String, u64>,
    /// The largest sender position in the changeset.
    pub cursor: Option<Cursor>,
}

struct Env<'a, S: Store> {
    store: &'a mut S,
    table: &'a TableInfo,
    key: RowKey<'a>,
}

impl<S: Store> MergeEnv for Env<'_, S> {
    type Error = S::Error;
    fn local_values(&mut self, cols: &[ColId]) -> Result<Vec<Value>, S::Error> {
        self.store.values(self.table, self.key, cols)
    }
    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId, S::Error> {
        self.store.site_id(site)
    }
}

/// What a merge does with tables and columns of the changeset that this replica does
/// not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unknown {
    /// Refuses the whole changeset ([`Incompatible::UnknownTable`],
    /// [`Incompatible::UnknownColumn`]): a central database receiving a device's
    /// changes must not lose any.
    #[default]
    Refuse,
    /// Skips their changes and names them in [`ApplyReport::unknown`]: a device running
    /// an older schema than the sender's merges what it has, and takes the rest once
    /// its schema has it (by reading the changes again).
    Skip,
}

/// The tables and columns (`table.column`) of `cs` that `schema` does not have:
/// `schema` maps each table's lowercase name to its columns' lowercase names (dropped
/// ones included: changes to them are skipped, not refused). Names as
/// [`ApplyReport::unknown`] gives them; empty when `cs` fits.
pub fn unknown_in(cs: &Changeset, schema: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut unknown = BTreeSet::new();
    for desc in &cs.tables {
        let Some(columns) = schema.get(&desc.name.to_ascii_lowercase()) else {
            unknown.insert(desc.name.clone());
            continue;
        };
        for c in &desc.columns {
            if !columns.contains(&c.to_ascii_lowercase()) {
                unknown.insert(format!("{}.{c}", desc.name));
            }
        }
    }
    unknown
}

/// `cs` without the changes of tables and columns `schema` lacks (`schema` as for
/// [`unknown_in`]), with the names it left out: what a replica on `schema` would skip,
/// left out before it travels. None when `cs` fits `schema` whole.
pub fn known_only(
    cs: &Changeset,
    schema: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<(Changeset, BTreeSet<String>)>, crate::change::ChangeError> {
    let unknown = unknown_in(cs, schema);
    if unknown.is_empty() {
        return Ok(None);
    }
    let mut out = Changeset::default();
    for change in cs.changes() {
        let known = schema
            .get(&change.table.to_ascii_lowercase())
            .is_some_and(|columns| change.column.as_ref().is_none_or(|c| columns.contains(&c.to_ascii_lowercase())));
        if !known {
            continue;
        }
        let info = cs.table_info(&change.table);
        out.push(change, |_| info)?;
    }
    Ok(Some((out, unknown)))
}

/// Validates `cs` against the local schema, then merges it (see the module docs);
/// refuses tables and columns this replica does not have.
pub fn apply_changeset<S: Store>(store: &mut S, cs: &Changeset) -> Result<ApplyReport, ApplyError<S::Error>> {
    apply_changeset_with(store, cs, Unknown::Refuse)
}

/// [`apply_changeset`], with tables and columns this replica does not have handled as
/// `unknown` says.
pub fn apply_changeset_with<S: Store>(
    store: &mut S,
    cs: &Changeset,
    unknown: Unknown,
) -> Result<ApplyReport, ApplyError<S::Error>> {
    // 1. Validate everything before the first write.
    let mut skipped_names = BTreeSet::new();
    let mut tables = Vec::with_capacity(cs.tables.len());
    for desc in &cs.tables {
        let Some(info) = store.table(&desc.name).map_err(ApplyError::Store)? else {
            if unknown == Unknown::Refuse {
                return Err(Incompatible::UnknownTable(desc.name.clone()).into());
            }
            skipped_names.insert(desc.name.clone());
            tables.push(None);
            continue;
        };
        if info.algo != desc.algo {
            return Err(
                Incompatible::AlgoMismatch { table: desc.name.clone(), local: info.algo, remote: desc.algo }.into()
            );
        }
        let mut cols = Vec::with_capacity(desc.columns.len());
        for c in &desc.columns {
            cols.push(match info.column_id(c) {
                Some(id) => Some(id),
                None if info.dropped.iter().any(|d| d.eq_ignore_ascii_case(c)) => None,
                None if unknown == Unknown::Skip => {
                    skipped_names.insert(format!("{}.{c}", desc.name));
                    None
                }
                None => return Err(Incompatible::UnknownColumn { table: desc.name.clone(), column: c.clone() }.into()),
            });
        }
        tables.push(Some((info, cols)));
    }
    let keys = cs
        .rows
        .iter()
        .map(|row| {
            let Some((info, cols)) = &tables[row.table] else { return Ok(None) };
            let key = decode_key(&row.pk, info.pk_len)
                .map_err(|source| Incompatible::BadKey { table: info.name.clone(), source })?;
            check_values(info, cols, row, &key)?;
            Ok(Some(key))
        })
        .collect::<Result<Vec<_>, Incompatible>>()?;

    // 2. Merge.
    let sites = cs
        .sites
        .iter()
        .map(|s| store.site_ord(s).map(|o| (o, *s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApplyError::Store)?;
    let cursor = cs.max_cursor();
    let mut alloc = store.begin_merge(cursor.map_or(0, |c| c.db_version)).map_err(ApplyError::Store)?;
    let mut report = ApplyReport { cursor, unknown: skipped_names, ..ApplyReport::default() };
    for (row, key_values) in cs.rows.iter().zip(&keys) {
        let changes = (row.cells.len() + usize::from(row.event.is_some())) as u64;
        let (Some((info, cols)), Some(key_values)) = (&tables[row.table], key_values) else {
            // A table this replica does not have (skipped as unknown).
            report.received += changes;
            report.skipped += changes;
            continue;
        };
        let key = RowKey { bytes: &row.pk, values: key_values };
        let incoming = IncomingRow {
            cl: row.cl,
            event_site: row.event.map(|o| sites[o.site].0),
            cells: row
                .cells
                .iter()
                .filter_map(|c| cols[c.col].map(|col| (c, col)))
                .map(|(c, col)| IncomingCell {
                    col,
                    version: c.version,
                    value: &c.value,
                    site: sites[c.origin.site].0,
                    site_id: sites[c.origin.site].1,
                })
                .collect(),
        };
        report.received += changes;
        report.skipped += (row.cells.len() - incoming.cells.len()) as u64;
        if incoming.cells.is_empty() && row.event.is_none() {
            continue;
        }
        let local = store.clock(info, key).map_err(ApplyError::Store)?;
        let mut env = Env { store: &mut *store, table: info, key };
        let merged =
            merge_row(local.as_ref(), &incoming, info.algo, &mut alloc, &mut env).map_err(ApplyError::Store)?;
        if let Some(clock) = &merged.clock {
            store.write_row(info, key, &merged.write).map_err(ApplyError::Store)?;
            store.save_clock(info, key, clock).map_err(ApplyError::Store)?;
            report.applied += u64::from(merged.applied);
            *report.tables.entry(info.name.clone()).or_default() += u64::from(merged.applied);
        }
    }
    store.end_merge(&alloc).map_err(ApplyError::Store)?;
    Ok(report)
}

/// Which parts of a row a reader positioned at `after` has not seen: cells stamped
/// after it, and the row event when it is needed (a deleted row, or a new life none
/// of whose cells are listed).
pub fn unseen(clock: &RowClock, after: Cursor) -> (bool, Vec<&CellClock>) {
    let cells: Vec<&CellClock> = clock.cells.iter().filter(|c| c.stamp.at > after).collect();
    let event = clock.row_stamp.at > after && (!clock.is_alive() || cells.is_empty());
    (event, cells)
}

/// The changes of one row a reader positioned at `after` has not seen, with values
/// read through `value_of`.
pub fn row_changes<E>(
    table: &TableInfo,
    pk: &[u8],
    clock: &RowClock,
    after: Cursor,
    mut site_of: impl FnMut(SiteOrd) -> Result<SiteId, E>,
    mut value_of: impl FnMut(&[ColId]) -> Result<Vec<Value>, E>,
) -> Result<Vec<Change>, E> {
    let (event, cells) = unseen(clock, after);
    let mut out = Vec::with_capacity(cells.len() + 1);
    if event {
        out.push(Change {
            table: table.name.clone(),
            pk: pk.to_vec(),
            column: None,
            value: Value::Null,
            col_version: 0,
            at: clock.row_stamp.at,
            site: site_of(clock.row_stamp.site)?,
            cl: clock.cl,
        });
    }
    if cells.is_empty() {
        return Ok(out);
    }
    let ids: Vec<ColId> = cells.iter().map(|c| c.col).collect();
    let values = value_of(&ids)?;
    for (cell, value) in cells.into_iter().zip(values) {
        let Some(name) = table.column_name(cell.col) else { continue };
        out.push(Change {
            table: table.name.clone(),
            pk: pk.to_vec(),
            column: Some(name.to_string()),
            value,
            col_version: cell.version,
            at: cell.stamp.at,
            site: site_of(cell.stamp.site)?,
            cl: clock.cl,
        });
    }
    Ok(out)
}

/// How applying one row of a payload ended, as the adapter saw it (the adapter owns the
/// transaction and rolls the row back itself when it refuses it).
#[derive(Debug)]
pub enum RowAttempt<R> {
    /// Applied (kept), changing this many cells.
    Applied(u64),
    /// Refused and rolled back. `retry`: the refusal may clear once other rows of the
    /// same payload have applied — a foreign key whose parent row comes later in the
    /// payload, or a parent deleted before its children are.
    Refused {
        /// Why, as the adapter reports it.
        refusal: R,
        /// Whether trying again after other rows applied may succeed.
        retry: bool,
    },
}

/// At most this many passes over a payload's rows refused with `retry`: enough for
/// any real nesting of parents and children, and a bound on what a hostile payload of
/// `n` rows can cost (`n` attempts a pass).
pub const ROW_PASSES: usize = 8;

/// Applies a changeset row by row through `attempt`, in payload order, then again for
/// the rows refused with `retry` while a pass applied anything (at most [`ROW_PASSES`]
/// passes): a payload lists rows in feed order, not in foreign-key order. Returns the
/// cells applied and each row refused for good, with its last refusal, in payload
/// order.
pub fn apply_row_by_row<R, E>(
    cs: &Changeset,
    mut attempt: impl FnMut(&Changeset) -> Result<RowAttempt<R>, E>,
) -> Result<(u64, Vec<(Changeset, R)>), E> {
    let mut applied = 0;
    let mut refused: Vec<(usize, Changeset, R)> = Vec::new();
    let mut pending: Vec<(usize, Changeset)> = cs.single_rows().enumerate().collect();
    for pass in 1..=ROW_PASSES {
        let mut waiting = Vec::new();
        let mut progressed = false;
        for (i, row) in pending {
            match attempt(&row)? {
                RowAttempt::Applied(n) => {
                    applied += n;
                    progressed = true;
                }
                RowAttempt::Refused { refusal, retry: true } => waiting.push((i, row, refusal)),
                RowAttempt::Refused { refusal, retry: false } => refused.push((i, row, refusal)),
            }
        }
        if waiting.is_empty() || !progressed || pass == ROW_PASSES {
            refused.extend(waiting);
            break;
        }
        pending = waiting.into_iter().map(|(i, row, _)| (i, row)).collect();
    }
    refused.sort_by_key(|(i, _, _)| *i);
    Ok((applied, refused.into_iter().map(|(_, row, r)| (row, r)).collect()))
}
