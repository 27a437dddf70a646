//! The SQL functions (the SQL edge): each runs its work over SPI and reports errors
//! once, with their SQLSTATE, through [`report`].

use cloudsync_core::{Cursor, SiteId, Value};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::{report, Error, Result};
use crate::feed::{self, FeedQuery};
use crate::lifecycle;
use crate::sql::{exec, query_opt};
use crate::{fold, meta, store};

fn spi<T>(f: impl FnOnce(&mut SpiClient<'_>) -> Result<T>) -> T {
    report(Spi::connect_mut(f))
}

/// The extension's version.
#[pg_extern(immutable, parallel_safe)]
fn cloudsync_version() -> &'static str {
    cloudsync_core::VERSION
}

/// SQLite `CREATE TABLE`/`CREATE INDEX` statements translated to PostgreSQL, as one
/// script (`docs/translate-ddl.md`). Nothing is run: `EXECUTE` it, or read it first.
/// Refused constructs are all listed in one error (SQLSTATE 0A000), a syntax error
/// gives 42601.
#[pg_extern(immutable, parallel_safe)]
fn cloudsync_translate_ddl(sqlite_sql: &str) -> String {
    report(cloudsync_ddl::translate(sqlite_sql).map(|t| t.script()).map_err(Error::from))
}

/// This database's site id (16 bytes).
#[pg_extern(stable)]
fn cloudsync_siteid() -> Vec<u8> {
    spi(|c| Ok(meta::local_site(c)?.as_bytes().to_vec()))
}

/// The current `db_version` (pending local writes are folded first, so it covers them).
#[pg_extern]
fn cloudsync_db_version() -> i64 {
    spi(|c| {
        fold::fold_all(c)?;
        crate::sql::i64_of(meta::db_version(c)?)
    })
}

/// A new UUID version 7 (time-ordered), for primary keys.
#[pg_extern]
fn cloudsync_uuid() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// Whether the current transaction is merging a payload (triggers record nothing then).
#[pg_extern]
fn cloudsync_is_merging() -> bool {
    spi(|c| {
        Ok(query_opt(c, "SELECT pg_catalog.current_setting('cloudsync.merging', true)", &[], |r| {
            Ok(r.get::<String>(1)?)
        })?
        .flatten()
        .as_deref()
            == Some("on"))
    })
}

/// Makes a table synced. `tbl` is a table name (schema-qualified or on the search
/// path); `sync_name` is the name devices use (default: the table's own name).
/// Returns the site id.
#[pg_extern]
fn cloudsync_init(
    tbl: &str,
    algo: default!(Option<&str>, "'cls'"),
    flags: default!(i32, 0),
    sync_name: default!(Option<&str>, "NULL"),
) -> Vec<u8> {
    spi(|c| Ok(lifecycle::init(c, tbl, algo, flags, sync_name)?.as_bytes().to_vec()))
}

/// Removes sync triggers and metadata from a table (the table and its rows stay).
#[pg_extern]
fn cloudsync_cleanup(tbl: &str) {
    spi(|c| lifecycle::cleanup(c, tbl))
}

/// Starts tracking local writes again.
#[pg_extern]
fn cloudsync_enable(tbl: &str) {
    spi(|c| lifecycle::set_enabled(c, tbl, true))
}

/// Stops tracking local writes (merges still apply).
#[pg_extern]
fn cloudsync_disable(tbl: &str) {
    spi(|c| lifecycle::set_enabled(c, tbl, false))
}

/// Whether local writes to a table are tracked.
#[pg_extern]
fn cloudsync_is_enabled(tbl: &str) -> bool {
    spi(|c| Ok(lifecycle::resolve(c, tbl)?.enabled))
}

/// Sets a row filter: only rows matching `expr` (over the table's columns) are synced.
#[pg_extern]
fn cloudsync_set_filter(tbl: &str, expr: &str) {
    spi(|c| lifecycle::set_filter(c, tbl, Some(expr)))
}

