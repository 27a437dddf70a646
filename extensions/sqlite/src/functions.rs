//! The SQL functions, as thin adapters from SQL values to the crate's Rust API.

use std::sync::Arc;

use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
use cloudsync_core::{Algo, Change, Cursor, SiteId};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::error::to_sql;
use crate::ffi::with_conn;
use crate::meta::table::SyncTable;
use crate::sql::value_of;
use crate::state::ConnState;
use crate::{apply, fold, lifecycle, meta, payload, settings, Error, Result};

type Fx = fn(&Context<'_>, &Connection, &ConnState) -> Result<SqlValue>;

fn text_arg(ctx: &Context<'_>, i: usize, function: &'static str, what: &str) -> Result<String> {
    match ctx.get_raw(i) {
        ValueRef::Text(t) => {
            String::from_utf8(t.to_vec()).map_err(|_| Error::arg(function, format!("{what} is not valid UTF-8")))
        }
        ValueRef::Null => Err(Error::arg(function, format!("{what} is NULL"))),
        _ => Err(Error::arg(function, format!("{what} must be text"))),
    }
}

fn opt_text_arg(ctx: &Context<'_>, i: usize, function: &'static str, what: &str) -> Result<Option<String>> {
    if i >= ctx.len() || matches!(ctx.get_raw(i), ValueRef::Null) {
        return Ok(None);
    }
    text_arg(ctx, i, function, what).map(Some)
}

fn int_arg(ctx: &Context<'_>, i: usize, function: &'static str, what: &str) -> Result<Option<i64>> {
    if i >= ctx.len() {
        return Ok(None);
    }
    match ctx.get_raw(i) {
        ValueRef::Integer(v) => Ok(Some(v)),
        ValueRef::Null => Ok(None),
        // A whole number bound as a float: JavaScript hosts (better-sqlite3) bind
        // every number so. Below 2^53 the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => Ok(Some(f as i64)),
        _ => Err(Error::arg(function, format!("{what} must be an integer"))),
    }
}

fn count(n: u64) -> Result<SqlValue> {
    i64::try_from(n).map(SqlValue::Integer).map_err(|_| Error::Apply("count overflow".into()))
}

fn version(_: &Context<'_>, _: &Connection, _: &ConnState) -> Result<SqlValue> {
    Ok(SqlValue::Text(cloudsync_core::VERSION.to_string()))
}

fn siteid(_: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    Ok(match meta::local_site(conn)? {
        Some(s) => SqlValue::Blob(s.as_bytes().to_vec()),
        None => SqlValue::Null,
    })
}

fn db_version(_: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    // Local writes not folded yet will all get the next version.
    let pending = u64::from(fold::any_pending(conn)?);
    count(meta::db_version(conn)? + pending)
}

fn uuid(_: &Context<'_>, _: &Connection, _: &ConnState) -> Result<SqlValue> {
    Ok(SqlValue::Text(uuid::Uuid::now_v7().to_string()))
}

fn init(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let table = text_arg(ctx, 0, "cloudsync_init", "table name")?;
    let algo = opt_text_arg(ctx, 1, "cloudsync_init", "algorithm")?;
    let flags = int_arg(ctx, 2, "cloudsync_init", "flags")?.unwrap_or(0);
    let site = lifecycle::init(conn, &table, algo.as_deref(), flags)?;
    Ok(SqlValue::Text(site.to_string()))
}

fn cleanup(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::cleanup(conn, &text_arg(ctx, 0, "cloudsync_cleanup", "table name")?)?;
    Ok(SqlValue::Integer(1))
}

fn enable(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::set_enabled(conn, &text_arg(ctx, 0, "cloudsync_enable", "table name")?, true)?;
    Ok(SqlValue::Integer(1))
}

fn disable(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::set_enabled(conn, &text_arg(ctx, 0, "cloudsync_disable", "table name")?, false)?;
    Ok(SqlValue::Integer(1))
}

fn is_enabled(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let table = text_arg(ctx, 0, "cloudsync_is_enabled", "table name")?;
    Ok(SqlValue::Integer(SyncTable::load(conn, &table)?.is_some_and(|t| t.enabled).into()))
}

fn terminate(_: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    // Leave nothing pending behind: fold local writes into clocks.
    if meta::exists(conn)? && !conn.is_readonly("main")? {
        fold::fold_all(conn)?;
    }
    Ok(SqlValue::Integer(1))
}

fn is_merging(_: &Context<'_>, _: &Connection, state: &ConnState) -> Result<SqlValue> {
    Ok(SqlValue::Integer(state.merging().into()))
}

fn set(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let key = text_arg(ctx, 0, "cloudsync_set", "key")?;
    settings::set(conn, None, None, &key, ctx.get::<SqlValue>(1)?)?;
    Ok(SqlValue::Integer(1))
}

fn set_table(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let table = text_arg(ctx, 0, "cloudsync_set_table", "table name")?;
    let key = text_arg(ctx, 1, "cloudsync_set_table", "key")?;
    settings::set(conn, Some(&table), None, &key, ctx.get::<SqlValue>(2)?)?;
    Ok(SqlValue::Integer(1))
}

fn set_column(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let table = text_arg(ctx, 0, "cloudsync_set_column", "table name")?;
    let column = text_arg(ctx, 1, "cloudsync_set_column", "column name")?;
    let key = text_arg(ctx, 2, "cloudsync_set_column", "key")?;
    settings::set(conn, Some(&table), Some(&column), &key, ctx.get::<SqlValue>(3)?)?;
    Ok(SqlValue::Integer(1))
}

fn set_filter(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let table = text_arg(ctx, 0, "cloudsync_set_filter", "table name")?;
    let expr = text_arg(ctx, 1, "cloudsync_set_filter", "filter expression")?;
    lifecycle::set_filter(conn, &table, Some(&expr))?;
    Ok(SqlValue::Integer(1))
}

fn clear_filter(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::set_filter(conn, &text_arg(ctx, 0, "cloudsync_clear_filter", "table name")?, None)?;
    Ok(SqlValue::Integer(1))
}

fn begin_alter(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::begin_alter(conn, &text_arg(ctx, 0, "cloudsync_begin_alter", "table name")?)?;
    Ok(SqlValue::Integer(1))
}

fn commit_alter(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    lifecycle::commit_alter(conn, &text_arg(ctx, 0, "cloudsync_commit_alter", "table name")?)?;
    Ok(SqlValue::Integer(1))
}

fn payload_apply(ctx: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
    let bytes = match ctx.get_raw(0) {
        ValueRef::Blob(b) => b.to_vec(),
        ValueRef::Null => return Err(Error::arg("cloudsync_payload_apply", "payload is NULL")),
        _ => return Err(Error::arg("cloudsync_payload_apply", "payload must be a blob")),
    };
    count(apply::apply_payload(conn, state, &bytes)?.applied)
}

fn payload_save(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
    let path = text_arg(ctx, 0, "cloudsync_payload_save", "path")?;
    let since = int_arg(ctx, 1, "cloudsync_payload_save", "db_version")?.unwrap_or(0);
    let since = u64::try_from(since).map_err(|_| Error::arg("cloudsync_payload_save", "db_version must be >= 0"))?;
    count(payload::save(conn, &path, since)?)
}

fn payload_load(ctx: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
    let path = text_arg(ctx, 0, "cloudsync_payload_load", "path")?;
    count(payload::load(conn, state, &path)?.applied)
}

#[cfg(feature = "network")]
mod net {
    //! Adapters of the `cloudsync_network_*` functions.
    use std::time::Duration;

    use super::*;
    use crate::network;

    fn json(v: serde_json::Value) -> Result<SqlValue> {
        Ok(SqlValue::Text(v.to_string()))
    }

    fn wait_arg(ctx: &Context<'_>, i: usize, function: &'static str) -> Result<Duration> {
        let ms = int_arg(ctx, i, function, "wait_ms")?.unwrap_or(0);
        let ms = u64::try_from(ms).map_err(|_| Error::arg(function, "wait_ms must be >= 0"))?;
        Ok(Duration::from_millis(ms.min(60_000)))
    }

    pub fn init(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
        network::init(conn, &text_arg(ctx, 0, "cloudsync_network_init", "sync URL")?)?;
        Ok(SqlValue::Integer(1))
    }

    pub fn set_apikey(ctx: &Context<'_>, _: &Connection, state: &ConnState) -> Result<SqlValue> {
        const F: &str = "cloudsync_network_set_apikey";
        let key = text_arg(ctx, 0, F, "API key")?;
        cloudsync_protocol::credentials::check_api_key(&key)
            .map_err(|source| Error::Credential { function: F, source })?;
        state.set_credential(Some(key));
        Ok(SqlValue::Integer(1))
    }

    pub fn set_token(ctx: &Context<'_>, _: &Connection, state: &ConnState) -> Result<SqlValue> {
        const F: &str = "cloudsync_network_set_token";
        let token = text_arg(ctx, 0, F, "token")?;
        cloudsync_protocol::credentials::check_jwt(&token)
            .map_err(|source| Error::Credential { function: F, source })?;
        state.set_credential(Some(token));
        Ok(SqlValue::Integer(1))
    }

    pub fn send(_: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        json(network::send_changes(conn, state)?)
    }

    pub fn check(ctx: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        let wait = wait_arg(ctx, 0, "cloudsync_network_check_changes")?;
        json(network::check_changes(conn, state, wait)?)
    }

    pub fn sync(ctx: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        let wait = wait_arg(ctx, 0, "cloudsync_network_sync")?;
        let retries = int_arg(ctx, 1, "cloudsync_network_sync", "max_retries")?.unwrap_or(3);
        let retries = u32::try_from(retries.clamp(0, 20)).unwrap_or(3);
        json(network::sync(conn, state, wait, retries)?)
    }

    pub fn unsent(_: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
        Ok(SqlValue::Integer(network::has_unsent_changes(conn)?.into()))
    }

    pub fn reset(_: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
        network::reset(conn)?;
        Ok(SqlValue::Integer(1))
    }

    pub fn logout(ctx: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        let force = int_arg(ctx, 0, "cloudsync_network_logout", "force")?.unwrap_or(0) != 0;
        network::logout(conn, state, force)?;
        Ok(SqlValue::Integer(1))
    }

    pub fn cleanup(_: &Context<'_>, _: &Connection, state: &ConnState) -> Result<SqlValue> {
        state.set_credential(None);
        Ok(SqlValue::Integer(1))
    }

    pub fn status(_: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        json(network::status(conn, state)?)
    }

    pub fn visibility(_: &Context<'_>, conn: &Connection, state: &ConnState) -> Result<SqlValue> {
        json(network::check_visibility(conn, state)?)
    }

    pub fn schema_auto(ctx: &Context<'_>, conn: &Connection, _: &ConnState) -> Result<SqlValue> {
        let on = int_arg(ctx, 0, "cloudsync_network_set_schema_auto", "on")?
            .ok_or_else(|| Error::arg("cloudsync_network_set_schema_auto", "on must be 0 or 1"))?;
        if !matches!(on, 0 | 1) {
            return Err(Error::arg("cloudsync_network_set_schema_auto", "on must be 0 or 1"));
        }
        network::set_schema_auto(conn, on == 1)?;
        Ok(SqlValue::Integer(1))
    }

    /// The network functions.
    pub const FUNCTIONS: &[(&str, i32, bool, Fx)] = &[
        ("cloudsync_network_init", 1, false, init),
        ("cloudsync_network_set_apikey", 1, false, set_apikey),
        ("cloudsync_network_set_token", 1, false, set_token),
        ("cloudsync_network_send_changes", 0, false, send),
        ("cloudsync_network_check_changes", 0, false, check),
        ("cloudsync_network_check_changes", 1, false, check),
        ("cloudsync_network_sync", 0, false, sync),
        ("cloudsync_network_sync", 1, false, sync),
        ("cloudsync_network_sync", 2, false, sync),
        ("cloudsync_network_has_unsent_changes", 0, false, unsent),
        ("cloudsync_network_reset_sync_version", 0, false, reset),
        ("cloudsync_network_logout", 0, false, logout),
        ("cloudsync_network_logout", 1, false, logout),
        ("cloudsync_network_cleanup", 0, false, cleanup),
        ("cloudsync_network_status", 0, false, status),
        ("cloudsync_network_check_visibility", 0, false, visibility),
        ("cloudsync_network_set_schema_auto", 1, false, schema_auto),
    ];
}

#[cfg(feature = "network")]
const NETWORK: &[(&str, i32, bool, Fx)] = net::FUNCTIONS;
#[cfg(not(feature = "network"))]
const NETWORK: &[(&str, i32, bool, Fx)] = &[];

/// `(name, arity, deterministic, function)`; arity -1 means variadic.
const SCALARS: &[(&str, i32, bool, Fx)] = &[
    ("cloudsync_version", 0, true, version),
    ("cloudsync_siteid", 0, false, siteid),
    ("cloudsync_db_version", 0, false, db_version),
    ("cloudsync_uuid", 0, false, uuid),
    ("cloudsync_init", 1, false, init),
    ("cloudsync_init", 2, false, init),
    ("cloudsync_init", 3, false, init),
    ("cloudsync_cleanup", 1, false, cleanup),
    ("cloudsync_enable", 1, false, enable),
    ("cloudsync_disable", 1, false, disable),
    ("cloudsync_is_enabled", 1, false, is_enabled),
    ("cloudsync_terminate", 0, false, terminate),
    ("cloudsync_is_merging", 0, false, is_merging),
    ("cloudsync_set", 2, false, set),
    ("cloudsync_set_table", 3, false, set_table),
    ("cloudsync_set_column", 4, false, set_column),
    ("cloudsync_set_filter", 2, false, set_filter),
    ("cloudsync_clear_filter", 1, false, clear_filter),
    ("cloudsync_begin_alter", 1, false, begin_alter),
    ("cloudsync_commit_alter", 1, false, commit_alter),
    ("cloudsync_payload_apply", 1, false, payload_apply),
    ("cloudsync_payload_save", 1, false, payload_save),
    ("cloudsync_payload_save", 2, false, payload_save),
    ("cloudsync_payload_load", 1, false, payload_load),
];

/// Functions the engine's schema objects call (trigger `WHEN` clauses, defaults).
const ENGINE: &[&str] = &["cloudsync_is_merging", "cloudsync_version", "cloudsync_uuid"];

/// Registers every scalar function and the aggregate on `conn`.
pub fn register(conn: &Connection, state: Arc<ConnState>) -> Result<()> {
    register_scalars(conn, state, SCALARS.iter().chain(NETWORK))?;
    register_aggregate(conn)
}

/// Registers only [`ENGINE`]'s functions.
pub fn register_engine(conn: &Connection, state: Arc<ConnState>) -> Result<()> {
    register_scalars(conn, state, SCALARS.iter().filter(|(name, ..)| ENGINE.contains(name)))
}

fn register_scalars<'a>(
    conn: &Connection,
    state: Arc<ConnState>,
    functions: impl Iterator<Item = &'a (&'static str, i32, bool, Fx)>,
) -> Result<()> {
    for &(name, arity, deterministic, f) in functions {
        let mut flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
        if deterministic {
            flags |= FunctionFlags::SQLITE_DETERMINISTIC;
        }
        if ENGINE.contains(&name) {
            // Used inside trigger WHEN clauses and defaults: must be callable from the schema.
            flags = (flags - FunctionFlags::SQLITE_DIRECTONLY) | FunctionFlags::SQLITE_INNOCUOUS;
        }
        let state = Arc::clone(&state);
        conn.create_scalar_function(name, arity, flags, move |ctx| {
            if name == "cloudsync_is_merging" {
                // Called per row by guard triggers: no connection, no cache.
                return Ok(SqlValue::Integer(state.merging().into()));
            }
            with_conn(ctx, |conn| crate::meta::cache::scope(&state.cache, conn, || f(ctx, conn, &state)))
                .map_err(to_sql)
        })?;
    }
    Ok(())
}

