//! The global metadata in schema `cloudsync`: settings, sites, the feed's `db_version`.
//!
//! | table | holds |
//! |---|---|
//! | `cloudsync.settings(key, value)` | `db_version` and the settings of `cloudsync_set` |
//! | `cloudsync.sites(ord, site_id)` | site ordinals used inside clocks; `0` is this database |
//! | `cloudsync.tables(id, name, relid, algo, …)` | one row per synced table (see [`crate::table`]) |
//! | `cloudsync.columns(tbl, id, name, dropped)` | stable column ids |
//! | `cloudsync.table_settings(tbl, col, key, value)` | settings of `cloudsync_set_table/column` |
//!
//! Every change of `db_version` (a fold of local writes, a merge) happens under one
//! transaction-level advisory lock, so versions become visible in the order they are
//! assigned: a reader that has seen version `v` has seen everything before it.

use cloudsync_core::{SiteId, SiteOrd};
use pgrx::spi::SpiClient;

use crate::error::{Error, Result};
use crate::sql::{exec, get, query_opt};

/// The advisory lock key serialising `db_version` assignment (ASCII "cloudsyn").
pub const LOCK_KEY: i64 = 0x636c_6f75_6473_796e;

/// Takes the `db_version` lock until the end of the transaction.
pub fn lock(c: &mut SpiClient<'_>) -> Result<()> {
    exec(c, &format!("SELECT pg_catalog.pg_advisory_xact_lock({LOCK_KEY})"), &[])?;
    Ok(())
}

/// Holds the `db_version` lock shared until the end of the transaction: no fold or
/// merge can move a clock meanwhile (local writers take it shared too).
pub fn lock_shared(c: &SpiClient<'_>) -> Result<()> {
    query_opt(c, &format!("SELECT pg_catalog.pg_advisory_xact_lock_shared({LOCK_KEY})"), &[], |_| Ok(()))?;
    Ok(())
}

/// The last assigned `db_version`.
pub fn db_version(c: &SpiClient<'_>) -> Result<u64> {
    let v = query_opt(c, "SELECT value FROM cloudsync.settings WHERE key = 'db_version'", &[], |r| {
        get::<String>(r, 1, "db_version")
    })?
    .ok_or_else(|| Error::Corrupt("db_version is missing".into()))?;
    v.parse().map_err(|_| Error::Corrupt(format!("db_version '{v}' is not a number")))
}

/// Records the last assigned `db_version` (the caller holds [`lock`]).
pub fn set_db_version(c: &mut SpiClient<'_>, v: u64) -> Result<()> {
    exec(c, "UPDATE cloudsync.settings SET value = $1 WHERE key = 'db_version'", &[v.to_string().into()])?;
    Ok(())
}

/// The site id behind an ordinal.
pub fn site_id(c: &SpiClient<'_>, ord: SiteOrd) -> Result<SiteId> {
    let ord32 = i32::try_from(ord).map_err(|_| Error::Corrupt(format!("site ordinal {ord}")))?;
    let bytes = query_opt(c, "SELECT site_id FROM cloudsync.sites WHERE ord = $1", &[ord32.into()], |r| {
        get::<Vec<u8>>(r, 1, "site id")
    })?
    .ok_or_else(|| Error::Corrupt(format!("unknown site ordinal {ord}")))?;
    SiteId::from_slice(&bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

/// This database's site id.
pub fn local_site(c: &SpiClient<'_>) -> Result<SiteId> {
    site_id(c, cloudsync_core::LOCAL_SITE)
}

/// The ordinal of a site id, interned on first sight (the caller holds [`lock`]).
pub fn site_ord(c: &mut SpiClient<'_>, site: &SiteId) -> Result<SiteOrd> {
    let find = |c: &SpiClient<'_>| {
        query_opt(c, "SELECT ord FROM cloudsync.sites WHERE site_id = $1", &[site.as_bytes().to_vec().into()], |r| {
            get::<i32>(r, 1, "site ordinal")
        })
    };
    let ord = match find(c)? {
        Some(o) => o,
        None => {
            exec(
                c,
                "INSERT INTO cloudsync.sites (ord, site_id) SELECT COALESCE(max(ord), 0) + 1, $1 FROM cloudsync.sites",
                &[site.as_bytes().to_vec().into()],
            )?;
            find(c)?.ok_or_else(|| Error::Corrupt("site was not interned".into()))?
        }
    };
    u32::try_from(ord).map_err(|_| Error::Corrupt(format!("negative site ordinal {ord}")))
}

/// A global setting.
pub fn setting(c: &SpiClient<'_>, key: &str) -> Result<Option<String>> {
    query_opt(c, "SELECT value FROM cloudsync.settings WHERE key = $1", &[key.into()], |r| get::<String>(r, 1, key))
}
