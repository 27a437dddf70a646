//! The core's [`Store`] over SPI, and applying payloads.
//!
//! A store lives for one apply. For each table it touches it prepares the per-row
//! statements once (clock lookup, clock upsert, delete, and one statement per set of
//! written columns), so the per-row cost is binding and executing. Every value is
//! checked against its column's type before it is bound ([`crate::types`]).
//!
//! One file, over 500 lines: the `Store` and the two ways of applying through it (whole,
//! and row by row after a refusal, `apply_rows`) share the prepared statements and the
//! per-table state; splitting the row-by-row driver into its own module is the next
//! step if it grows.

use std::collections::HashMap;

use cloudsync_core::engine::{
    apply_changeset, apply_row_by_row, ApplyError, ApplyReport, RowAttempt, RowKey, Store, TableInfo,
};
use cloudsync_core::merge::{RowWrite, SeqAlloc};
use cloudsync_core::value::{decode_key, show_key};
use cloudsync_core::{Changeset, ColId, RowClock, SiteId, SiteOrd, Value};
use cloudsync_protocol::{ApplyOutcome, RefusedRow, Sqlstate};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgOid;
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::pg_sys::PgTryBuilder;
use pgrx::spi::{PreparedStatement, SpiClient};
use pgrx::PgLogLevel;

use crate::batch::clock_at;
use crate::batch::{self, ClockWriter};
use crate::error::{Error, Result};
use crate::fold::key_args;
use crate::role::RoleSwitch;
use crate::sql::{datum, exec, ident, oid_of, read_value};
use crate::subxact::{self, Refusal, Step};
use crate::table::SyncTable;
use crate::types::convert;
use crate::{fold, meta};

/// Column-set-dependent statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// `INSERT … ON CONFLICT DO NOTHING` of the key and these columns.
    Create,
    /// `UPDATE` of these columns.
    Update,
    /// `UPDATE` of these columns, every other column back to its default.
    UpdateReset,
    /// `SELECT` of these columns.
    Select,
}

struct Prepared<'c> {
    table: SyncTable,
    clock_select: PreparedStatement<'c>,
    /// Clocks read before the merge, by encoded key (when prefetched, a key absent
    /// here has no clock).
    prefetched: Option<HashMap<Vec<u8>, RowClock>>,
    /// Clocks to write after the merge.
    writer: ClockWriter,
    delete: PreparedStatement<'c>,
    by_columns: HashMap<(Kind, Vec<ColId>), PreparedStatement<'c>>,
}

