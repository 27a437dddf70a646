//! Turning tables into synced tables and back: init, cleanup, enable/disable,
//! filters and schema changes.

use cloudsync_core::{Algo, SiteId};
use rusqlite::{params, Connection};

use crate::meta::table::SyncTable;
use crate::schema::{self, check_syncable};
use crate::sql::ident;
use crate::sql::in_savepoint;
use crate::{fold, meta, triggers, Error, Result};

fn no_such_table(name: &str) -> Error {
    Error::Unsupported { table: name.to_string(), why: "no such table in the main database".into() }
}

/// Records every row of `t` that has no clock yet as a local insert (respecting the
/// filter), then folds. Used by init, by a filter change and by re-init.
fn backfill(conn: &Connection, t: &SyncTable) -> Result<()> {
    let keys = t.meta_keys();
    let user_keys: Vec<String> = t.pk.iter().map(|k| format!("u.{}", ident(&k.name))).collect();
    let join = keys.iter().zip(&user_keys).map(|(k, u)| format!("m.{k} = {u}")).collect::<Vec<_>>().join(" AND ");
    let filter = t
        .filter
        .as_ref()
        .map(|f| format!(" AND ({})", crate::filter::qualify(f, &column_names(t), "u")))
        .unwrap_or_default();
    conn.execute_batch(&format!(
        "INSERT INTO {log} (op, {k}) SELECT {op}, {uk} FROM {table} u WHERE NOT EXISTS (SELECT 1 FROM {meta} m WHERE {join}){filter}",
        log = t.log(),
        k = keys.join(", "),
        op = cloudsync_core::local::OP_INSERT,
        uk = user_keys.join(", "),
        table = t.quoted(),
        meta = t.meta(),
    ))?;
    fold::fold_all(conn)?;
    Ok(())
}

fn column_names(t: &SyncTable) -> Vec<String> {
    t.columns.iter().map(|c| c.name.clone()).chain(t.pk.iter().map(|k| k.name.clone())).collect()
}

/// `cloudsync_init(table, algo, flags)`: makes `table` a synced table (idempotent).
pub fn init(conn: &Connection, table: &str, algo: Option<&str>, flags: i64) -> Result<SiteId> {
    in_savepoint(conn, "cloudsync_init", || {
        let shape = schema::read(conn, table)?.ok_or_else(|| no_such_table(table))?;
        let name = shape.name.clone();
        if name.to_ascii_lowercase().starts_with("cloudsync_")
            || name.to_ascii_lowercase().ends_with("_cloudsync")
            || name.to_ascii_lowercase().ends_with("_cloudsync_log")
        {
            return Err(Error::Unsupported { table: name, why: "the name is reserved for cloudsync metadata".into() });
        }
        let algo: Option<Algo> = algo
            .map(|a| {
                a.parse().map_err(|e: cloudsync_core::algo::UnknownAlgo| Error::arg("cloudsync_init", e.to_string()))
            })
            .transpose()?;
        let site = meta::ensure(conn)?;
        if let Some(existing) = SyncTable::load(conn, &name)? {
            if let Some(a) = algo {
                if a != existing.algo {
                    return Err(Error::Unsupported {
                        table: name,
                        why: format!(
                            "it is already synced with algorithm {}; call cloudsync_cleanup first to change it to {a}",
                            existing.algo
                        ),
                    });
                }
            }
            if existing.altering {
                return Err(Error::Unsupported {
                    table: name,
                    why: "an alter is in progress; call cloudsync_commit_alter".into(),
                });
            }
        } else {
            check_syncable(&shape, flags)?;
            for suffix in ["_cloudsync", "_cloudsync_log"] {
                if schema::read(conn, &format!("{name}{suffix}"))?.is_some() {
                    return Err(Error::Unsupported {
                        table: name.clone(),
                        why: format!("a table named '{name}{suffix}' already exists and is not cloudsync's"),
                    });
                }
            }
            conn.execute(
                "INSERT INTO cloudsync_tables (name, algo, flags) VALUES (?1, ?2, ?3)",
                params![name, algo.unwrap_or_default().name(), flags],
            )?;
            crate::meta::cache::invalidate();
        }
        SyncTable::sync_columns(conn, &name, &shape)?;
        let t = SyncTable::require(conn, &name)?;
        triggers::create_tables(conn, &t)?;
        triggers::create_triggers(conn, &t)?;
        backfill(conn, &t)?;
        schema_changed(conn)?;
        Ok(site)
    })
}

/// `cloudsync_cleanup(table)`: removes triggers and metadata of `table`; after the last
/// table, the global metadata (and with it the site id) goes too.
pub fn cleanup(conn: &Connection, table: &str) -> Result<()> {
    in_savepoint(conn, "cloudsync_cleanup", || {
        if !meta::exists(conn)? {
            return Err(Error::NotSynced(table.to_string()));
        }
        let name: String = conn
            .query_row("SELECT name FROM cloudsync_tables WHERE name = ?1 COLLATE NOCASE", [table], |r| r.get(0))
            .map_err(|_| Error::NotSynced(table.to_string()))?;
        // The user table may be gone already (dropped without cleanup): clean up anyway.
        let stub = SyncTable {
            name: name.clone(),
            algo: Algo::Cls,
            enabled: false,
            filter: None,
            flags: 0,
            pk: Vec::new(),
            columns: Vec::new(),
            dropped: Vec::new(),
            mask_words: 1,
            altering: false,
            fingerprint: 0,
            affinities: Default::default(),
        };
        triggers::drop_triggers(conn, &stub)?;
        triggers::drop_tables(conn, &stub)?;
        conn.execute("DELETE FROM cloudsync_tables WHERE name = ?1", [&name])?;
        crate::meta::cache::invalidate();
        conn.execute("DELETE FROM cloudsync_columns WHERE tbl = ?1", [&name])?;
        conn.execute("DELETE FROM cloudsync_table_settings WHERE tbl = ?1", [&name])?;
        if SyncTable::names(conn)?.is_empty() {
            meta::drop_all(conn)?;
        }
        Ok(())
    })
}