/// Removes a row filter.
#[pg_extern]
fn cloudsync_clear_filter(tbl: &str) {
    spi(|c| lifecycle::set_filter(c, tbl, None))
}

/// Call before altering a synced table, in the same transaction.
#[pg_extern]
fn cloudsync_begin_alter(tbl: &str) {
    spi(|c| lifecycle::begin_alter(c, tbl))
}

/// Call after altering a synced table, in the same transaction.
#[pg_extern]
fn cloudsync_commit_alter(tbl: &str) {
    spi(|c| lifecycle::commit_alter(c, tbl))
}

fn check_setting(key: &str, value: Option<&str>) -> Result<()> {
    if let Some(range) = cloudsync_core::settings::int_range(key) {
        return match value {
            None => Ok(()),
            Some(v) if v.parse::<i64>().is_ok_and(|n| range.contains(&n)) => Ok(()),
            Some(_) => {
                Err(Error::Invalid(format!("'{key}' must be an integer in {}..={}", range.start(), range.end())))
            }
        };
    }
    match key {
        "" => Err(Error::Invalid("the key is empty".into())),
        "db_version" | "layout" => Err(Error::Invalid(format!("'{key}' is maintained by cloudsync and cannot be set"))),
        _ => Ok(()),
    }
}

/// Sets (or with NULL, removes) a database-wide setting.
#[pg_extern]
fn cloudsync_set(key: &str, value: Option<&str>) {
    spi(|c| {
        check_setting(key, value)?;
        match value {
            Some(v) => exec(
                c,
                "INSERT INTO cloudsync.settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[key.into(), v.into()],
            )?,
            None => exec(c, "DELETE FROM cloudsync.settings WHERE key = $1", &[key.into()])?,
        };
        Ok(())
    })
}

fn set_table_setting(
    c: &mut SpiClient<'_>,
    tbl: &str,
    col: Option<&str>,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Invalid("the key is empty".into()));
    }
    if matches!(key, "algo" | "filter") {
        return Err(Error::Invalid(format!(
            "'{key}' is set by cloudsync_init / cloudsync_set_filter, not as a setting"
        )));
    }
    let t = lifecycle::resolve(c, tbl)?;
    let col = match col {
        None => String::new(),
        Some(name) => t
            .columns
            .iter()
            .map(|sc| sc.col.name.as_str())
            .chain(t.pk.iter().map(|k| k.name.as_str()))
            .find(|n| *n == name)
            .ok_or_else(|| Error::Invalid(format!("table {} has no synced column \"{name}\"", t.display)))?
            .to_string(),
    };
    match value {
        Some(v) => exec(
            c,
            "INSERT INTO cloudsync.table_settings (tbl, col, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tbl, col, key) DO UPDATE SET value = excluded.value",
            &[t.name.into(), col.into(), key.into(), v.into()],
        )?,
        None => exec(
            c,
            "DELETE FROM cloudsync.table_settings WHERE tbl = $1 AND col = $2 AND key = $3",
            &[t.name.into(), col.into(), key.into()],
        )?,
    };
    Ok(())
}

/// Sets (or with NULL, removes) a setting of a synced table.
#[pg_extern]
fn cloudsync_set_table(tbl: &str, key: &str, value: Option<&str>) {
    spi(|c| set_table_setting(c, tbl, None, key, value))
}

/// Sets (or with NULL, removes) a setting of a column of a synced table.
#[pg_extern]
fn cloudsync_set_column(tbl: &str, col: &str, key: &str, value: Option<&str>) {
    spi(|c| set_table_setting(c, tbl, Some(col), key, value))
}

fn since(db_version: i64) -> Result<Cursor> {
    let v = u64::try_from(db_version).map_err(|_| Error::Invalid(format!("db_version {db_version} is negative")))?;
    Ok(if v == 0 { Cursor::ZERO } else { Cursor::new(v, u64::MAX) })
}

