//! The global metadata tables every synced database has.
//!
//! | table | holds |
//! |---|---|
//! | `cloudsync_settings(key, value)` | the site id, the last assigned `db_version`, the metadata layout version |
//! | `cloudsync_sites(ord, site_id)` | site ordinals used inside clocks; `0` is this replica |
//! | `cloudsync_tables(name, algo, enabled, filter, flags, next_col, mask_words, altering)` | one row per synced table |
//! | `cloudsync_columns(tbl, id, name, dropped)` | stable column ids |
//! | `cloudsync_table_settings(tbl, col, key, value)` | settings from `cloudsync_set*` |
//!
//! With them, in this folder, what is read from them: the synced-table model
//! ([`table`]) and the per-connection cache of both ([`cache`]), which hold on to each
//! other.

pub mod cache;
pub mod table;

use cloudsync_core::{SiteId, SiteOrd};
use rusqlite::{params, Connection, OptionalExtension};

use crate::sql::{i64_of, u64_of};
use crate::{Error, Result};

/// Version of the metadata layout, stored in `cloudsync_settings`.
pub const LAYOUT_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cloudsync_settings (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloudsync_sites (ord INTEGER PRIMARY KEY, site_id BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cloudsync_tables (
    name TEXT PRIMARY KEY NOT NULL,
    algo TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    filter TEXT,
    flags INTEGER NOT NULL DEFAULT 0,
    next_col INTEGER NOT NULL DEFAULT 0,
    mask_words INTEGER NOT NULL DEFAULT 1,
    altering INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloudsync_columns (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloudsync_table_settings (
    tbl TEXT NOT NULL,
    col TEXT NOT NULL,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY (tbl, col, key)
) WITHOUT ROWID;
";

/// Whether this database has cloudsync metadata.
pub fn exists(conn: &Connection) -> Result<bool> {
    crate::meta::cache::exists(|| exists_uncached(conn))
}

fn exists_uncached(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cloudsync_settings'", [], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Creates the global tables and the site id if missing. Idempotent.
pub fn ensure(conn: &Connection) -> Result<SiteId> {
    crate::meta::cache::invalidate();
    conn.execute_batch(SCHEMA)?;
    crate::meta::cache::invalidate();
    let site = match local_site(conn)? {
        Some(site) => site,
        None => {
            let site = SiteId::generate();
            conn.execute("INSERT INTO cloudsync_sites (ord, site_id) VALUES (0, ?1)", [site.as_bytes().as_slice()])?;
            site
        }
    };
    conn.execute(
        "INSERT OR IGNORE INTO cloudsync_settings (key, value) VALUES ('db_version', 0), ('layout', ?1)",
        [LAYOUT_VERSION],
    )?;
    Ok(site)
}

/// Drops the global tables (after the last table was cleaned up).
pub fn drop_all(conn: &Connection) -> Result<()> {
    crate::meta::cache::invalidate();
    conn.execute_batch(
        "DROP TABLE IF EXISTS cloudsync_table_settings; DROP TABLE IF EXISTS cloudsync_columns;
         DROP TABLE IF EXISTS cloudsync_tables; DROP TABLE IF EXISTS cloudsync_sites;
         DROP TABLE IF EXISTS cloudsync_settings;",
    )?;
    Ok(())
}

/// This replica's site id, if the metadata exists.
pub fn local_site(conn: &Connection) -> Result<Option<SiteId>> {
    crate::meta::cache::site(|| local_site_uncached(conn))
}

fn local_site_uncached(conn: &Connection) -> Result<Option<SiteId>> {
    if !exists(conn)? {
        return Ok(None);
    }
    let blob: Option<Vec<u8>> =
        conn.query_row("SELECT site_id FROM cloudsync_sites WHERE ord = 0", [], |r| r.get(0)).optional()?;
    blob.map(|b| SiteId::from_slice(&b).map_err(Error::from)).transpose()
}

/// The last `db_version` assigned to recorded changes.
pub fn db_version(conn: &Connection) -> Result<u64> {
    if !exists(conn)? {
        return Ok(0);
    }
    let v: Option<i64> =
        conn.query_row("SELECT value FROM cloudsync_settings WHERE key = 'db_version'", [], |r| r.get(0)).optional()?;
    u64_of(v.unwrap_or(0), "db_version")
}

/// Stores the last assigned `db_version`.
pub fn set_db_version(conn: &Connection, v: u64) -> Result<()> {
    conn.prepare_cached("UPDATE cloudsync_settings SET value = ?1 WHERE key = 'db_version'")?.execute([i64_of(v)?])?;
    Ok(())
}

/// The ordinal of a site id, interning it.
pub fn site_ord(conn: &Connection, site: &SiteId) -> Result<SiteOrd> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT ord FROM cloudsync_sites WHERE site_id = ?1")?
        .query_row([site.as_bytes().as_slice()], |r| r.get(0))
        .optional()?;
    let ord = match found {
        Some(o) => o,
        None => {
            conn.prepare_cached("INSERT INTO cloudsync_sites (site_id) VALUES (?1)")?
                .execute([site.as_bytes().as_slice()])?;
            conn.last_insert_rowid()
        }
    };
    SiteOrd::try_from(ord).map_err(|_| Error::Corrupt(format!("site ordinal {ord}")))
}

/// The site id of an ordinal.
pub fn site_id(conn: &Connection, ord: SiteOrd) -> Result<SiteId> {
    let blob: Vec<u8> = conn
        .prepare_cached("SELECT site_id FROM cloudsync_sites WHERE ord = ?1")?
        .query_row([ord], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::Corrupt(format!("unknown site ordinal {ord}")))?;
    Ok(SiteId::from_slice(&blob)?)
}

/// Reads a setting from `cloudsync_table_settings` (`tbl`/`col` empty for globals).
pub fn setting(conn: &Connection, tbl: &str, col: &str, key: &str) -> Result<Option<rusqlite::types::Value>> {
    Ok(conn
        .prepare_cached("SELECT value FROM cloudsync_table_settings WHERE tbl = ?1 AND col = ?2 AND key = ?3")?
        .query_row(params![tbl, col, key], |r| r.get(0))
        .optional()?)
}

/// Writes (or with `None`, deletes) a setting.
pub fn set_setting(
    conn: &Connection,
    tbl: &str,
    col: &str,
    key: &str,
    value: Option<rusqlite::types::Value>,
) -> Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO cloudsync_table_settings (tbl, col, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tbl, col, key) DO UPDATE SET value = excluded.value",
            params![tbl, col, key, v],
        )?,
        None => conn.execute(
            "DELETE FROM cloudsync_table_settings WHERE tbl = ?1 AND col = ?2 AND key = ?3",
            params![tbl, col, key],
        )?,
    };
    Ok(())
}
