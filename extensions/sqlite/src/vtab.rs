//! `cloudsync_changes`: the change feed as an eponymous virtual table.
//!
//! Reading it lists every change after the position given by the `db_version`
//! constraint (all changes without one), ordered by position; `site_id = x` and
//! `site_id != x` select by writer; `tbl = x` selects one table. Inserting a row merges
//! that change. Reading first folds pending local writes, so it needs a writable
//! connection.
#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::sync::Arc;

use cloudsync_core::feed::Checkpoint;
use cloudsync_core::{Algo, Change, Changeset, Cursor, SiteId, Value};
use rusqlite::types::ValueRef;
use rusqlite::vtab::{
    Context, CreateVTab, Filters, IndexConstraintOp, IndexInfo, Inserts, UpdateVTab, Updates, VTab, VTabConnection,
    VTabCursor, VTabKind,
};
use rusqlite::Connection;

use crate::changes::{FeedQuery, FeedReader, SiteFilter};
use crate::meta::table::SyncTable;
use crate::sql::{i64_of, value_of};
use crate::state::ConnState;
use crate::{apply, error, ffi, fold, Error, Result};

/// Column positions.
const COL_TBL: c_int = 0;
const COL_DBV: c_int = 5;
const COL_SITE: c_int = 6;

/// Bits of `idx_num`, in the order their arguments are passed.
const DBV_GT: c_int = 1;
const DBV_GE: c_int = 2;
const DBV_EQ: c_int = 4;
const DBV_LE: c_int = 8;
const DBV_LT: c_int = 16;
const SITE_EQ: c_int = 32;
const SITE_NE: c_int = 64;
const TBL_EQ: c_int = 128;

/// The virtual table.
#[repr(C)]
pub struct ChangesTab {
    base: rusqlite::vtab::sqlite3_vtab,
    conn: Connection,
    state: Arc<ConnState>,
}

// SAFETY: `ChangesTab` is `#[repr(C)]` with `sqlite3_vtab` first, as rusqlite requires.
unsafe impl<'vtab> VTab<'vtab> for ChangesTab {
    type Aux = Arc<ConnState>;
    type Cursor = ChangesCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&Arc<ConnState>>,
        _args: &[&[u8]],
    ) -> rusqlite::Result<(String, Self)> {
        let conn = ffi::vtab_conn(db).map_err(error::to_sql)?;
        let schema = "CREATE TABLE x(tbl TEXT, pk BLOB, col_name TEXT, col_value ANY, col_version INTEGER, \
                      db_version INTEGER, site_id BLOB, cl INTEGER, seq INTEGER)";
        let state = aux.cloned().unwrap_or_default();
        Ok((schema.to_string(), ChangesTab { base: Default::default(), conn, state }))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        let mut chosen: Vec<(c_int, usize)> = Vec::new();
        for (i, c) in info.constraints().enumerate() {
            if !c.is_usable() {
                continue;
            }
            let bit = match (c.column(), c.operator()) {
                (COL_DBV, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GT) => DBV_GT,
                (COL_DBV, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GE) => DBV_GE,
                (COL_DBV, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ) => DBV_EQ,
                (COL_DBV, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LE) => DBV_LE,
                (COL_DBV, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LT) => DBV_LT,
                (COL_SITE, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ) => SITE_EQ,
                (COL_SITE, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_NE) => SITE_NE,
                (COL_TBL, IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ) => TBL_EQ,
                _ => continue,
            };
            if chosen.iter().all(|(b, _)| *b != bit) {
                chosen.push((bit, i));
            }
        }
        chosen.sort();
        let mut idx_num = 0;
        for (argv, (bit, i)) in chosen.iter().enumerate() {
            idx_num |= bit;
            let mut usage = info.constraint_usage(*i);
            usage.set_argv_index(c_int::try_from(argv + 1).unwrap_or(c_int::MAX));
            // SQLite re-checks every constraint, so a value of an unexpected type
            // filters exactly as SQL says even where our pushdown is coarser.
            usage.set_omit(false);
        }
        info.set_idx_num(idx_num);
        let by_position = info.order_bys().all(|o| (o.column() == COL_DBV || o.column() == 8) && !o.is_order_by_desc());
        if info.num_of_order_by() > 0 && by_position && info.order_bys().next().is_some_and(|o| o.column() == COL_DBV) {
            info.set_order_by_consumed(true);
        }
        let cost = if idx_num & (DBV_GT | DBV_GE | DBV_EQ) != 0 { 100.0 } else { 1_000_000.0 };
        info.set_estimated_cost(cost);
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<ChangesCursor<'vtab>> {
        Ok(ChangesCursor { base: Default::default(), tab: self, reader: None, row: None, rowid: 0 })
    }
}

