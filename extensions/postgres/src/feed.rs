//! Reading the change feed, and encoding payloads from it.
//!
//! Each table's clocks are read in `(dbv, seq)` order (indexed), joined with the user
//! table for the values, turned into changes by the core's [`row_changes`], and the
//! tables are merged so that the whole feed comes out ordered by each row's latest
//! position.

use std::cell::RefCell;
use std::collections::HashMap;

use cloudsync_core::engine::row_changes;
use cloudsync_core::feed::{Checkpoint, Merge, Pages, PAGE_ROWS};
use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Algo, Change, Cursor, SiteId, Value};
use pgrx::spi::SpiClient;

use crate::batch::clock_at;
use crate::error::{Error, Result};
use crate::role::RoleSwitch;
use crate::sql::{i64_of, ident, query, read_value};
use crate::table::SyncTable;
use crate::{fold, meta};

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct FeedQuery {
    /// Changes strictly after this position.
    pub after: Cursor,
    /// Leave out changes written by this site (what a peer needs: not its own).
    pub except: Option<SiteId>,
    /// Only rows this role can see (privileges and row-level security, with the
    /// transaction's settings such as `request.jwt.claims`), each sent whole; see
    /// [`read`].
    pub visible_to: Option<String>,
}

/// The horizon of a read (`cloudsync_core::feed`, rule 2): the `db_version` stored
/// once the `db_version` lock is held shared. Every version at or below it is
/// committed, because versions are only taken under that lock held exclusively until
/// the taking transaction ends (and PostgreSQL releases locks only after the commit is
/// visible).
///
/// Holding the lock shared until the reading transaction ends also gives rule 1 (one
/// state per read): no fold or merge can move a clock while the read runs, whatever
/// snapshot each of its statements takes (pgrx runs them in fresh snapshots as soon as
/// the transaction has an id, which an impersonated read can get). Merges wait for
/// reads in progress; reads wait for a merge in progress.
pub fn horizon(c: &SpiClient<'_>) -> Result<u64> {
    meta::lock_shared(c)?;
    meta::db_version(c)
}

/// Every change after `q.after` up to `horizon` (a `db_version`, see [`horizon`]), in
/// feed order, with the position of each row. The caller has folded pending local
/// writes.
///
/// With `q.visible_to`, a live row is sent only if that role can see it, and then
/// whole (every column's latest change, not only those after `q.after`): a row that
/// became visible to the role by a change of some of its columns (its owner, say)
/// reaches the reader complete. Deletions are sent to every reader (the key only): a
/// deleted row has nothing left to check a policy against.
pub fn read(c: &mut SpiClient<'_>, q: &FeedQuery, horizon: u64) -> Result<Vec<(Cursor, Change)>> {
    let mut role = RoleSwitch::new(c, q.visible_to.as_deref())?;
    let mut rows: Vec<(Cursor, Vec<Change>)> = Vec::new();
    let mut sites: HashMap<u32, SiteId> = HashMap::new();
    for t in readable(c, SyncTable::all(c)?, q.visible_to.as_deref())? {
        rows.extend(table_rows(c, &t, &mut role, q.after, horizon, None, q.after, &mut sites)?);
    }
    // Stable: rows of one table keep their order; tables interleave by position.
    rows.sort_by_key(|(at, _)| *at);
    Ok(rows
        .into_iter()
        .flat_map(|(at, changes)| changes.into_iter().map(move |ch| (at, ch)))
        .filter(|(_, ch)| q.except.is_none_or(|s| ch.site != s))
        .collect())
}

/// The synced tables `role` may read (all of them without a role): a table it has no
/// `SELECT` privilege on is left out of its feed whole — deletions included, which
/// would name its keys — rather than failing the read. The service tells the device
/// which (`unreadable`); a later `GRANT` changes the database's visibility fingerprint,
/// which starts the device's feed over.
fn readable(c: &SpiClient<'_>, tables: Vec<SyncTable>, role: Option<&str>) -> Result<Vec<SyncTable>> {
    let Some(role) = role else { return Ok(tables) };
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        if may_select(c, &t, role)? {
            out.push(t);
        }
    }
    Ok(out)
}