/// `cloudsync_enable(table)` / `cloudsync_disable(table)`: persistent. While disabled,
/// local writes are not recorded and will never be sent.
pub fn set_enabled(conn: &Connection, table: &str, enabled: bool) -> Result<()> {
    in_savepoint(conn, "cloudsync_enable", || {
        let t = SyncTable::require(conn, table)?;
        if !enabled {
            // What was written before disabling is still shipped.
            fold::fold_all(conn)?;
        }
        conn.execute("UPDATE cloudsync_tables SET enabled = ?2 WHERE name = ?1", params![t.name, enabled])?;
        crate::meta::cache::invalidate();
        let t = SyncTable::require(conn, table)?;
        triggers::create_triggers(conn, &t)
    })
}

/// `cloudsync_set_filter(table, expr)` / `cloudsync_clear_filter(table)`.
pub fn set_filter(conn: &Connection, table: &str, filter: Option<&str>) -> Result<()> {
    in_savepoint(conn, "cloudsync_filter", || {
        let t = SyncTable::require(conn, table)?;
        if let Some(f) = filter {
            if f.trim().is_empty() {
                return Err(Error::arg("cloudsync_set_filter", "the filter expression is empty"));
            }
            // The expression must compile as one expression over the table's columns.
            let probe = format!("SELECT 1 FROM {} WHERE ({f})", t.quoted());
            conn.prepare(&probe)
                .map_err(|e| Error::arg("cloudsync_set_filter", format!("invalid filter expression: {e}")))?;
        }
        fold::fold_all(conn)?;
        conn.execute("UPDATE cloudsync_tables SET filter = ?2 WHERE name = ?1", params![t.name, filter])?;
        crate::meta::cache::invalidate();
        let t = SyncTable::require(conn, table)?;
        triggers::create_triggers(conn, &t)?;
        // Rows that now match and were never tracked become local inserts.
        backfill(conn, &t)
    })
}

/// `cloudsync_begin_alter(table)`: call inside a transaction, before the DDL.
pub fn begin_alter(conn: &Connection, table: &str) -> Result<()> {
    if conn.is_autocommit() {
        return Err(Error::arg(
            "cloudsync_begin_alter",
            "must run inside a transaction (BEGIN; SELECT cloudsync_begin_alter(..); ALTER TABLE ..; SELECT cloudsync_commit_alter(..); COMMIT)",
        ));
    }
    let t = SyncTable::require(conn, table)?;
    if t.altering {
        return Err(Error::arg("cloudsync_begin_alter", format!("an alter of '{}' is already in progress", t.name)));
    }
    fold::fold_all(conn)?;
    triggers::drop_triggers(conn, &t)?;
    conn.execute("UPDATE cloudsync_tables SET altering = 1 WHERE name = ?1", [&t.name])?;
    crate::meta::cache::invalidate();
    Ok(())
}

/// `cloudsync_commit_alter(table)`: after the DDL. Added columns get new ids, dropped
/// ones are remembered (changes to them from older peers are skipped), triggers are
/// rebuilt. Changing the primary key is refused.
pub fn commit_alter(conn: &Connection, table: &str) -> Result<()> {
    let t = SyncTable::require(conn, table)?;
    if !t.altering {
        return Err(Error::arg(
            "cloudsync_commit_alter",
            format!("no alter of '{}' in progress (call cloudsync_begin_alter first)", t.name),
        ));
    }
    let shape = schema::read(conn, &t.name)?.ok_or_else(|| no_such_table(&t.name))?;
    let new_pk: Vec<String> = shape.pk().iter().map(|c| c.def.name.to_ascii_lowercase()).collect();
    let old_pk: Vec<String> = t.pk.iter().map(|k| k.name.to_ascii_lowercase()).collect();
    if new_pk != old_pk {
        return Err(Error::Unsupported {
            table: t.name,
            why: "the primary key changed; a synced table's key identifies rows on every device and cannot change \
                  (roll back, create a new table and copy the rows)"
                .into(),
        });
    }
    check_syncable(&shape, t.flags)?;
    SyncTable::sync_columns(conn, &t.name, &shape)?;
    conn.execute("UPDATE cloudsync_tables SET altering = 0 WHERE name = ?1", [&t.name])?;
    crate::meta::cache::invalidate();
    let t = SyncTable::require(conn, table)?;
    triggers::create_tables(conn, &t)?;
    triggers::create_triggers(conn, &t)?;
    schema_changed(conn)?;
    Ok(())
}

/// After a local schema change: with the network layer, a device whose downloads
/// skipped what its schema lacked reads everything again (`network::local_schema_changed`).
fn schema_changed(conn: &Connection) -> Result<()> {
    #[cfg(feature = "network")]
    crate::network::local_schema_changed(conn)?;
    #[cfg(not(feature = "network"))]
    let _ = conn;
    Ok(())
}