/// `pk1 = $first AND pk2 = $first+1 …` with each parameter cast to its column type.
fn key_where(t: &SyncTable, first: usize, names: &[String]) -> (String, Vec<PgOid>) {
    let mut oids = Vec::new();
    let cond =
        t.pk.iter()
            .zip(names)
            .enumerate()
            .map(|(i, (k, name))| {
                let (bind, expr) = k.kind.write_expr(first + i, &k.sql_type);
                oids.push(oid_of(bind));
                format!("{name} = {expr}")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
    (cond, oids)
}

fn user_keys(t: &SyncTable) -> Vec<String> {
    t.pk.iter().map(|k| ident(&k.name)).collect()
}

impl<'c> Prepared<'c> {
    fn new(c: &SpiClient<'c>, table: SyncTable) -> Result<Self> {
        let (cond, oids) = key_where(&table, 1, &table.meta_keys());
        let clock_select =
            c.prepare(format!("SELECT cl, dbv, seq, clock FROM {} WHERE {cond}", table.clock()).as_str(), &oids)?;
        let (cond, oids) = key_where(&table, 1, &user_keys(&table));
        let delete = c.prepare_mut(format!("DELETE FROM {} WHERE {cond}", table.rel).as_str(), &oids)?;
        Ok(Prepared {
            table,
            clock_select,
            prefetched: None,
            writer: ClockWriter::new(),
            delete,
            by_columns: HashMap::new(),
        })
    }

    fn statement(&mut self, c: &SpiClient<'c>, kind: Kind, cols: &[ColId]) -> Result<&PreparedStatement<'c>> {
        let key = (kind, cols.to_vec());
        if !self.by_columns.contains_key(&key) {
            let (sql, oids) = self.sql(kind, cols);
            let stmt = match kind {
                Kind::Select => c.prepare(sql.as_str(), &oids)?,
                _ => c.prepare_mut(sql.as_str(), &oids)?,
            };
            self.by_columns.insert(key.clone(), stmt);
        }
        self.by_columns.get(&key).ok_or_else(|| Error::Corrupt("statement cache".into()))
    }

    /// SQL and parameter types. Parameters: for `Create`, the key then the values; for
    /// updates, the values then the key; for `Select`, the key.
    fn sql(&self, kind: Kind, cols: &[ColId]) -> (String, Vec<PgOid>) {
        let t = &self.table;
        let picked: Vec<&crate::table::Column> = cols.iter().filter_map(|id| t.column(*id)).map(|c| &c.col).collect();
        match kind {
            Kind::Select => {
                let (cond, oids) = key_where(t, 1, &user_keys(t));
                let exprs: Vec<String> = picked.iter().map(|c| c.kind.read_expr(&ident(&c.name)).0).collect();
                let list = if exprs.is_empty() { "NULL".to_string() } else { exprs.join(", ") };
                (format!("SELECT {list} FROM {} WHERE {cond}", t.rel), oids)
            }
            Kind::Create => {
                let mut oids = Vec::new();
                let mut names = Vec::new();
                let mut exprs = Vec::new();
                for (i, k) in t.pk.iter().enumerate() {
                    let (bind, expr) = k.kind.write_expr(i + 1, &k.sql_type);
                    oids.push(oid_of(bind));
                    names.push(ident(&k.name));
                    exprs.push(expr);
                }
                for (i, col) in picked.iter().enumerate() {
                    let (bind, expr) = col.kind.write_expr(t.pk.len() + i + 1, &col.sql_type);
                    oids.push(oid_of(bind));
                    names.push(ident(&col.name));
                    exprs.push(expr);
                }
                (
                    format!(
                        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({}) ON CONFLICT ({}) DO NOTHING",
                        t.rel,
                        names.join(", "),
                        exprs.join(", "),
                        user_keys(t).join(", ")
                    ),
                    oids,
                )
            }
            Kind::Update | Kind::UpdateReset => {
                let mut oids = Vec::new();
                let mut sets = Vec::new();
                for (i, col) in picked.iter().enumerate() {
                    let (bind, expr) = col.kind.write_expr(i + 1, &col.sql_type);
                    oids.push(oid_of(bind));
                    sets.push(format!("{} = {expr}", ident(&col.name)));
                }
                if kind == Kind::UpdateReset {
                    for other in t.columns.iter().filter(|c| !cols.contains(&c.id)) {
                        sets.push(format!("{} = DEFAULT", ident(&other.col.name)));
                    }
                }
                let (cond, key_oids) = key_where(t, picked.len() + 1, &user_keys(t));
                oids.extend(key_oids);
                if sets.is_empty() {
                    // Nothing to set: touch nothing, keep the caller simple.
                    return (format!("SELECT 1 FROM {} WHERE false AND {cond}", t.rel), oids);
                }
                (format!("UPDATE {} SET {} WHERE {cond}", t.rel, sets.join(", ")), oids)
            }
        }
    }

    /// Checked values of live columns, as arguments.
    fn value_args(&self, values: &[(ColId, &Value)]) -> Result<(Vec<ColId>, Vec<DatumWithOid<'static>>)> {
        let t = &self.table;
        let mut cols = Vec::new();
        let mut args = Vec::new();
        for (id, v) in values {
            let Some(sc) = t.column(*id) else { continue };
            args.push(datum(convert(&sc.col.kind, v, &t.display, &sc.col.name, &sc.col.sql_type)?, sc.col.kind.bind()));
            cols.push(*id);
        }
        Ok((cols, args))
    }
}

/// A [`Store`] over SPI for the duration of one apply.
pub struct PgStore<'a, 'c> {
    c: &'a mut SpiClient<'c>,
    tables: HashMap<String, Prepared<'c>>,
    sites: HashMap<SiteOrd, SiteId>,
    /// The role user-table reads and writes run as ([`crate::role`]).
    role: RoleSwitch,
}

impl<'a, 'c> PgStore<'a, 'c> {
    /// A store over `c` writing user tables as `role` (None: as the caller). The
    /// caller owns the transaction.
    pub fn new(c: &'a mut SpiClient<'c>, role: Option<&str>) -> Result<Self> {
        let role = RoleSwitch::new(c, role)?;
        Ok(PgStore { c, tables: HashMap::new(), sites: HashMap::new(), role })
    }

    fn prepared(&mut self, info: &TableInfo) -> Result<&mut Prepared<'c>> {
        self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))
    }

    /// Reads, in one statement per table, the clocks of every key `cs` touches.
    pub fn prefetch(&mut self, cs: &Changeset) -> Result<()> {
        for (i, desc) in cs.tables.iter().enumerate() {
            let Some(info) = self.table(&desc.name)? else { continue };
            let keys: Vec<Vec<Value>> =
                cs.rows.iter().filter(|r| r.table == i).filter_map(|r| decode_key(&r.pk, info.pk_len).ok()).collect();
            let c: &SpiClient<'_> = self.c;
            let p = self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))?;
            let found = batch::prefetch(c, &p.table, &keys)?;
            p.prefetched = Some(found);
        }
        Ok(())
    }

    /// Writes the clocks the merge produced.
    pub fn finish(mut self) -> Result<()> {
        self.role.caller(self.c)?;
        let c = self.c;
        for p in self.tables.into_values() {
            let mut writer = p.writer;
            writer.flush(c, &p.table)?;
        }
        Ok(())
    }

    /// [`Store::write_row`] without the error context.
    fn write_row_unguarded(&mut self, info: &TableInfo, key: RowKey<'_>, write: &RowWrite<'_>) -> Result<()> {
        let c: &mut SpiClient<'_> = self.c;
        let p = self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))?;
        match write {
            RowWrite::None => {}
            RowWrite::Delete => {
                let deleted = c.update(&p.delete, None, &key_args(&p.table, key.values)?)?.len();
                if deleted == 0 {
                    return self.refuse_if_hidden(info, key);
                }
            }
            RowWrite::Create(values) => {
                let mut args = key_args(&p.table, key.values)?;
                let (cols, vals) = p.value_args(values)?;
                args.extend(vals);
                let stmt = p.statement(c, Kind::Create, &cols)?;
                let inserted = c.update(stmt, None, &args)?.len();
                if inserted == 0 {
                    // The key exists though its clock said otherwise (written while
                    // tracking was off): overwrite it as the new life says.
                    let (cols, mut args) = p.value_args(values)?;
                    args.extend(key_args(&p.table, key.values)?);
                    let stmt = p.statement(c, Kind::UpdateReset, &cols)?;
                    if c.update(stmt, None, &args)?.is_empty() {
                        return self.refuse_if_hidden(info, key);
                    }
                }
            }
            RowWrite::Update { values, reset_others } => {
                let (cols, mut args) = p.value_args(values)?;
                if cols.is_empty() && !reset_others {
                    return Ok(());
                }
                let kind = if *reset_others { Kind::UpdateReset } else { Kind::Update };
                args.extend(key_args(&p.table, key.values)?);
                let stmt = p.statement(c, kind, &cols)?;
                if c.update(stmt, None, &args)?.is_empty() {
                    return self.refuse_if_hidden(info, key);
                }
            }
        }
        Ok(())
    }

    /// An `UPDATE` or `DELETE` as the impersonated role touched no row: if the row
    /// exists, the role cannot see it (row-level security), and PostgreSQL would have
    /// skipped it silently; the merge refuses it instead. A row that does not exist
    /// (deleted while tracking was off) is nothing to refuse.
    fn refuse_if_hidden(&mut self, info: &TableInfo, key: RowKey<'_>) -> Result<()> {
        let Some(role) = self.role.target().map(str::to_string) else { return Ok(()) };
        self.role.caller(self.c)?;
        let c: &SpiClient<'_> = self.c;
        let p = self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))?;
        let args = key_args(&p.table, key.values)?;
        let stmt = p.statement(c, Kind::Select, &[])?;
        if c.select(stmt, None, &args)?.is_empty() {
            return Ok(());
        }
        Err(Error::Hidden {
            table: p.table.display.clone(),
            key: key.values.iter().map(crate::types::show).collect::<Vec<_>>().join(", "),
            role,
        })
    }
}

