//! `cloudsync_set`, `cloudsync_set_table`, `cloudsync_set_column`.
//!
//! Settings are stored in `cloudsync_table_settings` and validated when the key is one
//! the extension understands; other keys are kept as application metadata. A NULL
//! value deletes the key.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use crate::meta::table::SyncTable;
use crate::{meta, Error, Result};

fn validate(key: &str, value: &SqlValue) -> Result<()> {
    if let Some(range) = cloudsync_core::settings::int_range(key) {
        return match value {
            SqlValue::Null => Ok(()),
            SqlValue::Integer(v) if range.contains(v) => Ok(()),
            _ => Err(Error::arg(
                "cloudsync_set",
                format!("'{key}' must be an integer in {}..={}", range.start(), range.end()),
            )),
        };
    }
    match key {
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
pub fn global_int(conn: &Connection, key: &str) -> Result<Option<i64>> {
    if !meta::exists(conn)? {
        return Ok(None);
    }
    Ok(match meta::setting(conn, "", "", key)? {
        Some(SqlValue::Integer(v)) => Some(v),
        _ => None,
    })
}
