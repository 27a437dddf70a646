//! The core's [`Store`] over a SQLite connection.
//!
//! A store lives for one apply. For each table it touches it prepares the per-row
//! statements once (clock lookup, clock upsert, delete, and one statement per set of
//! columns written) and keeps them, so the per-row cost is binding and stepping.

use std::collections::HashMap;

use cloudsync_core::engine::{RowKey, Store, TableInfo};
use cloudsync_core::merge::{RowWrite, SeqAlloc};
use cloudsync_core::{ColId, Cursor, RowClock, SiteId, SiteOrd, Value};
use rusqlite::{params_from_iter, Connection, OptionalExtension, Statement};

use crate::meta::table::SyncTable;
use crate::sql::{i64_of, ident, u64_of, value_of, Bind};
use crate::{meta, Error, Result};

/// How incoming values are held against the columns' type affinity
/// (`Affinity::converts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Keys must be stored as sent (a converted key would name another row than the
    /// clock); other values are stored as the column stores them. A device: what a
    /// PostgreSQL server sends for a SQLite `NUMERIC` column is text, which the column
    /// converts by design (`docs/postgres.md`, type mapping).
    Keys,
    /// Keys and values must be stored as sent: the central database of the service,
    /// where one apply decides what every device downloads.
    Exact,
}

/// Kinds of column-set-dependent statements.
#[derive(Clone, Copy)]
enum Kind {
    /// `INSERT … ON CONFLICT DO NOTHING` of the key and these columns.
    Create = 0,
    /// `UPDATE` of these columns.
    Update = 1,
    /// `UPDATE` of these columns, every other column back to its default.
    UpdateReset = 2,
    /// `SELECT` of these columns.
    Select = 3,
}

/// A synced table with its per-row statements.
struct Prepared<'c> {
    table: SyncTable,
    clock_select: Statement<'c>,
    clock_upsert: Statement<'c>,
    delete: Statement<'c>,
    by_columns: HashMap<Vec<ColId>, [Option<Statement<'c>>; 4]>,
}