/// Every change recorded after `since` (a `db_version`), in feed order. `col_value` is
/// the value in the payload encoding (see `cloudsync_value_text` to read it).
// pgrx reads the column names from the `name!` types in the signature itself.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn cloudsync_changes_since(
    since_version: default!(i64, 0),
) -> TableIterator<
    'static,
    (
        name!(tbl, String),
        name!(pk, Vec<u8>),
        name!(col_name, Option<String>),
        name!(col_value, Vec<u8>),
        name!(col_version, i64),
        name!(db_version, i64),
        name!(site_id, Vec<u8>),
        name!(cl, i64),
        name!(seq, i64),
    ),
> {
    let rows = spi(|c| {
        let after = since(since_version)?;
        fold::fold_all(c)?;
        let horizon = feed::horizon(c)?;
        feed::read(c, &FeedQuery { after, ..FeedQuery::default() }, horizon)?
            .into_iter()
            .map(|(_, ch)| {
                let mut value = Vec::new();
                ch.value.encode(&mut value);
                Ok((
                    ch.table,
                    ch.pk,
                    ch.column,
                    value,
                    crate::sql::i64_of(ch.col_version)?,
                    crate::sql::i64_of(ch.at.db_version)?,
                    ch.site.as_bytes().to_vec(),
                    crate::sql::i64_of(ch.cl)?,
                    i64::try_from(ch.at.seq).unwrap_or(i64::MAX),
                ))
            })
            .collect::<Result<Vec<_>>>()
    });
    TableIterator::new(rows)
}

/// A `col_value` (or any value in the payload encoding) as text, for reading.
#[pg_extern(immutable, parallel_safe)]
fn cloudsync_value_text(value: &[u8]) -> Option<String> {
    let mut input = value;
    match report(Value::decode(&mut input).map_err(Error::from)) {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(r) => Some(format!("{r:?}")),
        Value::Text(t) => Some(String::from_utf8_lossy(&t).into_owned()),
        Value::Blob(b) => Some(format!("\\x{}", b.iter().map(|b| format!("{b:02x}")).collect::<String>())),
    }
}

/// Encodes every change after `since_version`, leaving out those written by
/// `except_site` (a peer's own changes). NULL when there is nothing to send.
#[pg_extern]
fn cloudsync_payload_encode_since(
    since_version: default!(i64, 0),
    except_site: default!(Option<&[u8]>, "NULL"),
) -> Option<Vec<u8>> {
    spi(|c| {
        let except = except_site.map(SiteId::from_slice).transpose().map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(feed::encode(c, &FeedQuery { after: since(since_version)?, except, visible_to: None })?.0)
    })
}

/// Like `cloudsync_payload_encode_since`, with what a peer needs to resume: the number
/// of changes in the payload and the `db_version` the payload brings the receiver up
/// to (the `since` of its next request). That version is read before the rows and
/// bounds them (`feed::horizon`), so it covers exactly the changes in the payload
/// even while other transactions commit during the read.
///
/// With `visible_to`, only rows that role can see are sent (its privileges and
/// row-level security, evaluated with the transaction's settings such as
/// `request.jwt.claims`), each whole; deletions go to everyone (key only).
#[allow(clippy::type_complexity)]
#[pg_extern]
fn cloudsync_payload_encode_next(
    since_version: default!(i64, 0),
    except_site: default!(Option<&[u8]>, "NULL"),
    visible_to: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(payload, Option<Vec<u8>>), name!(changes, i64), name!(db_version, i64))> {
    let row = spi(|c| {
        let except = except_site.map(SiteId::from_slice).transpose().map_err(|e| Error::Invalid(e.to_string()))?;
        let q = FeedQuery { after: since(since_version)?, except, visible_to: visible_to.map(str::to_string) };
        let (payload, changes, cursor) = feed::encode(c, &q)?;
        Ok((payload, crate::sql::i64_of(changes)?, crate::sql::i64_of(cursor.db_version)?))
    });
    TableIterator::once(row)
}

