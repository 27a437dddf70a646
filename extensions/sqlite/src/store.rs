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

/// A synced table with the SQL of its per-row statements, built once per apply.
struct Prepared {
    table: SyncTable,
    clock_select: String,
    clock_upsert: String,
    delete: String,
    /// Statements that depend on a set of columns, keyed by column ids, then kind.
    by_columns: HashMap<Vec<ColId>, [Option<String>; 4]>,
}

const CREATE: u8 = 0;
const UPDATE: u8 = 1;
const UPDATE_RESET: u8 = 2;
const SELECT: u8 = 3;

impl Prepared {
    fn new(table: SyncTable) -> Self {
        let keys = table.meta_keys();
        let cond = keys.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ");
        let clock_select = format!("SELECT cl, dbv, seq, clock FROM {} WHERE {cond}", table.meta());
        let clock_upsert = format!(
            "INSERT INTO {meta} ({k}, cl, dbv, seq, clock) VALUES ({p}) ON CONFLICT ({k}) DO UPDATE SET \
             cl = excluded.cl, dbv = excluded.dbv, seq = excluded.seq, clock = excluded.clock",
            meta = table.meta(),
            k = keys.join(", "),
            p = (1..=keys.len() + 4).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
        );
        let delete = format!("DELETE FROM {} WHERE {}", table.quoted(), pk_where(&table, 1));
        Prepared { table, clock_select, clock_upsert, delete, by_columns: HashMap::new() }
    }

    /// The SQL of a column-set-dependent statement; `cols` are live column ids.
    fn sql(&mut self, kind: u8, cols: &[ColId]) -> &str {
        if !self.by_columns.get(cols).is_some_and(|k| k[usize::from(kind)].is_some()) {
            let sql = self.build(kind, cols);
            self.by_columns.entry(cols.to_vec()).or_default()[usize::from(kind)] = Some(sql);
        }
        self.by_columns.get(cols).and_then(|k| k[usize::from(kind)].as_deref()).unwrap_or_default()
    }

    fn build(&self, kind: u8, cols: &[ColId]) -> String {
        let t = &self.table;
        {
            let names: Vec<String> = cols.iter().filter_map(|c| t.column(*c)).map(|c| ident(&c.name)).collect();
            match kind {
                CREATE => {
                    let mut all: Vec<String> = t.pk.iter().map(|k| ident(&k.name)).collect();
                    let conflict = all.join(", ");
                    all.extend(names);
                    format!(
                        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({conflict}) DO NOTHING",
                        t.quoted(),
                        all.join(", "),
                        (1..=all.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
                    )
                }
                SELECT => format!(
                    "SELECT {} FROM {} WHERE {}",
                    if names.is_empty() { "NULL".to_string() } else { names.join(", ") },
                    t.quoted(),
                    pk_where(t, 1)
                ),
                _ => {
                    let mut sets: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{n} = ?{}", i + 1)).collect();
                    if kind == UPDATE_RESET {
                        for col in t.columns.iter().filter(|c| !cols.contains(&c.id)) {
                            sets.push(format!("{} = ({})", ident(&col.name), col.default_sql.as_deref().unwrap_or("NULL")));
                        }
                    }
                    format!("UPDATE {} SET {} WHERE {}", t.quoted(), sets.join(", "), pk_where(t, names.len() + 1))
                }
            }
        }
    }
}

/// A [`Store`] over one connection, for the duration of one apply.
pub struct SqliteStore<'c> {
    conn: &'c Connection,
    tables: HashMap<String, Prepared>,
    sites: HashMap<SiteOrd, SiteId>,
}

impl<'c> SqliteStore<'c> {
    /// A store over `conn`. The caller owns the transaction.
    pub fn new(conn: &'c Connection) -> Self {
        conn.set_prepared_statement_cache_capacity(64);
        SqliteStore { conn, tables: HashMap::new(), sites: HashMap::new() }
    }