fn may_select(c: &SpiClient<'_>, t: &SyncTable, role: &str) -> Result<bool> {
    let yes = crate::sql::query_opt(
        c,
        "SELECT pg_catalog.has_table_privilege($1::name, $2::oid, 'SELECT')",
        &[role.into(), t.relid.into()],
        |r| Ok(r.get::<bool>(1)?.unwrap_or(false)),
    )?;
    Ok(yes.unwrap_or(false))
}

/// The synced tables `role` may not read ([`readable`] leaves them out), by name.
pub fn unreadable(c: &SpiClient<'_>, role: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in SyncTable::all(c)? {
        if !may_select(c, &t, role)? {
            out.push(t.name);
        }
    }
    Ok(out)
}

/// The rows of table `t` positioned after `after` and at a `db_version` at or below
/// `horizon`, in position order (at most `limit`), each with its changes newer than
/// `since`, or whole when `role` targets a role that can see it; a live row that role
/// cannot see comes with no changes (its position still counts, so a page of them is
/// not taken for the table's end).
#[allow(clippy::too_many_arguments)]
fn table_rows(
    c: &mut SpiClient<'_>,
    t: &SyncTable,
    role: &mut RoleSwitch,
    after: Cursor,
    horizon: u64,
    limit: Option<usize>,
    since: Cursor,
    sites: &mut HashMap<u32, SiteId>,
) -> Result<Vec<(Cursor, Vec<Change>)>> {
    let info = t.info();
    let keys = t.meta_keys();
    let key_reads: Vec<_> = t.pk.iter().zip(&keys).map(|(k, mk)| k.kind.read_expr(&format!("m.{mk}"))).collect();
    let col_reads: Vec<_> =
        t.columns.iter().map(|sc| sc.col.kind.read_expr(&format!("u.{}", ident(&sc.col.name)))).collect();
    let join =
        t.pk.iter()
            .zip(&keys)
            .map(|(k, mk)| format!("u.{} = m.{mk}", ident(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
    let mut select: Vec<String> = key_reads.iter().map(|(e, _)| e.clone()).collect();
    select.extend(["m.cl".into(), "m.dbv".into(), "m.seq".into(), "m.clock".into()]);
    select.extend(col_reads.iter().map(|(e, _)| e.clone()));
    let sql = format!(
        "SELECT {} FROM {} m LEFT JOIN {} u ON {join} WHERE (m.dbv, m.seq) > ($1, $2) AND m.dbv <= $3 \
         ORDER BY m.dbv, m.seq{}",
        select.join(", "),
        t.clock(),
        t.rel,
        limit.map_or_else(String::new, |n| format!(" LIMIT {n}")),
    );
    let nk = keys.len();
    let fetched = query(
        &*c,
        &sql,
        &[
            i64_of(after.db_version)?.into(),
            i64::try_from(after.seq).unwrap_or(i64::MAX).into(),
            i64::try_from(horizon).unwrap_or(i64::MAX).into(),
        ],
        |r| {
            let key: Vec<Value> =
                key_reads.iter().enumerate().map(|(i, (_, rd))| read_value(r, i + 1, *rd)).collect::<Result<_>>()?;
            let clock = clock_at(r, nk + 1)?.ok_or_else(|| Error::Corrupt("clock row without cl".into()))?;
            let values: Vec<Value> = col_reads
                .iter()
                .enumerate()
                .map(|(i, (_, rd))| read_value(r, nk + 5 + i, *rd))
                .collect::<Result<_>>()?;
            Ok((key, clock, values))
        },
    )?;
    let visible = match role.target() {
        None => None,
        Some(_) => {
            let alive: Vec<Vec<Value>> =
                fetched.iter().filter(|(_, clock, _)| clock.is_alive()).map(|(k, _, _)| k.clone()).collect();
            role.user(c)?;
            let seen = crate::batch::existing(c, t, &alive);
            role.caller(c)?;
            Some(seen?)
        }
    };
    let mut rows = Vec::with_capacity(fetched.len());
    for (key, clock, values) in fetched {
        let at = clock.max_stamp();
        let encoded = encode_key(&key);
        let since = match &visible {
            None => since,
            Some(_) if !clock.is_alive() => since,
            Some(seen) if seen.contains(&encoded) => Cursor::ZERO,
            Some(_) => {
                rows.push((at, Vec::new()));
                continue;
            }
        };
        let changes = row_changes(
            &info,
            &encoded,
            &clock,
            since,
            |ord| match sites.get(&ord) {
                Some(s) => Ok(*s),
                None => {
                    let s = meta::site_id(&*c, ord)?;
                    sites.insert(ord, s);
                    Ok::<_, Error>(s)
                }
            },
            |ids| {
                Ok(ids
                    .iter()
                    .map(|id| t.columns.iter().position(|sc| sc.id == *id).map_or(Value::Null, |p| values[p].clone()))
                    .collect())
            },
        )?;
        rows.push((at, changes));
    }
    Ok(rows)
}

/// The synced tables read page by page for a [`Merge`], in one state of the clocks
/// (the `db_version` lock is held shared for the whole transaction: [`horizon`]).
struct TablePages<'a, 'c> {
    c: &'a mut SpiClient<'c>,
    tables: Vec<SyncTable>,
    role: RoleSwitch,
    since: Cursor,
    sites: HashMap<u32, SiteId>,
}

impl Pages for TablePages<'_, '_> {
    type Row = Vec<Change>;
    type Error = Error;

    fn page(&mut self, table: usize, after: Cursor, horizon: u64, limit: usize) -> Result<Vec<(Cursor, Vec<Change>)>> {
        let t = &self.tables[table];
        table_rows(self.c, t, &mut self.role, after, horizon, Some(limit), self.since, &mut self.sites)
    }

    fn beyond(&mut self, table: usize, horizon: u64) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE dbv > $1)", self.tables[table].clock());
        let found = crate::sql::query_opt(&*self.c, &sql, &[i64::try_from(horizon).unwrap_or(i64::MAX).into()], |r| {
            Ok(r.get::<bool>(1)?.unwrap_or(false))
        })?;
        Ok(found.unwrap_or(false))
    }
}

/// A download chunk: folds pending local writes, then encodes the rows after `from`
/// (a checkpoint as `cloudsync_core::feed` defines it) up to the [`horizon`], page by
/// page, until the payload reaches about `max_bytes` at a row boundary. Returns the
/// payload (None when nothing is to be sent), its change count, where the next chunk
/// starts and whether more rows follow. Memory is one page per table and one chunk,
/// whatever the feed holds.
pub fn encode_chunk(
    c: &mut SpiClient<'_>,
    from: Checkpoint,
    except: Option<SiteId>,
    visible_to: Option<&str>,
    max_bytes: usize,
) -> Result<(Option<Vec<u8>>, u64, Checkpoint, bool)> {
    fold::fold_all(c)?;
    let horizon = horizon(c)?;
    let tables = readable(c, SyncTable::all(c)?, visible_to)?;
    let mut infos: HashMap<String, (Algo, u64)> =
        tables.iter().map(|t| (t.name.clone(), (t.algo, t.fingerprint))).collect();
    let mut encoder = PayloadEncoder::new(encode_options(c)?);
    let role = RoleSwitch::new(c, visible_to)?;
    let mut merge = Merge::new(tables.len(), from, horizon, PAGE_ROWS);
    let mut pages = TablePages { c, tables, role, since: merge.since(), sites: HashMap::new() };
    let mut last: Option<Cursor> = None;
    let mut more = false;
    while let Some((at, changes)) = merge.next(&mut pages)? {
        if last.is_some() && encoder.size_estimate() >= max_bytes {
            // This row starts the next chunk.
            more = true;
            break;
        }
        for change in changes.into_iter().filter(|ch| except.is_none_or(|s| ch.site != s)) {
            let info = *infos.entry(change.table.clone()).or_insert((Algo::Cls, 0));
            encoder.push(change, |_| info).map_err(|e| Error::Corrupt(e.to_string()))?;
        }
        last = Some(at);
    }
    let next = match (more, last) {
        (true, Some(at)) => merge.stopped_at(at),
        _ => merge.end(&mut pages)?,
    };
    let n = encoder.change_count();
    Ok(((!encoder.is_empty()).then(|| encoder.finish()), n, next, more))
}

/// Encoder settings from `cloudsync_set`.
pub fn encode_options(c: &SpiClient<'_>) -> Result<EncodeOptions> {
    use cloudsync_core::settings::{encode_options, COMPRESSION, FRAME_SIZE};
    let int = |key: &str| -> Result<Option<i64>> { Ok(meta::setting(c, key)?.and_then(|v| v.parse().ok())) };
    Ok(encode_options(int(FRAME_SIZE)?, int(COMPRESSION)?))
}

/// Folds pending local writes, then encodes every change after `q.after` up to the
/// [`horizon`] read first. Returns the payload (None when there is nothing to send),
/// its change count and the position to resume from: through the horizon, which
/// covers exactly the changes read.
pub fn encode(c: &mut SpiClient<'_>, q: &FeedQuery) -> Result<(Option<Vec<u8>>, u64, Cursor)> {
    fold::fold_all(c)?;
    let horizon = horizon(c)?;
    let changes = read(c, q, horizon)?;
    let mut encoder = PayloadEncoder::new(encode_options(c)?);
    let mut tables: HashMap<String, (Algo, u64)> = HashMap::new();
    for (_, change) in changes {
        if !tables.contains_key(&change.table) {
            let t = SyncTable::require(c, &change.table)?;
            tables.insert(t.name.clone(), (t.algo, t.fingerprint));
        }
        let info = tables.get(&change.table).copied().unwrap_or((Algo::Cls, 0));
        encoder.push(change, |_| info).map_err(|e| Error::Corrupt(e.to_string()))?;
    }
    let n = encoder.change_count();
    Ok(((!encoder.is_empty()).then(|| encoder.finish()), n, q.after.max(Cursor::through(horizon))))
}

/// Encoders of running `cloudsync_payload_encode` aggregates, by handle. Aggregate
/// states are plain `int8` handles into this backend-local map, so no pointer crosses
/// the SQL boundary; the map is emptied when the transaction ends.
/// Algorithm and fingerprint of each table an encoder has seen.
type TableInfos = HashMap<String, (Algo, u64)>;

struct Encoders {
    next: i64,
    open: HashMap<i64, (PayloadEncoder, TableInfos)>,
    cleanup_registered: bool,
}

thread_local! {
    static ENCODERS: RefCell<Encoders> =
        RefCell::new(Encoders { next: 1, open: HashMap::new(), cleanup_registered: false });
}

fn forget_all() {
    ENCODERS.with(|e| {
        let mut e = e.borrow_mut();
        e.open.clear();
        e.cleanup_registered = false;
    });
}

/// One row of the aggregate: adds `change` to the encoder behind `state` (a new one
/// when `state` is NULL). Returns the handle.
pub fn aggregate_step(c: &SpiClient<'_>, state: Option<i64>, change: Change) -> Result<i64> {
    let need_options = ENCODERS.with(|e| state.is_none_or(|h| !e.borrow().open.contains_key(&h)));
    let options = if need_options { Some(encode_options(c)?) } else { None };
    let table_known =
        ENCODERS.with(|e| state.and_then(|h| e.borrow().open.get(&h).map(|(_, t)| t.contains_key(&change.table))));
    let info = if table_known == Some(true) {
        None
    } else {
        let t = SyncTable::load(c, &change.table)?;
        Some(t.map_or((Algo::Cls, 0), |t| (t.algo, t.fingerprint)))
    };
    ENCODERS.with(|e| {
        let mut e = e.borrow_mut();
        if !e.cleanup_registered {
            e.cleanup_registered = true;
            pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, forget_all);
            pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, forget_all);
        }
        let handle = match state.filter(|h| e.open.contains_key(h)) {
            Some(h) => h,
            None => {
                let h = e.next;
                e.next += 1;
                e.open.insert(h, (PayloadEncoder::new(options.unwrap_or_default()), HashMap::new()));
                h
            }
        };
        let (encoder, tables) = e.open.get_mut(&handle).ok_or_else(|| Error::Corrupt("aggregate state".into()))?;
        if let Some(i) = info {
            tables.insert(change.table.clone(), i);
        }
        let i = tables.get(&change.table).copied().unwrap_or((Algo::Cls, 0));
        encoder.push(change, |_| i).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(handle)
    })
}

/// The aggregate's result: the payload of the encoder behind `state`, or NULL.
pub fn aggregate_final(state: Option<i64>) -> Option<Vec<u8>> {
    let h = state?;
    let (encoder, _) = ENCODERS.with(|e| e.borrow_mut().open.remove(&h))?;
    (!encoder.is_empty()).then(|| encoder.finish())
}