fn pk_where(t: &SyncTable, first_param: usize) -> String {
    t.pk.iter()
        .enumerate()
        .map(|(i, k)| format!("{} = ?{}", ident(&k.name), first_param + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn params(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

impl<'c> Prepared<'c> {
    fn new(conn: &'c Connection, table: SyncTable) -> Result<Self> {
        let keys = table.meta_keys();
        let cond = keys.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ");
        let clock_select = conn.prepare(&format!("SELECT cl, dbv, seq, clock FROM {} WHERE {cond}", table.meta()))?;
        let clock_upsert = conn.prepare(&format!(
            "INSERT INTO {meta} ({k}, cl, dbv, seq, clock) VALUES ({p}) ON CONFLICT ({k}) DO UPDATE SET \
             cl = excluded.cl, dbv = excluded.dbv, seq = excluded.seq, clock = excluded.clock",
            meta = table.meta(),
            k = keys.join(", "),
            p = params(1, keys.len() + 4),
        ))?;
        let delete = conn.prepare(&format!("DELETE FROM {} WHERE {}", table.quoted(), pk_where(&table, 1)))?;
        Ok(Prepared { table, clock_select, clock_upsert, delete, by_columns: HashMap::new() })
    }

    /// The statement of `kind` for `cols` (live column ids), prepared on first use.
    fn statement(&mut self, conn: &'c Connection, kind: Kind, cols: &[ColId]) -> Result<&mut Statement<'c>> {
        let k = kind as usize;
        if self.by_columns.get(cols).is_none_or(|s| s[k].is_none()) {
            let stmt = conn.prepare(&self.sql(kind, cols))?;
            self.by_columns.entry(cols.to_vec()).or_default()[k] = Some(stmt);
        }
        self.by_columns
            .get_mut(cols)
            .and_then(|s| s[k].as_mut())
            .ok_or_else(|| Error::Corrupt("statement cache inconsistency".into()))
    }

    fn sql(&self, kind: Kind, cols: &[ColId]) -> String {
        let t = &self.table;
        let names: Vec<String> = cols.iter().filter_map(|c| t.column(*c)).map(|c| ident(&c.name)).collect();
        match kind {
            Kind::Create => {
                let keys: Vec<String> = t.pk.iter().map(|k| ident(&k.name)).collect();
                let all: Vec<String> = keys.iter().cloned().chain(names).collect();
                format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
                    t.quoted(),
                    all.join(", "),
                    params(1, all.len()),
                    keys.join(", "),
                )
            }
            Kind::Select => format!(
                "SELECT {} FROM {} WHERE {}",
                if names.is_empty() { "NULL".to_string() } else { names.join(", ") },
                t.quoted(),
                pk_where(t, 1)
            ),
            Kind::Update | Kind::UpdateReset => {
                let mut sets: Vec<String> =
                    names.iter().enumerate().map(|(i, n)| format!("{n} = ?{}", i + 1)).collect();
                if matches!(kind, Kind::UpdateReset) {
                    for col in t.columns.iter().filter(|c| !cols.contains(&c.id)) {
                        sets.push(format!("{} = ({})", ident(&col.name), col.default_sql.as_deref().unwrap_or("NULL")));
                    }
                }
                if sets.is_empty() {
                    // Nothing to set: a no-op statement keeps the caller simple.
                    return format!("SELECT 1 WHERE 0 AND {}", pk_where(t, 1));
                }
                format!("UPDATE {} SET {} WHERE {}", t.quoted(), sets.join(", "), pk_where(t, names.len() + 1))
            }
        }
    }
}

/// A [`Store`] over one connection, for the duration of one apply.
pub struct SqliteStore<'c> {
    conn: &'c Connection,
    values: Values,
    tables: HashMap<String, Prepared<'c>>,
    sites: HashMap<SiteOrd, SiteId>,
}

impl<'c> SqliteStore<'c> {
    /// A store over `conn`, holding incoming values to `values`. The caller owns the
    /// transaction.
    pub fn new(conn: &'c Connection, values: Values) -> Self {
        SqliteStore { conn, values, tables: HashMap::new(), sites: HashMap::new() }
    }

    fn prepared(&mut self, info: &TableInfo) -> Result<&mut Prepared<'c>> {
        self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))
    }

    /// The tables this store touched.
    pub fn touched(&self) -> impl Iterator<Item = &SyncTable> {
        self.tables.values().map(|p| &p.table)
    }
}

/// Live columns of a write, with their values.
fn live<'v>(t: &SyncTable, values: &[(ColId, &'v Value)]) -> (Vec<ColId>, Vec<&'v Value>) {
    values.iter().filter(|(c, _)| t.column(*c).is_some()).map(|(c, v)| (*c, *v)).unzip()
}

