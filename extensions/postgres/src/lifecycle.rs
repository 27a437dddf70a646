//! Making tables synced and back: init, cleanup, enable/disable, filters, alters.

use cloudsync_core::{Algo, SiteId};
use pgrx::pg_sys::Oid;
use pgrx::spi::SpiClient;

use crate::error::{Error, Result};
use crate::sql::{exec, get, query_opt};
use crate::table::{Shape, SyncTable};
use crate::{fold, meta, triggers};

/// The oid of the relation `name` names (schema-qualified or found on the search
/// path), if any.
fn to_regclass(c: &SpiClient<'_>, name: &str) -> Result<Option<Oid>> {
    Ok(query_opt(c, "SELECT pg_catalog.to_regclass($1)::oid", &[name.into()], |r| Ok(r.get::<Oid>(1)?))?.flatten())
}

/// The oid of a table named by `name` (schema-qualified or found on the search path).
pub fn regclass(c: &SpiClient<'_>, name: &str) -> Result<Oid> {
    to_regclass(c, name)?.ok_or_else(|| Error::NoSuchTable(name.to_string()))
}

/// A synced table named by its sync name, or by a table name that resolves to one.
pub fn resolve(c: &SpiClient<'_>, name: &str) -> Result<SyncTable> {
    if let Some(t) = SyncTable::load(c, name)? {
        return Ok(t);
    }
    let sync_name = match to_regclass(c, name)? {
        Some(relid) => SyncTable::name_of(c, relid)?,
        None => None,
    };
    match sync_name {
        Some(sync_name) => SyncTable::require(c, &sync_name),
        None => Err(Error::NotSynced(name.to_string())),
    }
}

fn check_sync_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("invalid sync name '{name}': 1 to 255 bytes, no control characters")));
    }
    Ok(())
}

/// `cloudsync_init(table, algo, flags, sync_name)`: makes a table synced (idempotent).
pub fn init(
    c: &mut SpiClient<'_>,
    table: &str,
    algo: Option<&str>,
    flags: i32,
    sync_name: Option<&str>,
) -> Result<SiteId> {
    let relid = regclass(c, table)?;
    let shape = Shape::read(c, relid)?.ok_or_else(|| Error::NoSuchTable(table.to_string()))?;
    let algo: Option<Algo> = algo
        .map(|a| a.parse().map_err(|e: cloudsync_core::algo::UnknownAlgo| Error::Invalid(e.to_string())))
        .transpose()?;
    let name = match SyncTable::name_of(c, relid)? {
        Some(existing) => {
            if let Some(wanted) = sync_name.filter(|w| *w != existing) {
                return Err(Error::Invalid(format!(
                    "table {} is already synced under the sync name '{existing}', not '{wanted}'; call \
                     cloudsync_cleanup first to change it",
                    shape.display()
                )));
            }
            let t = SyncTable::require(c, &existing)?;
            if let Some(a) = algo.filter(|a| *a != t.algo) {
                return Err(Error::Invalid(format!(
                    "table {} is already synced with algorithm {}; call cloudsync_cleanup first to change it to {a}",
                    t.display, t.algo
                )));
            }
            if t.altering {
                return Err(Error::State(format!(
                    "an alter of table {} is in progress; call cloudsync_commit_alter",
                    t.display
                )));
            }
            existing
        }
        None => {
            shape.check_syncable(flags)?;
            let name = sync_name.unwrap_or(&shape.relname).to_string();
            check_sync_name(&name)?;
            if let Some(other) = SyncTable::load(c, &name)? {
                return Err(Error::Invalid(format!(
                    "the sync name '{name}' is already used by table {}; give this table another one: \
                     cloudsync_init('{}', '{}', {flags}, 'another_name')",
                    other.display,
                    shape.display(),
                    algo.unwrap_or_default()
                )));
            }
            let pk: Vec<String> = shape.pk().iter().map(|k| k.name.clone()).collect();
            exec(
                c,
                "INSERT INTO cloudsync.tables (name, relid, algo, flags, pk) VALUES ($1, $2::oid::regclass, $3, $4, $5)",
                &[name.clone().into(), relid.into(), algo.unwrap_or_default().name().into(), flags.into(), pk.into()],
            )?;
            name
        }
    };
    let id = query_opt(c, "SELECT id FROM cloudsync.tables WHERE name = $1", &[name.clone().into()], |r| {
        get::<i32>(r, 1, "id")
    })?
    .ok_or_else(|| Error::Corrupt("table registry".into()))?;
    SyncTable::sync_columns(c, id, &shape)?;
    let t = SyncTable::require(c, &name)?;
    triggers::create_tables(c, &t)?;
    triggers::create_triggers(c, &t)?;
    triggers::backfill(c, &t)?;
    fold::fold_all(c)?;
    meta::local_site(c)
}

/// `cloudsync_cleanup(table)`: removes the triggers and metadata of a synced table.
pub fn cleanup(c: &mut SpiClient<'_>, table: &str) -> Result<()> {
    let t = resolve(c, table)?;
    triggers::drop_all(c, &t)?;
    exec(c, "DELETE FROM cloudsync.tables WHERE id = $1", &[t.id.into()])?;
    exec(c, "DELETE FROM cloudsync.table_settings WHERE tbl = $1", &[t.name.into()])?;
    Ok(())
}

