//! Reading a table's shape from SQLite, and deciding whether it can sync.

use cloudsync_core::schema::{Affinity, ColumnDef, TableSchema};
use rusqlite::{Connection, OptionalExtension};

use crate::{Error, Result};

/// `cloudsync_init` flag: allow a single INTEGER primary key.
pub const FLAG_ALLOW_INTEGER_PK: i64 = 1;
/// `cloudsync_init` flag: allow NOT NULL columns without a DEFAULT.
pub const FLAG_ALLOW_NOT_NULL_WITHOUT_DEFAULT: i64 = 2;

/// A column as SQLite reports it, with what the adapter needs beyond the core's view.
#[derive(Clone, Debug)]
pub struct Column {
    /// The core's view.
    pub def: ColumnDef,
    /// The DEFAULT expression text, if any.
    pub default_sql: Option<String>,
}

/// A user table's shape.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Canonical name (as stored in `sqlite_master`).
    pub name: String,
    /// Ordinary (not generated, not hidden) columns in declaration order.
    pub columns: Vec<Column>,
    /// A STRICT table (its `ANY` columns convert nothing).
    pub strict: bool,
}

impl Shape {
    /// The core's view of the table.
    pub fn schema(&self) -> TableSchema {
        TableSchema { name: self.name.clone(), columns: self.columns.iter().map(|c| c.def.clone()).collect() }
    }

    /// Key columns in key order.
    pub fn pk(&self) -> Vec<&Column> {
        let mut pk: Vec<&Column> = self.columns.iter().filter(|c| c.def.pk > 0).collect();
        pk.sort_by_key(|c| c.def.pk);
        pk
    }

    /// Non-key columns in declaration order.
    pub fn values(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.def.pk == 0)
    }
}

/// Reads the shape of table `name` in the main schema (name matched like SQL does,
/// case-insensitively). `None` if there is no such ordinary table.
pub fn read(conn: &Connection, name: &str) -> Result<Option<Shape>> {
    let found: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT name, sql FROM main.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((canonical, sql)) = found else { return Ok(None) };
    if sql.as_deref().is_some_and(|s| s.trim_start().to_ascii_uppercase().starts_with("CREATE VIRTUAL")) {
        return Err(Error::Unsupported { table: canonical, why: "virtual tables cannot be synced".into() });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid",
    )?;
    let mut columns = Vec::new();
    let mut rows = stmt.query([&canonical])?;
    while let Some(r) = rows.next()? {
        let hidden: i64 = r.get(5)?;
        if hidden != 0 {
            // Generated columns are computed locally on every replica; not synced.
            continue;
        }
        let pk: i64 = r.get(4)?;
        let default_sql: Option<String> = r.get(3)?;
        columns.push(Column {
            def: ColumnDef {
                name: r.get(0)?,
                decl_type: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                pk: u32::try_from(pk).unwrap_or(0),
                not_null: r.get::<_, i64>(2)? != 0,
                has_default: default_sql.is_some(),
            },
            default_sql,
        });
    }
    // `pragma_table_list` exists from SQLite 3.37; older versions have no STRICT tables.
    let strict = conn
        .prepare_cached("SELECT strict FROM pragma_table_list WHERE schema = 'main' AND name = ?1")
        .and_then(|mut s| s.query_row([&canonical], |r| r.get::<_, bool>(0)).optional())
        .ok()
        .flatten()
        .unwrap_or(false);
    Ok(Some(Shape { name: canonical, columns, strict }))
}

impl Column {
    /// The column's type affinity in its table ([`Affinity::of`], except that `ANY` in a
    /// STRICT table converts nothing).
    pub fn affinity(&self, strict: bool) -> Affinity {
        if strict && self.def.decl_type.trim().eq_ignore_ascii_case("ANY") {
            Affinity::Blob
        } else {
            Affinity::of(&self.def.decl_type)
        }
    }
}

/// Refuses what cannot sync safely, with a message that says what to do instead.
pub fn check_syncable(shape: &Shape, flags: i64) -> Result<()> {
    let fail = |why: String| Err(Error::Unsupported { table: shape.name.clone(), why });
    let pk = shape.pk();
    if pk.is_empty() {
        return fail(
            "it has no PRIMARY KEY. Rows are identified across devices by their primary key; \
             add one that is unique across devices, e.g. `id TEXT PRIMARY KEY NOT NULL DEFAULT (cloudsync_uuid())`"
                .into(),
        );
    }
    if pk.len() == 1 && Affinity::of(&pk[0].def.decl_type) == Affinity::Integer && flags & FLAG_ALLOW_INTEGER_PK == 0 {
        return fail(format!(
            "its primary key '{}' is a single INTEGER column. Integer keys assigned on each device collide \
             when devices sync; use a TEXT key with cloudsync_uuid(), or pass flag 1 to cloudsync_init if keys \
             are globally unique",
            pk[0].def.name
        ));
    }
    if flags & FLAG_ALLOW_NOT_NULL_WITHOUT_DEFAULT == 0 {
        if let Some(c) = shape.values().find(|c| c.def.not_null && !c.def.has_default) {
            return fail(format!(
                "column '{}' is NOT NULL without a DEFAULT. A row can arrive from another device before all its \
                 columns do, so every NOT NULL column needs a DEFAULT (or pass flag 2 to cloudsync_init if every \
                 insert sets it)",
                c.def.name
            ));
        }
    }
    for c in &shape.columns {
        if c.def.name.contains('\0') {
            return fail("a column name contains a NUL character".into());
        }
    }
    Ok(())
}
