//! Reading the change feed: every change recorded after a position, in feed order.
//!
//! Rows are read a page at a time from each table's clock table (index on
//! `(dbv, seq)`), joined with the user table for the values, and merged across tables
//! by the core's [`Merge`], so that the whole feed comes out ordered by each row's
//! latest position, up to a horizon. A reader can therefore stop anywhere and resume
//! from [`FeedReader::checkpoint`].

use std::collections::VecDeque;

use cloudsync_core::engine::row_changes;
use cloudsync_core::feed::{Checkpoint, Merge, Pages, PAGE_ROWS};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Change, ColId, Cursor, SiteId, Value};
use rusqlite::Connection;

use crate::meta::table::SyncTable;
use crate::sql::{i64_of, ident, u64_of, value_of};
use crate::{meta, Result};

/// Which sites' changes to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SiteFilter {
    /// Every site.
    #[default]
    All,
    /// Only changes written by this site.
    Only(SiteId),
    /// Every site except this one (what a peer needs: not its own changes).
    Except(SiteId),
}

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct FeedQuery {
    /// Where the reader is: rows positioned after `from.after`, each with its changes
    /// newer than `from.base` (`cloudsync_core::feed`).
    pub from: Checkpoint,
    /// Stop after this db_version (inclusive).
    pub until: Option<u64>,
    /// Site filter.
    pub sites: SiteFilter,
    /// Only this table.
    pub table: Option<String>,
    /// Read policies (table name → SQL expression over the row's columns): a live
    /// row of such a table is read only when its expression is true, and then whole
    /// (every column's latest change, not just those after `after`), so a row that
    /// becomes visible through a change of some of its columns arrives complete.
    /// Deletions are read for every reader (the key only). The central service's row
    /// policies (`docs/rls.md`); validated by the caller.
    pub visible: Vec<(String, String)>,
}

struct TableFeed {
    table: SyncTable,
    sql: String,
    /// Whether the page query has a visibility column (a read policy).
    policed: bool,
}

/// A streaming reader of the feed: the core's [`Merge`] over one page query per table,
/// bounded by the `db_version` stored when the reader was made (the horizon; see
/// `cloudsync_core::feed` for why that makes its cursor safe whatever snapshots the
/// pages are read in). Callers that want the values of one moment read in one
/// transaction ([`crate::payload::encode_chunk`] does).
pub struct FeedReader {
    query: FeedQuery,
    feeds: Vec<TableFeed>,
    merge: Merge<Vec<Change>>,
    current: VecDeque<Change>,
    /// Position of the row whose changes are being handed out.
    position: Cursor,
    /// Position of the row before it (the last row handed out completely).
    previous: Cursor,
    /// Every row up to the horizon was read.
    exhausted: bool,
}

impl FeedReader {
    /// Prepares a reader. The caller must have folded pending local writes.
    pub fn new(conn: &Connection, query: FeedQuery) -> Result<FeedReader> {
        let mut feeds = Vec::new();
        for name in SyncTable::names(conn)? {
            if query.table.as_ref().is_some_and(|t| !t.eq_ignore_ascii_case(&name)) {
                continue;
            }
            let Some(table) = SyncTable::load(conn, &name)? else { continue };
            let policy = query.visible.iter().find(|(t, _)| t.eq_ignore_ascii_case(&name)).map(|(_, e)| e.as_str());
            let sql = page_sql(&table, policy);
            feeds.push(TableFeed { table, sql, policed: policy.is_some() });
        }
        let horizon = meta::db_version(conn)?.min(query.until.unwrap_or(u64::MAX));
        let merge = Merge::new(feeds.len(), query.from, horizon, PAGE_ROWS);
        let position = query.from.after;
        Ok(FeedReader { query, feeds, merge, current: VecDeque::new(), position, previous: position, exhausted: false })
    }

    /// Where to resume after the changes handed out so far, once
    /// [`FeedReader::at_row_boundary`] holds: partway through the pass, or, once
    /// [`FeedReader::next`] returned `None`, through the horizon.
    pub fn checkpoint(&self, conn: &Connection) -> Result<Checkpoint> {
        if self.exhausted {
            self.merge.end(&mut self.pages(conn))
        } else {
            Ok(self.merge.stopped_at(self.position))
        }
    }

    /// Where to resume after a reader stopped having just started a row (it peeked at
    /// the next row to learn whether more follows): after the row before it.
    pub fn checkpoint_before_current(&self) -> Checkpoint {
        self.merge.stopped_at(self.previous)
    }

    fn pages<'a>(&'a self, conn: &'a Connection) -> TablePages<'a> {
        TablePages { conn, feeds: &self.feeds, since: self.merge.since() }
    }

    /// The next change, or `None` at the end of the feed.
    pub fn next(&mut self, conn: &Connection) -> Result<Option<Change>> {
        loop {
            if let Some(c) = self.current.pop_front() {
                return Ok(Some(c));
            }
            let mut pages = TablePages { conn, feeds: &self.feeds, since: self.merge.since() };
            let Some((at, changes)) = self.merge.next(&mut pages)? else {
                self.exhausted = true;
                return Ok(None);
            };
            self.previous = self.position;
            self.position = at;
            self.current = changes.into_iter().filter(|c| self.keep(c)).collect();
        }
    }