impl Store for SqliteStore<'_> {
    type Error = Error;

    fn table(&mut self, name: &str) -> Result<Option<TableInfo>> {
        if !self.tables.contains_key(name) {
            let Some(t) = SyncTable::load(self.conn, name)? else { return Ok(None) };
            if t.altering {
                return Err(Error::Apply(format!(
                    "table '{}' is being altered (cloudsync_begin_alter without cloudsync_commit_alter); \
                     payloads cannot be applied until the alter is committed",
                    t.name
                )));
            }
            self.tables.insert(name.to_string(), Prepared::new(self.conn, t)?);
        }
        Ok(self.tables.get(name).map(|p| {
            let mut info = p.table.info();
            if self.values == Values::Keys {
                info.affinities.columns.clear();
            }
            info
        }))
    }

    fn clock(&mut self, info: &TableInfo, key: RowKey<'_>) -> Result<Option<RowClock>> {
        let p = self.prepared(info)?;
        let row: Option<(i64, i64, i64, Vec<u8>)> = p
            .clock_select
            .query_row(params_from_iter(key.values.iter().map(Bind)), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        row.map(|(cl, dbv, seq, blob)| {
            let at = Cursor::new(u64_of(dbv, "db_version")?, u64_of(seq, "seq")?);
            crate::sql::stored_clock(u64_of(cl, "causal length")?, at, &blob)
        })
        .transpose()
    }

    fn values(&mut self, info: &TableInfo, key: RowKey<'_>, cols: &[ColId]) -> Result<Vec<Value>> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        // Columns unknown here (dropped) read as NULL.
        let wanted: Vec<ColId> = cols.iter().copied().filter(|c| p.table.column(*c).is_some()).collect();
        let found = p
            .statement(conn, Kind::Select, &wanted)?
            .query_row(params_from_iter(key.values.iter().map(Bind)), |r| {
                (0..wanted.len()).map(|i| r.get_ref(i).map(value_of)).collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?;
        Ok(cols
            .iter()
            .map(|c| match (&found, wanted.iter().position(|w| w == c)) {
                (Some(vals), Some(i)) => vals[i].clone(),
                _ => Value::Null,
            })
            .collect())
    }

    fn write_row(&mut self, info: &TableInfo, key: RowKey<'_>, write: &RowWrite<'_>) -> Result<()> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        match write {
            RowWrite::None => {}
            RowWrite::Delete => {
                p.delete.execute(params_from_iter(key.values.iter().map(Bind)))?;
            }
            RowWrite::Create(values) => {
                let (cols, vals) = live(&p.table, values);
                let args = key.values.iter().chain(vals.iter().copied()).map(Bind);
                let inserted = p.statement(conn, Kind::Create, &cols)?.execute(params_from_iter(args))?;
                if inserted == 0 {
                    // The key exists though its clock said otherwise (the row was written
                    // while tracking was off): overwrite it as the new life says.
                    let args = vals.iter().copied().chain(key.values.iter()).map(Bind);
                    p.statement(conn, Kind::UpdateReset, &cols)?.execute(params_from_iter(args))?;
                }
            }
            RowWrite::Update { values, reset_others } => {
                let (cols, vals) = live(&p.table, values);
                if cols.is_empty() && !reset_others {
                    return Ok(());
                }
                let kind = if *reset_others { Kind::UpdateReset } else { Kind::Update };
                let args = vals.iter().copied().chain(key.values.iter()).map(Bind);
                p.statement(conn, kind, &cols)?.execute(params_from_iter(args))?;
            }
        }
        Ok(())
    }

    fn save_clock(&mut self, info: &TableInfo, key: RowKey<'_>, clock: &RowClock) -> Result<()> {
        let p = self.prepared(info)?;
        let max = clock.max_stamp();
        let tail = [
            Value::Integer(i64_of(clock.cl)?),
            Value::Integer(i64_of(max.db_version)?),
            Value::Integer(i64_of(max.seq)?),
            Value::Blob(clock.encode()),
        ];
        p.clock_upsert.execute(params_from_iter(key.values.iter().chain(tail.iter()).map(Bind)))?;
        Ok(())
    }

    fn site_ord(&mut self, site: &SiteId) -> Result<SiteOrd> {
        let ord = meta::site_ord(self.conn, site)?;
        self.sites.insert(ord, *site);
        Ok(ord)
    }

    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId> {
        if let Some(s) = self.sites.get(&site) {
            return Ok(*s);
        }
        let id = meta::site_id(self.conn, site)?;
        self.sites.insert(site, id);
        Ok(id)
    }

    fn begin_merge(&mut self, at_least: u64) -> Result<SeqAlloc> {
        let next = meta::db_version(self.conn)? + 1;
        Ok(SeqAlloc::new(next.max(at_least), 0))
    }

    fn end_merge(&mut self, alloc: &SeqAlloc) -> Result<()> {
        if alloc.next_seq() > 0 {
            meta::set_db_version(self.conn, alloc.db_version())?;
        }
        Ok(())
    }
}