impl CreateVTab<'_> for ChangesTab {
    const KIND: VTabKind = VTabKind::EponymousOnly;
}

impl UpdateVTab<'_> for ChangesTab {
    fn delete(&mut self, _arg: ValueRef<'_>) -> rusqlite::Result<()> {
        Err(error::to_sql(Error::arg("cloudsync_changes", "DELETE is not supported: the change feed is append-only")))
    }

    fn insert(&mut self, args: &Inserts<'_>) -> rusqlite::Result<i64> {
        let change = change_from_args(args).map_err(error::to_sql)?;
        let conn = &self.conn;
        let state = &self.state;
        let run = || -> Result<i64> {
            let (algo, fingerprint) = match SyncTable::load(conn, &change.table)? {
                Some(t) => (t.algo, t.fingerprint),
                None => (Algo::Cls, 0),
            };
            let mut cs = Changeset::default();
            cs.push(change, |_| (algo, fingerprint)).map_err(|e| Error::Apply(e.to_string()))?;
            let report = apply::apply(conn, state, &cs)?;
            i64::try_from(report.applied).map_err(|_| Error::Apply("count overflow".into()))
        };
        crate::meta::cache::scope(&state.cache, conn, run).map_err(error::to_sql)?;
        Ok(0)
    }

    fn update(&mut self, _args: &Updates<'_>) -> rusqlite::Result<()> {
        Err(error::to_sql(Error::arg("cloudsync_changes", "UPDATE is not supported: insert a change to merge it")))
    }
}

fn change_from_args(args: &Inserts<'_>) -> Result<Change> {
    // args[0] is the old rowid (NULL), args[1] the new rowid; columns follow.
    let col = |i: usize| args.get::<rusqlite::types::Value>(i + 2).map_err(Error::from);
    let bad = |what: &str| Error::arg("cloudsync_changes", format!("invalid {what}"));
    let text = |i: usize, what: &str| -> Result<Option<String>> {
        match col(i)? {
            rusqlite::types::Value::Null => Ok(None),
            rusqlite::types::Value::Text(s) => Ok(Some(s)),
            _ => Err(bad(what)),
        }
    };
    let int = |i: usize, what: &str| -> Result<u64> {
        match col(i)? {
            rusqlite::types::Value::Integer(v) if v >= 0 => Ok(v.cast_unsigned()),
            _ => Err(bad(what)),
        }
    };
    let table = text(0, "tbl (text expected)")?.ok_or_else(|| bad("tbl (NULL)"))?;
    let pk = match col(1)? {
        rusqlite::types::Value::Blob(b) => b,
        _ => return Err(bad("pk (blob expected)")),
    };
    let column = text(2, "col_name (text or NULL expected)")?;
    let value = args.iter().nth(5).map_or(Value::Null, value_of);
    let site = match col(6)? {
        rusqlite::types::Value::Blob(b) => SiteId::from_slice(&b)?,
        _ => return Err(bad("site_id (16-byte blob expected)")),
    };
    Ok(Change {
        table,
        pk,
        column,
        value,
        col_version: int(4, "col_version")?,
        at: Cursor::new(int(5, "db_version")?, int(8, "seq")?),
        site,
        cl: int(7, "cl")?,
    })
}

/// A scan of the feed.
#[repr(C)]
pub struct ChangesCursor<'vtab> {
    base: rusqlite::vtab::sqlite3_vtab_cursor,
    tab: &'vtab ChangesTab,
    reader: Option<FeedReader>,
    row: Option<Change>,
    rowid: i64,
}

