//! `cloudsync_set`, `cloudsync_set_table`, `cloudsync_set_column`.
//!
//! Settings are stored in `cloudsync_table_settings` and validated when the key is one
//! the extension understands; other keys are kept as application metadata. A NULL
//! value deletes the key.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use crate::meta::table::SyncTable;
use crate::{meta, Error, Result};

/// Global keys the extension reads.
pub const FRAME_SIZE: &str = "payload_frame_size";
/// zstd level for payloads (0 disables compression).
pub const COMPRESSION: &str = "payload_compression";

fn validate(key: &str, value: &SqlValue) -> Result<()> {
    let int = |lo: i64, hi: i64| match value {
        SqlValue::Null => Ok(()),
        SqlValue::Integer(v) if (lo..=hi).contains(v) => Ok(()),
        _ => Err(Error::arg("cloudsync_set", format!("'{key}' must be an integer in {lo}..={hi}"))),
    };
    match key {
        FRAME_SIZE => int(4096, 64 << 20),
        COMPRESSION => int(0, 19),
        "algo" => Err(Error::arg("cloudsync_set_table", "the algorithm is chosen by cloudsync_init(table, algo); to change it, cloudsync_cleanup the table and init it again")),
        "filter" => Err(Error::arg("cloudsync_set_table", "use cloudsync_set_filter(table, expr) to set a row filter")),
        _ => Ok(()),
    }
}

/// Stores a setting for the database (`table` None), a table, or a column.
pub fn set(conn: &Connection, table: Option<&str>, column: Option<&str>, key: &str, value: SqlValue) -> Result<()> {
    if key.is_empty() {
        return Err(Error::arg("cloudsync_set", "key is empty"));
    }
    validate(key, &value)?;
    meta::ensure(conn)?;
    let (tbl, col) = match table {
        None => (String::new(), String::new()),
        Some(t) => {
            let t = SyncTable::require(conn, t)?;
            let col = match column {
                None => String::new(),
                Some(c) => t
                    .columns
                    .iter()
                    .map(|x| x.name.as_str())
                    .chain(t.pk.iter().map(|k| k.name.as_str()))
                    .find(|n| n.eq_ignore_ascii_case(c))
                    .ok_or_else(|| {
                        Error::arg("cloudsync_set_column", format!("table '{}' has no column '{c}'", t.name))
                    })?
                    .to_string(),
            };
            (t.name, col)
        }
    };
    let value = match value {
        SqlValue::Null => None,
        v => Some(v),
    };
    meta::set_setting(conn, &tbl, &col, key, value)
}

/// A global integer setting, or `default`.
pub fn global_int(conn: &Connection, key: &str, default: i64) -> Result<i64> {
    if !meta::exists(conn)? {
        return Ok(default);
    }
    Ok(match meta::setting(conn, "", "", key)? {
        Some(SqlValue::Integer(v)) => v,
        _ => default,
    })
}