impl Store for PgStore<'_, '_> {
    type Error = Error;

    fn table(&mut self, name: &str) -> Result<Option<TableInfo>> {
        if !self.tables.contains_key(name) {
            self.role.caller(self.c)?;
            let Some(t) = SyncTable::load(self.c, name)? else { return Ok(None) };
            if t.altering {
                return Err(Error::State(format!(
                    "table {} is being altered (cloudsync_begin_alter without cloudsync_commit_alter); payloads \
                     cannot be applied until the alter is committed",
                    t.display
                )));
            }
            let p = Prepared::new(self.c, t)?;
            self.tables.insert(name.to_string(), p);
        }
        Ok(self.tables.get(name).map(|p| p.table.info()))
    }

    fn clock(&mut self, info: &TableInfo, key: RowKey<'_>) -> Result<Option<RowClock>> {
        let p = self.tables.get(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))?;
        if let Some(clock) = p.writer.get(key.bytes) {
            return Ok(Some(clock.clone()));
        }
        if let Some(found) = &p.prefetched {
            return Ok(found.get(key.bytes).cloned());
        }
        let args = key_args(&p.table, key.values)?;
        self.role.caller(self.c)?;
        match self.c.select(&p.clock_select, None, &args)?.next() {
            None => Ok(None),
            Some(r) => clock_at(&r, 1),
        }
    }

    fn values(&mut self, info: &TableInfo, key: RowKey<'_>, cols: &[ColId]) -> Result<Vec<Value>> {
        self.role.user(self.c)?;
        let c: &SpiClient<'_> = self.c;
        let p = self.tables.get_mut(&info.name).ok_or_else(|| Error::NotSynced(info.name.clone()))?;
        let wanted: Vec<ColId> = cols.iter().copied().filter(|id| p.table.column(*id).is_some()).collect();
        let reads: Vec<_> =
            wanted.iter().filter_map(|id| p.table.column(*id)).map(|sc| sc.col.kind.read_expr("x").1).collect();
        let args = key_args(&p.table, key.values)?;
        let stmt = p.statement(c, Kind::Select, &wanted)?;
        let found = match c.select(stmt, None, &args)?.next() {
            None => None,
            Some(r) => {
                Some(reads.iter().enumerate().map(|(i, rd)| read_value(&r, i + 1, *rd)).collect::<Result<Vec<_>>>()?)
            }
        };
        Ok(cols
            .iter()
            .map(|id| match (&found, wanted.iter().position(|w| w == id)) {
                (Some(vals), Some(i)) => vals[i].clone(),
                _ => Value::Null,
            })
            .collect())
    }

    fn write_row(&mut self, info: &TableInfo, key: RowKey<'_>, write: &RowWrite<'_>) -> Result<()> {
        // An error PostgreSQL raises while writing the row (a constraint, a type's
        // input function) is re-raised with its SQLSTATE and the table and key added.
        // (The message is only formatted when there is an error.)
        self.role.user(self.c)?;
        let display = self.tables.get(&info.name).map_or(info.name.as_str(), |p| p.table.display.as_str()).to_string();
        let values = key.values;
        PgTryBuilder::new(AssertUnwindSafe(|| self.write_row_unguarded(info, key, write)))
            .catch_others(|e| match e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                    let shown_key = values.iter().map(crate::types::show).collect::<Vec<_>>().join(", ");
                    let mut report = ErrorReport::new(
                        r.sql_error_code(),
                        format!("cannot merge the row ({shown_key}) of table {display}: {}", r.message()),
                        "cloudsync_payload_apply",
                    );
                    if let Some(d) = r.detail() {
                        report = report.set_detail(d);
                    }
                    if let Some(h) = r.hint() {
                        report = report.set_hint(h);
                    }
                    report.report(PgLogLevel::ERROR);
                    unreachable!("an ERROR report does not return")
                }
                other => other.rethrow(),
            })
            .execute()
    }

    fn save_clock(&mut self, info: &TableInfo, key: RowKey<'_>, clock: &RowClock) -> Result<()> {
        let p = self.prepared(info)?;
        p.writer.push(&p.table, key.bytes, key.values, clock.clone())
    }

    fn site_ord(&mut self, site: &SiteId) -> Result<SiteOrd> {
        self.role.caller(self.c)?;
        let ord = meta::site_ord(self.c, site)?;
        self.sites.insert(ord, *site);
        Ok(ord)
    }

    fn site_id(&mut self, site: SiteOrd) -> Result<SiteId> {
        if let Some(s) = self.sites.get(&site) {
            return Ok(*s);
        }
        self.role.caller(self.c)?;
        let id = meta::site_id(self.c, site)?;
        self.sites.insert(site, id);
        Ok(id)
    }

    fn begin_merge(&mut self, at_least: u64) -> Result<SeqAlloc> {
        self.role.caller(self.c)?;
        meta::lock(self.c)?;
        let next = meta::db_version(self.c)? + 1;
        Ok(SeqAlloc::new(next.max(at_least), 0))
    }

    fn end_merge(&mut self, alloc: &SeqAlloc) -> Result<()> {
        self.role.caller(self.c)?;
        if alloc.next_seq() > 0 {
            meta::set_db_version(self.c, alloc.db_version())?;
        }
        Ok(())
    }
}