impl ChangesCursor<'_> {
    fn advance(&mut self) -> Result<()> {
        self.row = match self.reader.as_mut() {
            Some(r) => r.next(&self.tab.conn)?,
            None => None,
        };
        self.rowid += 1;
        Ok(())
    }

    fn start(&mut self, idx_num: c_int, args: &Filters<'_>) -> Result<()> {
        let mut query = FeedQuery::default();
        let mut next = 0usize;
        let mut arg = || -> Result<rusqlite::types::Value> {
            let v = args.get::<rusqlite::types::Value>(next)?;
            next += 1;
            Ok(v)
        };
        let as_int = |v: rusqlite::types::Value| -> Option<i64> {
            match v {
                rusqlite::types::Value::Integer(i) => Some(i),
                rusqlite::types::Value::Real(f) => Some(floor_to_i64(f)),
                _ => None,
            }
        };
        let mut lower: i64 = -1; // changes with db_version > lower
        let mut upper: Option<i64> = None; // ... and <= upper
        if idx_num & DBV_GT != 0 {
            lower = lower.max(as_int(arg()?).unwrap_or(i64::MAX));
        }
        if idx_num & DBV_GE != 0 {
            lower = lower.max(as_int(arg()?).map_or(i64::MAX, |v| v.saturating_sub(1)));
        }
        if idx_num & DBV_EQ != 0 {
            let v = as_int(arg()?).unwrap_or(-1);
            lower = lower.max(v.saturating_sub(1));
            upper = Some(upper.map_or(v, |u| u.min(v)));
        }
        if idx_num & DBV_LE != 0 {
            let v = as_int(arg()?).unwrap_or(-1);
            upper = Some(upper.map_or(v, |u| u.min(v)));
        }
        if idx_num & DBV_LT != 0 {
            let v = as_int(arg()?).map_or(-1, |v| v.saturating_sub(1));
            upper = Some(upper.map_or(v, |u| u.min(v)));
        }
        let site_arg = |v: rusqlite::types::Value| match v {
            rusqlite::types::Value::Blob(b) => SiteId::from_slice(&b).ok(),
            _ => None,
        };
        let mut empty = false;
        if idx_num & SITE_EQ != 0 {
            match site_arg(arg()?) {
                Some(s) => query.sites = SiteFilter::Only(s),
                None => empty = true,
            }
        }
        if idx_num & SITE_NE != 0 {
            if let Some(s) = site_arg(arg()?) {
                query.sites = SiteFilter::Except(s);
            }
        }
        if idx_num & TBL_EQ != 0 {
            match arg()? {
                rusqlite::types::Value::Text(t) => query.table = Some(t),
                _ => empty = true,
            }
        }
        if upper.is_some_and(|u| u < 0) || lower == i64::MAX {
            empty = true;
        }
        // `db_version > lower`: everything up to (lower, max seq) has been seen.
        query.from =
            Checkpoint::complete(if lower < 0 { Cursor::ZERO } else { Cursor::through(lower.cast_unsigned()) });
        query.until = upper.map(i64::cast_unsigned);
        fold::fold_all(&self.tab.conn)?;
        self.reader = if empty { None } else { Some(FeedReader::new(&self.tab.conn, query)?) };
        self.rowid = 0;
        self.advance()
    }
}

// SAFETY: `ChangesCursor` is `#[repr(C)]` with `sqlite3_vtab_cursor` first, as rusqlite
// requires.
unsafe impl VTabCursor for ChangesCursor<'_> {
    fn filter(&mut self, idx_num: c_int, _idx_str: Option<&str>, args: &Filters<'_>) -> rusqlite::Result<()> {
        let state = Arc::clone(&self.tab.state);
        crate::meta::cache::scope(&state.cache, &self.tab.conn, || self.start(idx_num, args)).map_err(error::to_sql)
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.advance().map_err(error::to_sql)
    }

    fn eof(&self) -> bool {
        self.row.is_none()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let Some(c) = &self.row else { return ctx.set_result(&rusqlite::types::Null) };
        let int = |v: u64| i64_of(v).map_err(error::to_sql);
        match i {
            0 => ctx.set_result(&c.table),
            1 => ctx.set_result(&c.pk),
            2 => ctx.set_result(&c.column),
            3 => ctx.set_result(&crate::sql::Bind(&c.value)),
            4 => ctx.set_result(&int(c.col_version)?),
            5 => ctx.set_result(&int(c.at.db_version)?),
            6 => ctx.set_result(&c.site.as_bytes().as_slice()),
            7 => ctx.set_result(&int(c.cl)?),
            8 => ctx.set_result(&int(c.at.seq)?),
            _ => ctx.set_result(&rusqlite::types::Null),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.rowid)
    }
}

/// Registers the module on `conn`.
pub fn register(conn: &Connection, state: Arc<ConnState>) -> Result<()> {
    conn.create_module("cloudsync_changes", rusqlite::vtab::update_module::<ChangesTab>(), Some(state))?;
    Ok(())
}

/// `floor(f)` as an integer, saturating (NaN becomes 0), for comparisons with reals.
#[allow(clippy::cast_possible_truncation)]
fn floor_to_i64(f: f64) -> i64 {
    // `as` saturates on overflow and maps NaN to 0, which is what a bound needs.
    f.floor() as i64
}
