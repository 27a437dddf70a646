//! The core's [`Store`] over a SQLite connection.

use std::collections::HashMap;

use cloudsync_core::engine::{Store, TableInfo};
use cloudsync_core::merge::{RowWrite, SeqAlloc};
use cloudsync_core::value::decode_key;
use cloudsync_core::{ColId, Cursor, RowClock, SiteId, SiteOrd, Value};
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::sql::{i64_of, ident, u64_of, value_of, Bind};
use crate::table::SyncTable;
use crate::{meta, Error, Result};

/// A [`Store`] over one connection, for the duration of one apply.
pub struct SqliteStore<'c> {
    conn: &'c Connection,
    tables: HashMap<String, SyncTable>,
    sites: HashMap<SiteOrd, SiteId>,
}

impl<'c> SqliteStore<'c> {
    /// A store over `conn`. The caller owns the transaction.
    pub fn new(conn: &'c Connection) -> Self {
        SqliteStore { conn, tables: HashMap::new(), sites: HashMap::new() }
    }

    fn table_of(&self, info: &TableInfo) -> Result<&SyncTable> {
        self.tables.get(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))
    }

    /// Names of the tables this store touched.
    pub fn touched(&self) -> impl Iterator<Item = &SyncTable> {
        self.tables.values()
    }
}

fn key_of(t: &SyncTable, pk: &[u8]) -> Result<Vec<Value>> {
    Ok(decode_key(pk, t.pk.len())?)
}

fn pk_where(t: &SyncTable, first_param: usize) -> String {
    t.pk
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} = ?{}", ident(&k.name), first_param + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn default_of(t: &SyncTable, col: ColId) -> String {
    t.column(col).and_then(|c| c.default_sql.clone()).unwrap_or_else(|| "NULL".into())
}

impl Store for SqliteStore<'_> {
    type Error = Error;

    fn table(&mut self, name: &str) -> Result<Option<TableInfo>> {
        if !self.tables.contains_key(name) {
            match SyncTable::load(self.conn, name)? {
                Some(t) => {
                    if t.altering {
                        return Err(Error::Apply(format!(
                            "table '{}' is being altered (cloudsync_begin_alter without cloudsync_commit_alter); \
                             payloads cannot be applied until the alter is committed",
                            t.name
                        )));
                    }
                    self.tables.insert(name.to_string(), t);
                }
                None => return Ok(None),
            }
        }
        Ok(self.tables.get(name).map(SyncTable::info))
    }

    fn clock(&mut self, info: &TableInfo, pk: &[u8]) -> Result<Option<RowClock>> {
        let t = self.table_of(info)?;
        let key = key_of(t, pk)?;
        let cond = t.meta_keys().iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ");
        let sql = format!("SELECT cl, dbv, seq, clock FROM {} WHERE {cond}", t.meta());
        let row: Option<(i64, i64, i64, Vec<u8>)> = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params_from_iter(key.iter().map(Bind)), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        row.map(|(cl, dbv, seq, blob)| {
            let at = Cursor::new(u64_of(dbv, "db_version")?, u64_of(seq, "seq")?);
            Ok(RowClock::decode(u64_of(cl, "causal length")?, at, &blob)?)
        })
        .transpose()
    }

    fn values(&mut self, info: &TableInfo, pk: &[u8], cols: &[ColId]) -> Result<Vec<Value>> {
        let t = self.table_of(info)?;
        let key = key_of(t, pk)?;
        let names: Vec<String> = cols
            .iter()
            .map(|c| t.column(*c).map_or_else(|| "NULL".to_string(), |c| ident(&c.name)))
            .collect();
        let sql = format!("SELECT {} FROM {} WHERE {}", names.join(", "), t.quoted(), pk_where(t, 1));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let values = stmt
            .query_row(params_from_iter(key.iter().map(Bind)), |r| {
                (0..cols.len()).map(|i| r.get_ref(i).map(value_of)).collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?;
        Ok(values.unwrap_or_else(|| vec![Value::Null; cols.len()]))
    }

    fn write_row(&mut self, info: &TableInfo, pk: &[u8], write: &RowWrite) -> Result<()> {
        let t = self.table_of(info)?;
        let key = key_of(t, pk)?;
        match write {
            RowWrite::None => {}
            RowWrite::Delete => {
                let sql = format!("DELETE FROM {} WHERE {}", t.quoted(), pk_where(t, 1));
                self.conn.prepare_cached(&sql)?.execute(params_from_iter(key.iter().map(Bind)))?;
            }
            RowWrite::Create(values) => {
                let mut cols: Vec<String> = t.pk.iter().map(|k| ident(&k.name)).collect();
                cols.extend(values.iter().filter_map(|(c, _)| t.column(*c)).map(|c| ident(&c.name)));
                let args: Vec<&Value> = key.iter().chain(values.iter().filter(|(c, _)| t.column(*c).is_some()).map(|(_, v)| v)).collect();
                let conflict: Vec<String> = t.pk.iter().map(|k| ident(&k.name)).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
                    t.quoted(),
                    cols.join(", "),
                    (1..=args.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
                    conflict.join(", "),
                );
                let inserted = self.conn.prepare_cached(&sql)?.execute(params_from_iter(args.iter().map(|v| Bind(v))))?;
                if inserted == 0 {
                    // The key exists though its clock said otherwise (the row was written
                    // while tracking was off): overwrite it as the new life says.
                    let write = RowWrite::Update { values: values.clone(), reset_others: true };
                    return self.write_row(info, pk, &write);
                }
            }
            RowWrite::Update { values, reset_others } => {
                let mut sets = Vec::new();
                let mut args: Vec<&Value> = Vec::new();
                for (c, v) in values {
                    if let Some(col) = t.column(*c) {
                        args.push(v);
                        sets.push(format!("{} = ?{}", ident(&col.name), args.len()));
                    }
                }
                if *reset_others {
                    for col in &t.columns {
                        if !values.iter().any(|(c, _)| *c == col.id) {
                            sets.push(format!("{} = ({})", ident(&col.name), default_of(t, col.id)));
                        }
                    }
                }
                if sets.is_empty() {
                    return Ok(());
                }
                let first_key = args.len() + 1;
                args.extend(key.iter());
                let sql = format!("UPDATE {} SET {} WHERE {}", t.quoted(), sets.join(", "), pk_where(t, first_key));
                self.conn.prepare_cached(&sql)?.execute(params_from_iter(args.iter().map(|v| Bind(v))))?;
            }
        }
        Ok(())
    }

    fn save_clock(&mut self, info: &TableInfo, pk: &[u8], clock: &RowClock) -> Result<()> {
        let t = self.table_of(info)?;
        let mut args = key_of(t, pk)?;
        let keys = t.meta_keys();
        let max = clock.max_stamp();
        args.push(Value::Integer(i64_of(clock.cl)?));
        args.push(Value::Integer(i64_of(max.db_version)?));
        args.push(Value::Integer(i64_of(max.seq)?));
        args.push(Value::Blob(clock.encode()));
        let sql = format!(
            "INSERT INTO {meta} ({k}, cl, dbv, seq, clock) VALUES ({p}) ON CONFLICT ({k}) DO UPDATE SET \
             cl = excluded.cl, dbv = excluded.dbv, seq = excluded.seq, clock = excluded.clock",
            meta = t.meta(),
            k = keys.join(", "),
            p = (1..=args.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
        );
        self.conn.prepare_cached(&sql)?.execute(params_from_iter(args.iter().map(Bind)))?;
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
