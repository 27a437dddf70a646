//! An in-memory replica: the reference [`Store`] the core is tested on.
//!
//! It keeps user tables as maps from encoded key to values and implements local
//! writes the way an engine must (each write is one transaction that moves the row's
//! clock with [`apply_local`]), the change feed, and merges through
//! [`apply_changeset_with`](crate::engine::apply_changeset_with). It has no I/O and is not meant for production data.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::algo::Algo;
use crate::change::Changeset;
use crate::clock::RowClock;
use crate::engine::{apply_changeset_with, row_changes, ApplyError, ApplyReport, RowKey, Store, TableInfo, Unknown};
use crate::ids::{ColId, Cursor, SiteId, SiteOrd, Stamp};
use crate::local::{apply_local, LocalOp};
use crate::merge::{RowWrite, SeqAlloc};
use crate::value::{encode_key, Value};

#[derive(Clone, Debug)]
struct MemTable {
    info: TableInfo,
    rows: BTreeMap<Vec<u8>, Vec<Value>>,
    clocks: BTreeMap<Vec<u8>, RowClock>,
}

/// A replica held in memory. Columns default to NULL.
#[derive(Clone, Debug)]
pub struct MemReplica {
    sites: Vec<SiteId>,
    db_version: u64,
    tables: BTreeMap<String, MemTable>,
}

/// A local write that the table's algorithm refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalError {
    /// Unknown table or column.
    #[error("no such table or column: {0}")]
    NoSuch(String),
    /// Insert of an existing key.
    #[error("row already exists")]
    Exists,
    /// Update or delete of a missing key.
    #[error("row does not exist")]
    Missing,
    /// The algorithm forbids this write.
    #[error("refused by the table algorithm")]
    Refused,
}

impl MemReplica {
    /// An empty replica with the given site id.
    pub fn new(site: SiteId) -> Self {
        MemReplica { sites: vec![site], db_version: 0, tables: BTreeMap::new() }
    }

    /// This replica's site id.
    pub fn site(&self) -> SiteId {
        self.sites[0]
    }

    /// The latest local db_version.
    pub fn db_version(&self) -> u64 {
        self.db_version
    }

    /// Creates a synced table with one key column and the given value columns.
    pub fn create_table(&mut self, name: &str, algo: Algo, columns: &[&str]) {
        let info = TableInfo {
            name: name.to_string(),
            algo,
            pk_len: 1,
            columns: columns.iter().zip(0..).map(|(c, i)| (i, (*c).to_string())).collect(),
            fingerprint: 0,
            dropped: Vec::new(),
            affinities: Default::default(),
        };
        self.tables.insert(name.to_string(), MemTable { info, rows: BTreeMap::new(), clocks: BTreeMap::new() });
    }

    fn local_write(&mut self, table: &str, pk: &[u8], op: LocalOp) {
        self.db_version += 1;
        let stamp = Stamp::local(self.db_version, 0);
        let Some(t) = self.tables.get_mut(table) else { return };
        let ids = t.info.column_ids();
        let old = t.clocks.remove(pk);
        if let Some(clock) = apply_local(old, &op, t.info.algo, &ids, stamp) {
            t.clocks.insert(pk.to_vec(), clock);
        }
    }

    fn key_state(&self, table: &str, key: &Value) -> Result<(Vec<u8>, bool, Option<bool>), LocalError> {
        let t = self.tables.get(table).ok_or_else(|| LocalError::NoSuch(table.into()))?;
        let pk = encode_key(std::slice::from_ref(key));
        let exists = t.rows.contains_key(&pk);
        let clock_alive = t.clocks.get(&pk).map(RowClock::is_alive);
        Ok((pk, exists, clock_alive))
    }