/// Sets `cloudsync.merging` for the rest of the transaction (or until turned off).
pub fn set_merging(c: &mut SpiClient<'_>, on: bool) -> Result<()> {
    exec(c, "SELECT pg_catalog.set_config('cloudsync.merging', $1, true)", &[if on { "on" } else { "off" }.into()])?;
    Ok(())
}

/// Decodes and merges a payload: local writes are folded first, the merge's own
/// writes are not tracked, and any error aborts the statement (and so the whole
/// payload).
///
/// With `as_role`, the user's tables are read and written as that role (its
/// privileges and row-level security apply; a row it cannot see is refused with
/// 42501), the sync metadata as the caller.
pub fn apply_payload(c: &mut SpiClient<'_>, bytes: &[u8], as_role: Option<&str>) -> Result<ApplyReport> {
    let cs = cloudsync_core::payload::decode(bytes)?;
    begin_merge(c)?;
    let report = merge(c, &cs, as_role)?;
    set_merging(c, false)?;
    Ok(report)
}

/// Decodes a payload `from` uploaded (None: any sender; else a payload holding another
/// site's changes is refused whole, 42501) and merges it like [`apply_payload`], except
/// that a row the database refuses — row-level security or privileges, a constraint,
/// a value its column cannot hold (`Sqlstate::refuses_row`) — is rolled back alone and
/// reported, the others applied, each whole. The payload is decoded once: the rows are
/// retried one by one, each in its own subtransaction, only after the whole payload was
/// refused.
pub fn apply_rows(
    c: &mut SpiClient<'_>,
    bytes: &[u8],
    as_role: Option<&str>,
    from: Option<SiteId>,
) -> Result<ApplyOutcome> {
    let cs = cloudsync_core::payload::decode(bytes)?;
    if let Some(site) = from {
        cloudsync_core::engine::written_by(&cs, site).map_err(|i| Error::from(ApplyError::Incompatible(i)))?;
    }
    begin_merge(c)?;
    let mut outcome = ApplyOutcome::default();
    match subxact::attempt(|| merge_checked(c, &cs, as_role), refusal, refuses_code) {
        Step::Done(report) => outcome.applied = report.applied,
        Step::Failed(e) => return Err(e),
        Step::Refused(_) => {
            let (applied, refused) = apply_row_by_row(&cs, |row| {
                Ok::<_, Error>(match subxact::attempt(|| merge_checked(c, row, as_role), refusal, refuses_code) {
                    Step::Done(report) => RowAttempt::Applied(report.applied),
                    Step::Failed(e) => return Err(e),
                    Step::Refused(r) => {
                        let retry = r.sqlstate == Sqlstate::FOREIGN_KEY;
                        RowAttempt::Refused { refusal: r, retry }
                    }
                })
            })?;
            outcome.applied = applied;
            outcome.refused = refused
                .into_iter()
                .map(|(row, r)| {
                    let one = &row.rows[0];
                    RefusedRow {
                        table: row.tables[one.table].name.clone(),
                        key: show_key(&one.pk),
                        sqlstate: Sqlstate::from(r.sqlstate.as_str()),
                        message: r.message,
                    }
                })
                .collect();
        }
    }
    set_merging(c, false)?;
    Ok(outcome)
}

