//! A per-connection cache of cloudsync's metadata (synced tables, their columns, the
//! site id), valid while the database schema does not change.
//!
//! Every SQL function call would otherwise re-read `sqlite_master`, the table's
//! `PRAGMA table_xinfo` and `cloudsync_tables` several times — most of a small sync's
//! cost. All metadata changes happen together with DDL (triggers are rebuilt), so the
//! schema version is a sound validity key: a call checks it once on entry (catching
//! other connections' changes), and this connection's own DDL invalidates the cache
//! explicitly.
//!
//! The cache is reached through a thread-local set for the duration of a call
//! ([`scope`]); code running outside a scope reads the database directly.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudsync_core::SiteId;
use rusqlite::Connection;

use crate::meta::table::SyncTable;
use crate::Result;

#[derive(Default)]
struct Snapshot {
    schema_version: i64,
    exists: Option<bool>,
    site: Option<Option<SiteId>>,
    names: Option<Vec<String>>,
    tables: HashMap<String, Option<SyncTable>>,
}

/// The cache of one connection.
#[derive(Default)]
pub struct MetaCache {
    snapshot: Mutex<Snapshot>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<MetaCache>>> = const { RefCell::new(None) };
}

fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?)
}

/// Runs `f` with `cache` as the current cache, first dropping it if the schema changed
/// since it was filled.
pub fn scope<T, E: From<crate::Error>>(
    cache: &Arc<MetaCache>,
    conn: &Connection,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let version = schema_version(conn).map_err(E::from)?;
    {
        let mut s = cache.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.schema_version != version {
            *s = Snapshot { schema_version: version, ..Snapshot::default() };
        }
    }
    let previous = CURRENT.with(|c| c.replace(Some(Arc::clone(cache))));
    let result = f();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    result
}

/// Forgets everything cached (after this connection ran DDL).
pub fn invalidate() {
    CURRENT.with(|c| {
        if let Some(cache) = c.borrow().as_ref() {
            let mut s = cache.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *s = Snapshot { schema_version: -1, ..Snapshot::default() };
        }
    });
}

fn with_snapshot<T>(
    read: impl FnOnce(&mut Snapshot) -> Option<T>,
    load: impl FnOnce() -> Result<T>,
    store: impl FnOnce(&mut Snapshot, &T),
) -> Result<T> {
    let cache = CURRENT.with(|c| c.borrow().clone());
    let Some(cache) = cache else { return load() };
    if let Some(v) = read(&mut cache.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
        return Ok(v);
    }
    let v = load()?;
    store(&mut cache.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner), &v);
    Ok(v)
}

/// Whether the metadata tables exist.
pub fn exists(load: impl FnOnce() -> Result<bool>) -> Result<bool> {
    with_snapshot(|s| s.exists, load, |s, v| s.exists = Some(*v))
}

/// The local site id.
pub fn site(load: impl FnOnce() -> Result<Option<SiteId>>) -> Result<Option<SiteId>> {
    with_snapshot(|s| s.site, load, |s, v| s.site = Some(*v))
}

/// Names of the synced tables.
pub fn names(load: impl FnOnce() -> Result<Vec<String>>) -> Result<Vec<String>> {
    with_snapshot(|s| s.names.clone(), load, |s, v| s.names = Some(v.clone()))
}

/// A synced table by name (as asked; lookups are by the exact text given).
pub fn table(name: &str, load: impl FnOnce() -> Result<Option<SyncTable>>) -> Result<Option<SyncTable>> {
    with_snapshot(
        |s| s.tables.get(name).cloned(),
        load,
        |s, v| {
            s.tables.insert(name.to_string(), v.clone());
        },
    )
}