    /// INSERT (one transaction).
    pub fn insert(&mut self, table: &str, key: Value, values: Vec<Value>) -> Result<(), LocalError> {
        let (pk, exists, clock_alive) = self.key_state(table, &key)?;
        let t = &self.tables[table];
        if exists {
            return Err(LocalError::Exists);
        }
        if t.info.algo == Algo::Dws && clock_alive == Some(false) {
            return Err(LocalError::Refused);
        }
        let mut row = values;
        row.resize(t.info.columns.len(), Value::Null);
        self.tables.get_mut(table).map(|t| t.rows.insert(pk.clone(), row));
        self.local_write(table, &pk, LocalOp::Insert);
        Ok(())
    }

    /// The table and encoded key of an existing row that may be updated or deleted.
    fn existing(&mut self, table: &str, key: &Value) -> Result<(&mut MemTable, Vec<u8>), LocalError> {
        let (pk, exists, _) = self.key_state(table, key)?;
        let t = self.tables.get_mut(table).ok_or_else(|| LocalError::NoSuch(table.into()))?;
        if t.info.algo == Algo::Gos {
            return Err(LocalError::Refused);
        }
        if !exists {
            return Err(LocalError::Missing);
        }
        Ok((t, pk))
    }

    /// UPDATE of one column (one transaction). Writing the current value is a no-op.
    pub fn update(&mut self, table: &str, key: Value, column: &str, value: Value) -> Result<(), LocalError> {
        let (t, pk) = self.existing(table, &key)?;
        let idx =
            t.info.columns.iter().position(|(_, n)| n == column).ok_or_else(|| LocalError::NoSuch(column.into()))?;
        let id = t.info.columns[idx].0;
        let row = t.rows.get_mut(&pk).ok_or(LocalError::Missing)?;
        if row[idx] == value {
            return Ok(());
        }
        row[idx] = value;
        self.local_write(table, &pk, LocalOp::Update(vec![id]));
        Ok(())
    }

    /// DELETE (one transaction).
    pub fn delete(&mut self, table: &str, key: Value) -> Result<(), LocalError> {
        let (t, pk) = self.existing(table, &key)?;
        t.rows.remove(&pk);
        self.local_write(table, &pk, LocalOp::Delete);
        Ok(())
    }

    /// Every change recorded after `after`, in feed order (rows ordered by their
    /// latest stamp), as one changeset.
    pub fn changes_since(&self, after: Cursor) -> Changeset {
        let mut rows: Vec<(Cursor, &MemTable, &Vec<u8>, &RowClock)> = Vec::new();
        for t in self.tables.values() {
            for (pk, clock) in &t.clocks {
                if clock.max_stamp() > after {
                    rows.push((clock.max_stamp(), t, pk, clock));
                }
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(b.2)));
        let mut cs = Changeset::default();
        for (_, t, pk, clock) in rows {
            let changes = row_changes::<Infallible>(
                &t.info,
                pk,
                clock,
                after,
                |ord| Ok(self.sites[ord as usize]),
                |cols| Ok(cols.iter().map(|c| value_of(t, pk, *c)).collect()),
            )
            .unwrap_or_else(|e| match e {});
            for c in changes {
                // Changes read from a consistent replica are always well-formed.
                let _ = cs.push(c, |_| (t.info.algo, t.info.fingerprint));
            }
        }
        cs
    }

    /// Merges a changeset (atomically: on error nothing changes).
    pub fn apply(&mut self, cs: &Changeset) -> Result<ApplyReport, ApplyError<Infallible>> {
        self.apply_with(cs, Unknown::Refuse)
    }

    /// Merges a changeset, handling tables and columns this replica does not have as
    /// `unknown` says (atomically: on error nothing changes).
    pub fn apply_with(&mut self, cs: &Changeset, unknown: Unknown) -> Result<ApplyReport, ApplyError<Infallible>> {
        let mut scratch = self.clone();
        let report = apply_changeset_with(&mut scratch, cs, unknown)?;
        *self = scratch;
        Ok(report)
    }

    /// Adds a column to a synced table (NULL in existing rows, no change of its own),
    /// as an engine's alter does.
    pub fn add_column(&mut self, table: &str, column: &str) {
        let Some(t) = self.tables.get_mut(table) else { return };
        let id = t.info.columns.iter().map(|(id, _)| *id + 1).max().unwrap_or(0);
        t.info.columns.push((id, column.to_string()));
        for values in t.rows.values_mut() {
            values.push(Value::Null);
        }
    }