/// `cloudsync_enable` / `cloudsync_disable`.
pub fn set_enabled(c: &mut SpiClient<'_>, table: &str, enabled: bool) -> Result<()> {
    let t = resolve(c, table)?;
    if t.enabled == enabled {
        return Ok(());
    }
    if !enabled {
        // What was written while enabled is still tracked.
        fold::fold_all(c)?;
    }
    exec(c, "UPDATE cloudsync.tables SET enabled = $2 WHERE id = $1", &[t.id.into(), enabled.into()])?;
    let t = SyncTable::require(c, &t.name)?;
    triggers::create_triggers(c, &t)
}

/// `cloudsync_set_filter(table, expr)` / `cloudsync_clear_filter(table)`.
pub fn set_filter(c: &mut SpiClient<'_>, table: &str, filter: Option<&str>) -> Result<()> {
    let t = resolve(c, table)?;
    if let Some(f) = filter {
        if f.trim().is_empty() {
            return Err(Error::Invalid("the filter expression is empty".into()));
        }
        if f.contains(';') || f.contains("$cs$") {
            return Err(Error::Invalid("a filter is one boolean expression over the table's columns (no ';')".into()));
        }
    }
    fold::fold_all(c)?;
    exec(
        c,
        "UPDATE cloudsync.tables SET filter = $2 WHERE id = $1",
        &[t.id.into(), filter.map(str::to_string).into()],
    )?;
    let t = SyncTable::require(c, &t.name)?;
    if let Some(f) = &t.filter {
        // The expression must be one boolean expression over the table's columns: planning
        // it here turns a mistake into an error now rather than at the next write.
        exec(c, &format!("EXPLAIN SELECT 1 FROM {} WHERE ({f})", t.rel), &[])?;
    }
    triggers::create_triggers(c, &t)?;
    // Rows that now match and were never tracked become local inserts.
    triggers::backfill(c, &t)
}

/// `cloudsync_begin_alter(table)`: before the DDL, in the same transaction.
pub fn begin_alter(c: &mut SpiClient<'_>, table: &str) -> Result<()> {
    let t = resolve(c, table)?;
    if t.altering {
        return Err(Error::State(format!("an alter of table {} is already in progress", t.display)));
    }
    fold::fold_all(c)?;
    // The functions stay (owned by the role that ran cloudsync_init, see
    // triggers::create_triggers); without triggers nothing calls them.
    triggers::drop_triggers_keeping(c, &t, true)?;
    exec(c, "UPDATE cloudsync.tables SET altering = true WHERE id = $1", &[t.id.into()])?;
    Ok(())
}

/// `cloudsync_commit_alter(table)`: after the DDL. Added columns get new ids, dropped
/// ones are remembered (changes to them from older replicas are skipped), triggers are
/// rebuilt. Changing the primary key is refused.
pub fn commit_alter(c: &mut SpiClient<'_>, table: &str) -> Result<()> {
    let t = resolve(c, table)?;
    if !t.altering {
        return Err(Error::State(format!(
            "no alter of table {} is in progress (call cloudsync_begin_alter first)",
            t.display
        )));
    }
    adopt_schema(c, &t)
}

/// After an `ALTER TABLE` of a synced table outside a begin/commit bracket (an ORM's
/// migration, psql): called by the extension's `ddl_command_end` event trigger. New
/// columns are synced, dropped ones remembered, the triggers rebuilt for the table's
/// new shape and name; an alter that changes the primary key is refused, which rolls
/// the `ALTER TABLE` back.
pub fn after_alter(c: &mut SpiClient<'_>, relid: Oid) -> Result<()> {
    let Some(name) = SyncTable::name_of(c, relid)? else { return Ok(()) };
    let t = SyncTable::require(c, &name)?;
    if t.altering {
        // Inside cloudsync_begin_alter … cloudsync_commit_alter: the commit does it.
        return Ok(());
    }
    adopt_schema(c, &t)
}

/// Makes the metadata and triggers of `t` follow its current shape.
fn adopt_schema(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    let shape = Shape::read(c, t.relid)?.ok_or_else(|| Error::NoSuchTable(t.display.clone()))?;
    let new_pk: Vec<String> = shape.pk().iter().map(|k| k.name.clone()).collect();
    let new_types: Vec<String> = shape.pk().iter().map(|k| k.sql_type.clone()).collect();
    // The key as it was at init: its names in the registry, its types in the clock table.
    let (old_pk, old_types) = query_opt(
        c,
        "SELECT t.pk, ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
           WHERE a.attrelid = pg_catalog.to_regclass($2) AND a.attname ~ '^k[0-9]+$' \
           ORDER BY substr(a.attname, 2)::int) FROM cloudsync.tables t WHERE t.id = $1",
        &[t.id.into(), t.clock().into()],
        |r| Ok((get::<Vec<String>>(r, 1, "key")?, get::<Vec<String>>(r, 2, "key types")?)),
    )?
    .ok_or_else(|| Error::Corrupt("table registry".into()))?;
    if new_pk != old_pk || new_types != old_types {
        return Err(Error::Unsupported(format!(
            "the primary key of table {} changed; a synced table's key identifies rows on every replica and cannot \
             change (roll back, create a new table and copy the rows)",
            t.display
        )));
    }
    shape.check_syncable(t.flags)?;
    SyncTable::sync_columns(c, t.id, &shape)?;
    exec(c, "UPDATE cloudsync.tables SET altering = false WHERE id = $1", &[t.id.into()])?;
    let t = SyncTable::require(c, &t.name)?;
    triggers::create_tables(c, &t)?;
    triggers::create_triggers(c, &t)?;
    Ok(())
}