/// Before a merge: exclusive for the rest of the transaction (local writers hold the
/// lock shared until they commit, so the fold sees every committed local write and none
/// can interleave with the merge), local writes folded, the merge's writes untracked.
fn begin_merge(c: &mut SpiClient<'_>) -> Result<()> {
    meta::lock(c)?;
    fold::fold_all(c)?;
    set_merging(c, true)
}

/// Merges a decoded changeset through a store made for it (prepared statements and
/// all, so that a subtransaction holding the merge owns everything it made).
fn merge(c: &mut SpiClient<'_>, cs: &Changeset, as_role: Option<&str>) -> Result<ApplyReport> {
    let mut store = PgStore::new(c, as_role)?;
    store.prefetch(cs)?;
    let report = apply_changeset(&mut store, cs)?;
    store.finish()?;
    Ok(report)
}

/// [`merge`], then the deferred constraints checked (the translator makes every
/// foreign key `DEFERRABLE INITIALLY DEFERRED`, since a payload lists rows in feed
/// order): a violation refuses this merge, inside its subtransaction, instead of
/// failing the caller's `COMMIT` with every row of the payload. `SET CONSTRAINTS ALL
/// IMMEDIATE` stays in effect for the rest of the caller's transaction (stricter,
/// never looser, than before).
fn merge_checked(c: &mut SpiClient<'_>, cs: &Changeset, as_role: Option<&str>) -> Result<ApplyReport> {
    let report = merge(c, cs, as_role)?;
    exec(c, "SET CONSTRAINTS ALL IMMEDIATE", &[])?;
    Ok(report)
}

/// An error of ours that refuses one row, as a refusal.
fn refusal(e: &Error) -> Option<Refusal> {
    let sqlstate = subxact::sqlstate(e.sqlstate());
    refuses_code(&sqlstate).then(|| Refusal { sqlstate, message: e.to_string() })
}

fn refuses_code(sqlstate: &str) -> bool {
    Sqlstate::from(sqlstate).refuses_row()
}