    /// A table's rows: encoded key → values in column order.
    pub fn rows(&self, table: &str) -> BTreeMap<Vec<u8>, Vec<Value>> {
        self.tables.get(table).map(|t| t.rows.clone()).unwrap_or_default()
    }

    /// A row's clock.
    pub fn clock(&self, table: &str, key: &Value) -> Option<RowClock> {
        self.tables.get(table)?.clocks.get(&encode_key(std::slice::from_ref(key))).cloned()
    }
}

fn value_of(t: &MemTable, pk: &[u8], col: ColId) -> Value {
    let idx = t.info.columns.iter().position(|(c, _)| *c == col);
    t.rows.get(pk).and_then(|r| idx.map(|i| r[i].clone())).unwrap_or(Value::Null)
}

impl Store for MemReplica {
    type Error = Infallible;

    fn table(&mut self, name: &str) -> Result<Option<TableInfo>, Infallible> {
        Ok(self.tables.get(name).map(|t| t.info.clone()))
    }

    fn clock(&mut self, table: &TableInfo, key: RowKey<'_>) -> Result<Option<RowClock>, Infallible> {
        Ok(self.tables.get(&table.name).and_then(|t| t.clocks.get(key.bytes).cloned()))
    }

    fn values(&mut self, table: &TableInfo, key: RowKey<'_>, cols: &[ColId]) -> Result<Vec<Value>, Infallible> {
        let t = &self.tables[&table.name];
        Ok(cols.iter().map(|c| value_of(t, key.bytes, *c)).collect())
    }

    fn write_row(&mut self, table: &TableInfo, key: RowKey<'_>, write: &RowWrite<'_>) -> Result<(), Infallible> {
        let pk = key.bytes;
        let Some(t) = self.tables.get_mut(&table.name) else { return Ok(()) };
        let width = t.info.columns.len();
        let set = |row: &mut Vec<Value>, values: &[(ColId, &Value)]| {
            for (col, v) in values {
                if let Some(i) = t.info.columns.iter().position(|(c, _)| c == col) {
                    row[i] = (*v).clone();
                }
            }
        };
        match write {
            RowWrite::None => {}
            RowWrite::Delete => {
                t.rows.remove(pk);
            }
            RowWrite::Create(values) | RowWrite::Update { values, reset_others: true } => {
                let mut row = vec![Value::Null; width];
                set(&mut row, values);
                t.rows.insert(pk.to_vec(), row);
            }
            RowWrite::Update { values, reset_others: false } => {
                if let Some(row) = t.rows.get_mut(pk) {
                    set(row, values);
                }
            }
        }
        Ok(())
    }

    fn save_clock(&mut self, table: &TableInfo, key: RowKey<'_>, clock: &RowClock) -> Result<(), Infallible> {
        if let Some(t) = self.tables.get_mut(&table.name) {
            t.clocks.insert(key.bytes.to_vec(), clock.clone());
        }
        Ok(())
    }

    fn site_ord(&mut self, site: &SiteId) -> Result<SiteOrd, Infallible> {
        let i = match self.sites.iter().position(|s| s == site) {
            Some(i) => i,
            None => {
                self.sites.push(*site);
                self.sites.len() - 1
            }
        };
        Ok(SiteOrd::try_from(i).unwrap_or(SiteOrd::MAX))
    }

    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId, Infallible> {
        Ok(self.sites[site as usize])
    }

    fn begin_merge(&mut self, at_least: u64) -> Result<SeqAlloc, Infallible> {
        Ok(SeqAlloc::new((self.db_version + 1).max(at_least), 0))
    }

    fn end_merge(&mut self, alloc: &SeqAlloc) -> Result<(), Infallible> {
        if alloc.next_seq() > 0 {
            self.db_version = self.db_version.max(alloc.db_version());
        }
        Ok(())
    }
}