    /// Whether the current row's changes have all been handed out.
    pub fn at_row_boundary(&self) -> bool {
        self.current.is_empty()
    }

    fn keep(&self, c: &Change) -> bool {
        match self.query.sites {
            SiteFilter::All => true,
            SiteFilter::Only(s) => c.site == s,
            SiteFilter::Except(s) => c.site != s,
        }
    }
}

/// The page queries of one reader, on one connection.
struct TablePages<'a> {
    conn: &'a Connection,
    feeds: &'a [TableFeed],
    /// Changes newer than this are sent (whole rows when a read policy applies).
    since: Cursor,
}

impl Pages for TablePages<'_> {
    type Row = Vec<Change>;
    type Error = crate::Error;

    fn beyond(&mut self, i: usize, horizon: u64) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE dbv > ?1)", self.feeds[i].table.meta());
        let h = i64::try_from(horizon).unwrap_or(i64::MAX);
        Ok(self.conn.prepare_cached(&sql)?.query_row([h], |r| r.get(0))?)
    }

    fn page(&mut self, i: usize, from: Cursor, horizon: u64, limit: usize) -> Result<Vec<(Cursor, Vec<Change>)>> {
        let conn = self.conn;
        let feed = &self.feeds[i];
        let info = feed.table.info();
        let nk = feed.table.pk.len();
        let cols: Vec<ColId> = feed.table.columns.iter().map(|c| c.id).collect();
        let mut stmt = conn.prepare_cached(&feed.sql)?;
        let mut rows = stmt.query(rusqlite::params![
            i64_of(from.db_version)?,
            i64::try_from(from.seq).unwrap_or(i64::MAX),
            i64::try_from(horizon).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])?;
        let mut out = Vec::new();
        let mut site_cache: Vec<(u32, SiteId)> = Vec::new();
        while let Some(r) = rows.next()? {
            let key: Vec<Value> = (0..nk).map(|k| r.get_ref(k).map(value_of)).collect::<rusqlite::Result<_>>()?;
            let cl = u64_of(r.get(nk)?, "causal length")?;
            let at = Cursor::new(u64_of(r.get(nk + 1)?, "db_version")?, u64_of(r.get(nk + 2)?, "seq")?);
            let blob: Vec<u8> = r.get(nk + 3)?;
            let clock = crate::sql::stored_clock(cl, at, &blob)?;
            let values: Vec<Value> =
                (0..cols.len()).map(|c| r.get_ref(nk + 4 + c).map(value_of)).collect::<rusqlite::Result<_>>()?;
            let since = if !feed.policed || !clock.is_alive() {
                self.since
            } else if r.get::<_, Option<bool>>(nk + 4 + cols.len())?.unwrap_or(false) {
                Cursor::ZERO
            } else {
                // Not visible to this reader: skipped (the position still moves on).
                out.push((at, Vec::new()));
                continue;
            };
            let pk = encode_key(&key);
            let changes = row_changes(
                &info,
                &pk,
                &clock,
                since,
                |ord| match site_cache.iter().find(|(o, _)| *o == ord) {
                    Some((_, s)) => Ok(*s),
                    None => {
                        let s = meta::site_id(conn, ord)?;
                        site_cache.push((ord, s));
                        Ok(s)
                    }
                },
                |ids| {
                    Ok::<_, crate::Error>(
                        ids.iter()
                            .map(|id| cols.iter().position(|c| c == id).map_or(Value::Null, |p| values[p].clone()))
                            .collect(),
                    )
                },
            )?;
            out.push((at, changes));
        }
        Ok(out)
    }
}

fn page_sql(t: &SyncTable, policy: Option<&str>) -> String {
    let keys = t.meta_keys();
    let join =
        t.pk.iter()
            .zip(&keys)
            .map(|(k, mk)| format!("u.{} = m.{mk}", ident(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
    let mut select: Vec<String> = keys.iter().map(|k| format!("m.{k}")).collect();
    select.extend(["m.cl".into(), "m.dbv".into(), "m.seq".into(), "m.clock".into()]);
    select.extend(t.columns.iter().map(|c| format!("u.{}", ident(&c.name))));
    if let Some(expr) = policy {
        // In a subquery of its own over the table under its own name (as the policy was
        // checked), so the expression's names are the row's columns.
        let table = t.quoted();
        let key =
            t.pk.iter().zip(&keys).map(|(k, mk)| format!("{table}.{} = m.{mk}", ident(&k.name))).collect::<Vec<_>>();
        select.push(format!("EXISTS (SELECT 1 FROM {table} WHERE {} AND ({expr}))", key.join(" AND ")));
    }
    format!(
        "SELECT {} FROM {} m LEFT JOIN {} u ON {join} WHERE (m.dbv, m.seq) > (?1, ?2) AND m.dbv <= ?3 \
         ORDER BY m.dbv, m.seq LIMIT ?4",
        select.join(", "),
        t.meta(),
        t.quoted(),
    )
}