fn register_aggregate(conn: &Connection) -> Result<()> {
    conn.create_aggregate_function(
        "cloudsync_payload_encode",
        9,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        EncodeAgg,
    )?;
    Ok(())
}

/// The `cloudsync_payload_encode` aggregate: one payload from the rows it is given.
struct EncodeAgg;

/// Aggregate state: the encoder and what is known of each table.
struct EncodeState {
    encoder: PayloadEncoder,
    tables: Vec<(String, Algo, u64)>,
}

fn change_of(ctx: &Context<'_>) -> Result<Change> {
    let bad = |what: &str| {
        Error::arg(
            "cloudsync_payload_encode",
            format!("invalid {what}; pass the columns of cloudsync_changes in order"),
        )
    };
    let uint = |i: usize, what: &str| -> Result<u64> {
        match ctx.get_raw(i) {
            ValueRef::Integer(v) if v >= 0 => Ok(v.cast_unsigned()),
            _ => Err(bad(what)),
        }
    };
    let table = match ctx.get_raw(0) {
        ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|_| bad("tbl"))?,
        _ => return Err(bad("tbl")),
    };
    let pk = match ctx.get_raw(1) {
        ValueRef::Blob(b) => b.to_vec(),
        _ => return Err(bad("pk")),
    };
    let column = match ctx.get_raw(2) {
        ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).map_err(|_| bad("col_name"))?),
        ValueRef::Null => None,
        _ => return Err(bad("col_name")),
    };
    let site = match ctx.get_raw(6) {
        ValueRef::Blob(b) => SiteId::from_slice(b).map_err(|_| bad("site_id"))?,
        _ => return Err(bad("site_id")),
    };
    Ok(Change {
        table,
        pk,
        column,
        value: value_of(ctx.get_raw(3)),
        col_version: uint(4, "col_version")?,
        at: Cursor::new(uint(5, "db_version")?, uint(8, "seq")?),
        site,
        cl: uint(7, "cl")?,
    })
}