    fn prepared(&mut self, info: &TableInfo) -> Result<&mut Prepared> {
        self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))
    }

    /// Names of the tables this store touched.
    pub fn touched(&self) -> impl Iterator<Item = &SyncTable> {
        self.tables.values().map(|p| &p.table)
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
                    self.tables.insert(name.to_string(), Prepared::new(t));
                }
                None => return Ok(None),
            }
        }
        Ok(self.tables.get(name).map(|p| p.table.info()))
    }

    fn clock(&mut self, info: &TableInfo, pk: &[u8]) -> Result<Option<RowClock>> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        let key = key_of(&p.table, pk)?;
        let row: Option<(i64, i64, i64, Vec<u8>)> = conn
            .prepare_cached(&p.clock_select)?
            .query_row(params_from_iter(key.iter().map(Bind)), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        row.map(|(cl, dbv, seq, blob)| {
            let at = Cursor::new(u64_of(dbv, "db_version")?, u64_of(seq, "seq")?);
            Ok(RowClock::decode(u64_of(cl, "causal length")?, at, &blob)?)
        })
        .transpose()
    }

    fn values(&mut self, info: &TableInfo, pk: &[u8], cols: &[ColId]) -> Result<Vec<Value>> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        let key = key_of(&p.table, pk)?;
        // Columns unknown here (dropped) read as NULL.
        let live: Vec<ColId> = cols.iter().copied().filter(|c| p.table.column(*c).is_some()).collect();
        let sql = p.sql(SELECT, &live);
        let found = conn
            .prepare_cached(sql)?
            .query_row(params_from_iter(key.iter().map(Bind)), |r| {
                (0..live.len()).map(|i| r.get_ref(i).map(value_of)).collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?;
        Ok(cols
            .iter()
            .map(|c| {
                let i = live.iter().position(|l| l == c);
                match (&found, i) {
                    (Some(vals), Some(i)) => vals[i].clone(),
                    _ => Value::Null,
                }
            })
            .collect())
    }

    fn write_row(&mut self, info: &TableInfo, pk: &[u8], write: &RowWrite<'_>) -> Result<()> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        let key = key_of(&p.table, pk)?;
        fn live<'v>(t: &SyncTable, values: &[(ColId, &'v Value)]) -> (Vec<ColId>, Vec<&'v Value>) {
            values.iter().filter(|(c, _)| t.column(*c).is_some()).map(|(c, v)| (*c, *v)).unzip()
        }
        match write {
            RowWrite::None => {}
            RowWrite::Delete => {
                conn.prepare_cached(&p.delete)?.execute(params_from_iter(key.iter().map(Bind)))?;
            }
            RowWrite::Create(values) => {
                let (cols, vals) = live(&p.table, values);
                let sql = p.sql(CREATE, &cols);
                let args = key.iter().chain(vals.iter().copied());
                let inserted = conn.prepare_cached(sql)?.execute(params_from_iter(args.map(Bind)))?;
                if inserted == 0 {
                    // The key exists though its clock said otherwise (the row was written
                    // while tracking was off): overwrite it as the new life says.
                    let write = RowWrite::Update { values: values.clone(), reset_others: true };
                    return self.write_row(info, pk, &write);
                }
            }
            RowWrite::Update { values, reset_others } => {
                let (cols, vals) = live(&p.table, values);
                if cols.is_empty() && !reset_others {
                    return Ok(());
                }
                let sql = p.sql(if *reset_others { UPDATE_RESET } else { UPDATE }, &cols);
                let args = vals.iter().copied().chain(key.iter());
                conn.prepare_cached(sql)?.execute(params_from_iter(args.map(Bind)))?;
            }
        }
        Ok(())
    }

    fn save_clock(&mut self, info: &TableInfo, pk: &[u8], clock: &RowClock) -> Result<()> {
        let conn = self.conn;
        let p = self.prepared(info)?;
        let mut args = key_of(&p.table, pk)?;
        let max = clock.max_stamp();
        args.push(Value::Integer(i64_of(clock.cl)?));
        args.push(Value::Integer(i64_of(max.db_version)?));
        args.push(Value::Integer(i64_of(max.seq)?));
        args.push(Value::Blob(clock.encode()));
        conn.prepare_cached(&p.clock_upsert)?.execute(params_from_iter(args.iter().map(Bind)))?;
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