/// The next download chunk after the checkpoint `after` (the protocol's text form:
/// `<db_version>[.<seq>]`, or `<after>~<base>` partway through a pass; `0` from the
/// beginning), of at most about `max_bytes` (a row is never split): as
/// [`cloudsync_payload_encode_next`] sends, in bounded chunks. `next` is where the
/// following chunk starts; `more` says whether rows follow up to this read's horizon.
/// Memory is one page of rows per synced table and one chunk, whatever the table holds.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn cloudsync_payload_encode_chunk(
    after: default!(&str, "'0'"),
    except_site: default!(Option<&[u8]>, "NULL"),
    visible_to: default!(Option<&str>, "NULL"),
    max_bytes: default!(i64, 4194304),
) -> TableIterator<
    'static,
    (name!(payload, Option<Vec<u8>>), name!(changes, i64), name!(next, String), name!(more, bool)),
> {
    let row = spi(|c| {
        let from = if after.trim() == "0" {
            cloudsync_core::feed::Checkpoint::ZERO
        } else {
            cloudsync_core::feed::Checkpoint::parse(after.trim())
                .ok_or_else(|| Error::Invalid(format!("'{after}' is not a feed checkpoint")))?
        };
        let except = except_site.map(SiteId::from_slice).transpose().map_err(|e| Error::Invalid(e.to_string()))?;
        let max = usize::try_from(max_bytes.max(1024)).unwrap_or(usize::MAX);
        let (payload, changes, next, more) = feed::encode_chunk(c, from, except, visible_to, max)?;
        Ok((payload, crate::sql::i64_of(changes)?, next.to_string(), more))
    });
    TableIterator::once(row)
}

/// Of `pks` (keys of the synced table `tbl`, in the payload's encoding), those that
/// name no row `visible_to` can read (privileges and row-level security, with the
/// transaction's settings): a device asking which of the rows it holds are no longer
/// visible to its user. A key whose row exists but is hidden and a key with no row at
/// all are answered alike, so the answer reveals nothing a download would not: whether
/// a row the role may not read exists stays unknown. Keys are returned as sent.
#[pg_extern]
fn cloudsync_invisible_keys<'a>(tbl: &str, pks: Array<'a, &'a [u8]>, visible_to: &str) -> Vec<Vec<u8>> {
    spi(|c| {
        let t = crate::table::SyncTable::require(c, tbl)?;
        let asked: Vec<(&[u8], Option<Vec<Value>>)> =
            pks.iter().flatten().map(|pk| (pk, cloudsync_core::value::decode_key(pk, t.pk.len()).ok())).collect();
        let keys: Vec<Vec<Value>> = asked.iter().filter_map(|(_, k)| k.clone()).collect();
        let mut role = crate::role::RoleSwitch::new(c, Some(visible_to))?;
        role.user(c)?;
        let visible = crate::batch::existing(c, &t, &keys);
        role.caller(c)?;
        let visible = visible?;
        let mut hidden: Vec<Vec<u8>> = asked
            .into_iter()
            .filter(|(_, key)| !key.as_ref().is_some_and(|k| visible.contains(&cloudsync_core::value::encode_key(k))))
            .map(|(pk, _)| pk.to_vec())
            .collect();
        hidden.sort();
        hidden.dedup();
        Ok(hidden)
    })
}

/// The synced tables `role` has no `SELECT` privilege on: a feed read for that role
/// (`visible_to`) leaves them out whole. What a device is told its downloads skip.
#[pg_extern]
fn cloudsync_unreadable_tables(role: &str) -> Vec<String> {
    spi(|c| crate::feed::unreadable(c, role))
}

/// Merges a payload. Returns how many incoming changes changed local state.
///
/// With `as_role`, the synced tables are read and written as that role (the caller
/// must be allowed to `SET ROLE` to it): its privileges and row-level security
/// policies decide, and a change to a row it cannot see is refused (42501) instead of
/// being skipped. The sync metadata is still read and written as the caller.
#[pg_extern]
fn cloudsync_payload_apply(payload: &[u8], as_role: default!(Option<&str>, "NULL")) -> i64 {
    spi(|c| crate::sql::i64_of(store::apply_payload(c, payload, as_role)?.applied))
}