impl Aggregate<EncodeState, Option<Vec<u8>>> for EncodeAgg {
    fn init(&self, _ctx: &mut Context<'_>) -> rusqlite::Result<EncodeState> {
        Ok(EncodeState { encoder: PayloadEncoder::new(EncodeOptions::default()), tables: Vec::new() })
    }

    fn step(&self, ctx: &mut Context<'_>, st: &mut EncodeState) -> rusqlite::Result<()> {
        let change = change_of(ctx).map_err(to_sql)?;
        if !st.tables.iter().any(|(n, _, _)| *n == change.table) {
            let info = with_conn(ctx, |conn| {
                Ok(SyncTable::load(conn, &change.table)?.map_or((Algo::Cls, 0), |t| (t.algo, t.fingerprint)))
            })
            .map_err(to_sql)?;
            st.tables.push((change.table.clone(), info.0, info.1));
        }
        let info = st.tables.iter().find(|(n, _, _)| *n == change.table).map_or((Algo::Cls, 0), |(_, a, f)| (*a, *f));
        st.encoder.push(change, |_| info).map_err(|e| to_sql(Error::arg("cloudsync_payload_encode", e.to_string())))
    }

    fn finalize(&self, _ctx: &mut Context<'_>, st: Option<EncodeState>) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(st.filter(|s| !s.encoder.is_empty()).map(|s| s.encoder.finish()))
    }
}