/// Merges a payload a device uploaded, as [`cloudsync_payload_apply`] does, except that
/// a row the database refuses — row-level security or privileges (42501), a constraint
/// (23xxx), a value its column cannot hold (22xxx) — is left out and reported while the
/// others are applied, each whole (each retried row in its own subtransaction). With
/// `from_site`, a payload holding changes another site wrote is refused whole (42501).
///
/// Returns the changes applied and the refused rows as a JSON array of
/// `{"table", "key", "sqlstate", "message"}`. The payload is decoded once.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn cloudsync_payload_apply_rows(
    payload: &[u8],
    as_role: default!(Option<&str>, "NULL"),
    from_site: default!(Option<&[u8]>, "NULL"),
) -> TableIterator<'static, (name!(applied, i64), name!(refused, pgrx::JsonB))> {
    let row = spi(|c| {
        let from = from_site.map(SiteId::from_slice).transpose().map_err(|e| Error::Invalid(e.to_string()))?;
        let outcome = store::apply_rows(c, payload, as_role, from)?;
        let refused = serde_json::to_value(&outcome.refused).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok((crate::sql::i64_of(outcome.applied)?, pgrx::JsonB(refused)))
    });
    TableIterator::once(row)
}

#[pg_schema]
mod cloudsync {
    use cloudsync_core::{Change, Cursor, SiteId, Value};
    use pgrx::prelude::*;

    use crate::error::{report, Error, Result};

    fn u64_arg(v: i64, what: &str) -> Result<u64> {
        u64::try_from(v).map_err(|_| Error::Invalid(format!("{what} {v} is negative")))
    }

    /// State function of `cloudsync_payload_encode`.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern]
    fn payload_encode_step(
        state: Option<i64>,
        tbl: Option<&str>,
        pk: Option<&[u8]>,
        col_name: Option<&str>,
        col_value: Option<&[u8]>,
        col_version: Option<i64>,
        db_version: Option<i64>,
        site_id: Option<&[u8]>,
        cl: Option<i64>,
        seq: Option<i64>,
    ) -> Option<i64> {
        let change = report((|| -> Result<Change> {
            let missing = |what: &str| Error::Invalid(format!("cloudsync_payload_encode: {what} is NULL"));
            let mut value_bytes = col_value.unwrap_or(&[0]);
            Ok(Change {
                table: tbl.ok_or_else(|| missing("tbl"))?.to_string(),
                pk: pk.ok_or_else(|| missing("pk"))?.to_vec(),
                column: col_name.map(str::to_string),
                value: Value::decode(&mut value_bytes)?,
                col_version: u64_arg(col_version.unwrap_or(0), "col_version")?,
                at: Cursor::new(
                    u64_arg(db_version.ok_or_else(|| missing("db_version"))?, "db_version")?,
                    u64_arg(seq.unwrap_or(0), "seq")?,
                ),
                site: SiteId::from_slice(site_id.ok_or_else(|| missing("site_id"))?)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
                cl: u64_arg(cl.ok_or_else(|| missing("cl"))?, "cl")?,
            })
        })());
        Some(report(Spi::connect(|c| crate::feed::aggregate_step(c, state, change))))
    }

    /// Called by the `ddl_command_end` event trigger after an `ALTER TABLE` of a
    /// synced table (see `lifecycle::after_alter`).
    #[pg_extern]
    fn after_alter(relid: pg_sys::Oid) {
        report(Spi::connect_mut(|c| crate::lifecycle::after_alter(c, relid)));
    }

    /// Final function of `cloudsync_payload_encode`.
    #[pg_extern]
    fn payload_encode_final(state: Option<i64>) -> Option<Vec<u8>> {
        crate::feed::aggregate_final(state)
    }
}
