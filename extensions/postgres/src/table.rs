//! Synced tables: the registry row, the columns with their type mapping, and the
//! names of the per-table metadata tables.
//!
//! A synced table has a **sync name**: the bare name devices use in payloads. It is
//! the table's own name unless `cloudsync_init` was given another one, and it is
//! unique in the database, so `public.todos` and `archive.todos` can both be synced
//! only if one of them is given a distinct sync name. The registry holds the table as
//! a `regclass`, so renaming the table or moving it to another schema keeps it synced
//! under the same sync name.
//!
//! Per table `N` (the registry id) the extension keeps, in schema `cloudsync`:
//! `tN_clock` (one row per key ever seen: key columns, causal length, latest position,
//! packed clock) and `tN_log` (local writes recorded by the statement triggers, folded
//! into clocks before anything reads or merges them).

use cloudsync_core::engine::TableInfo;
use cloudsync_core::schema::{ColumnDef, TableSchema};
use cloudsync_core::{Algo, ColId};
use pgrx::pg_sys::Oid;
use pgrx::spi::SpiClient;

use crate::error::{Error, Result};
use crate::sql::{exec, get, ident, query, query_opt};
use crate::types::{Kind, TypeFacts};

/// Bits per log mask word.
pub const MASK_BITS: u32 = 63;

/// Init flag: allow a single integer primary key (keys must then be globally unique).
pub const FLAG_ALLOW_INTEGER_PK: i32 = 1;
/// Init flag: allow NOT NULL columns without DEFAULT.
pub const FLAG_ALLOW_NOT_NULL_WITHOUT_DEFAULT: i32 = 2;

/// A column of a synced table, with its type mapping.
#[derive(Clone, Debug)]
pub struct Column {
    /// Name.
    pub name: String,
    /// `format_type` of the column (the type casts use, domains included).
    pub sql_type: String,
    /// Mapping.
    pub kind: Kind,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// DEFAULT expression, if any.
    pub default: Option<String>,
    /// 1-based position in the primary key, 0 otherwise.
    pub pk: u32,
    /// Why the type cannot be synced, when it cannot.
    pub refused: Option<String>,
}

/// A synced non-key column.
#[derive(Clone, Debug)]
pub struct SyncColumn {
    /// Stable id.
    pub id: ColId,
    /// The column.
    pub col: Column,
}

/// Everything the extension knows about a synced table.
#[derive(Clone, Debug)]
pub struct SyncTable {
    /// Registry id (names the metadata tables).
    pub id: i32,
    /// Sync name (what devices call it).
    pub name: String,
    /// The table's oid.
    pub relid: Oid,
    /// Quoted, schema-qualified name.
    pub rel: String,
    /// `schema.table` for messages.
    pub display: String,
    /// Algorithm.
    pub algo: Algo,
    /// Whether local writes are tracked.
    pub enabled: bool,
    /// Row filter over bare column names.
    pub filter: Option<String>,
    /// Init flags.
    pub flags: i32,
    /// Key columns in key order.
    pub pk: Vec<Column>,
    /// Live synced columns.
    pub columns: Vec<SyncColumn>,
    /// Dropped column names.
    pub dropped: Vec<String>,
    /// Mask words in the log table: at least one (a table whose only columns are its
    /// key still has `m0`), clamped where the table is loaded.
    pub mask_words: u32,
    /// Between begin_alter and commit_alter.
    pub altering: bool,
    /// Schema fingerprint.
    pub fingerprint: u64,
}

/// Where a table is and what it looks like in the catalog.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Schema.
    pub schema: String,
    /// Table name.
    pub relname: String,
    /// `pg_class.relkind`.
    pub relkind: String,
    /// Columns in attribute order (generated columns excluded).
    pub columns: Vec<Column>,
}

impl Shape {
    /// Key columns in key order.
    pub fn pk(&self) -> Vec<&Column> {
        let mut pk: Vec<&Column> = self.columns.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        pk
    }

    /// `schema.table`, quoted.
    pub fn rel(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.relname))
    }

    /// `schema.table` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.relname)
    }

    /// Reads a table's shape by oid.
    pub fn read(c: &SpiClient<'_>, relid: Oid) -> Result<Option<Shape>> {
        let Some((schema, relname, relkind)) = query_opt(
            c,
            "SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[relid.into()],
            |r| Ok((get::<String>(r, 1, "schema")?, get::<String>(r, 2, "name")?, get::<String>(r, 3, "relkind")?)),
        )?
        else {
            return Ok(None);
        };
        let columns = query(
            c,
            "SELECT a.attname::text, a.attnotnull, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, bt.typname::text, \
                    bt.typcategory::text, pg_catalog.format_type(et.oid, NULL), et.typname::text, a.attndims, \
                    pg_catalog.pg_get_expr(d.adbin, d.adrelid), \
                    COALESCE((SELECT k.n FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(att, n) WHERE k.att = a.attnum), 0)::int4, \
                    a.attidentity::text, \
                    (SELECT pg_catalog.array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
                       FROM pg_catalog.pg_enum e WHERE e.enumtypid = bt.oid), \
                    CASE WHEN t.typtype = 'd' THEN t.typname::text END \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
             LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A' \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[relid.into()],
            |r| {
                let facts = TypeFacts {
                    typname: get::<String>(r, 5, "type name")?,
                    sql: get::<String>(r, 3, "type")?,
                    typmod: get::<i32>(r, 4, "typmod")?,
                    category: get::<String>(r, 6, "type category")?,
                    element: r.get::<String>(7)?,
                    element_name: r.get::<String>(8)?,
                    ndims: get::<i32>(r, 9, "dimensions")?,
                    labels: r.get::<Vec<String>>(13)?,
                    domain: r.get::<String>(14)?,
                };
                let (kind, refused) = match Kind::of(&facts) {
                    Ok(k) => (k, None),
                    Err(why) => (Kind::Other, Some(why)),
                };
                let identity = get::<String>(r, 12, "identity")?;
                let default = r.get::<String>(10)?.or_else(|| (!identity.is_empty()).then(|| "identity".to_string()));
                Ok(Column {
                    name: get::<String>(r, 1, "column name")?,
                    sql_type: facts.sql,
                    kind,
                    not_null: get::<bool>(r, 2, "not null")?,
                    default,
                    pk: u32::try_from(get::<i32>(r, 11, "key position")?).unwrap_or(0),
                    refused,
                })
            },
        )?;
        Ok(Some(Shape { schema, relname, relkind, columns }))
    }

    /// The core's view of this shape, for the fingerprint.
    pub fn schema(&self, name: &str) -> TableSchema {
        TableSchema {
            name: name.to_string(),
            columns: self
                .columns
                .iter()
                .map(|c| ColumnDef {
                    name: c.name.clone(),
                    decl_type: c.sql_type.clone(),
                    pk: c.pk,
                    not_null: c.not_null,
                    has_default: c.default.is_some(),
                })
                .collect(),
        }
    }

    /// Refuses shapes that cannot be synced, with the reason.
    pub fn check_syncable(&self, flags: i32) -> Result<()> {
        let fail = |why: String| Err(Error::Unsupported(format!("table {} cannot be synced: {why}", self.display())));
        match self.relkind.as_str() {
            "r" => {}
            "p" => {
                return fail(
                    "partitioned tables are not supported yet; sync each partition's parent as a plain table".into(),
                )
            }
            "v" | "m" => return fail("it is a view".into()),
            "f" => return fail("it is a foreign table".into()),
            _ => return fail("it is not a table".into()),
        }
        let pk = self.pk();
        if pk.is_empty() {
            return fail(
                "it has no PRIMARY KEY. Rows are identified across devices by their primary key; add one that \
                 is unique across devices, e.g. `id uuid PRIMARY KEY DEFAULT gen_random_uuid()`"
                    .into(),
            );
        }
        for k in &pk {
            if let Some(why) = &k.refused {
                return fail(format!("primary key column \"{}\": {why}", k.name));
            }
            if !k.kind.allowed_in_key() {
                return fail(format!(
                    "primary key column \"{}\" has type {}; key columns must be integer, text, varchar, uuid or bytea \
                     (their values are identical on every replica)",
                    k.name, k.sql_type
                ));
            }
        }
        if pk.len() == 1 && matches!(pk[0].kind, Kind::Int { .. }) && flags & FLAG_ALLOW_INTEGER_PK == 0 {
            return fail(format!(
                "its primary key \"{}\" is a single integer column. Integer keys assigned on each replica collide \
                 when replicas sync; use a uuid or text key, or pass flag 1 to cloudsync_init if keys are globally unique",
                pk[0].name
            ));
        }
        for col in self.columns.iter().filter(|c| c.pk == 0) {
            if let Some(why) = &col.refused {
                return fail(format!("column \"{}\": {why}", col.name));
            }
            if flags & FLAG_ALLOW_NOT_NULL_WITHOUT_DEFAULT == 0 && col.not_null && col.default.is_none() {
                return fail(format!(
                    "column \"{}\" is NOT NULL without a DEFAULT. A row can arrive from another replica before all \
                     its columns do, so every NOT NULL column needs a DEFAULT (or pass flag 2 to cloudsync_init if \
                     every insert sets it)",
                    col.name
                ));
            }
        }
        Ok(())
    }
}

impl SyncTable {
    /// The clock table.
    pub fn clock(&self) -> String {
        format!("cloudsync.{}", ident(&format!("t{}_clock", self.id)))
    }

    /// The local write log.
    pub fn log(&self) -> String {
        format!("cloudsync.{}", ident(&format!("t{}_log", self.id)))
    }

    /// Names of the key columns in the metadata tables (`k0`, `k1`, …).
    pub fn meta_keys(&self) -> Vec<String> {
        (0..self.pk.len()).map(|i| format!("k{i}")).collect()
    }

    /// A live column by id.
    pub fn column(&self, id: ColId) -> Option<&SyncColumn> {
        self.columns.iter().find(|c| c.id == id)
    }

    /// The core's view of the table.
    pub fn info(&self) -> TableInfo {
        TableInfo {
            name: self.name.clone(),
            algo: self.algo,
            pk_len: self.pk.len(),
            columns: self.columns.iter().map(|c| (c.id, c.col.name.clone())).collect(),
            fingerprint: self.fingerprint,
            dropped: self.dropped.clone(),
            // PostgreSQL checks values exactly itself (`types`).
            affinities: Default::default(),
        }
    }

    /// Sync names of every synced table, by registry id.
    pub fn names(c: &SpiClient<'_>) -> Result<Vec<String>> {
        query(c, "SELECT name FROM cloudsync.tables ORDER BY id", &[], |r| get::<String>(r, 1, "name"))
    }

    /// Loads a synced table by sync name.
    pub fn load(c: &SpiClient<'_>, name: &str) -> Result<Option<SyncTable>> {
        type Row = (i32, String, Oid, String, bool, Option<String>, i32, i32, bool);
        let row: Option<Row> = query_opt(
            c,
            "SELECT id, name, relid::oid, algo, enabled, filter, flags, mask_words, altering \
             FROM cloudsync.tables WHERE name = $1",
            &[name.into()],
            |r| {
                Ok((
                    get::<i32>(r, 1, "id")?,
                    get::<String>(r, 2, "name")?,
                    get::<Oid>(r, 3, "relid")?,
                    get::<String>(r, 4, "algo")?,
                    get::<bool>(r, 5, "enabled")?,
                    r.get::<String>(6)?,
                    get::<i32>(r, 7, "flags")?,
                    get::<i32>(r, 8, "mask_words")?,
                    get::<bool>(r, 9, "altering")?,
                ))
            },
        )?;
        let Some((id, name, relid, algo, enabled, filter, flags, mask_words, altering)) = row else {
            return Ok(None);
        };
        let algo: Algo = algo.parse().map_err(|_| Error::Corrupt(format!("unknown algorithm '{algo}'")))?;
        let shape =
            Shape::read(c, relid)?.ok_or_else(|| Error::Corrupt(format!("synced table '{name}' no longer exists")))?;
        let known: Vec<(i32, String, bool)> = query(
            c,
            "SELECT id, name, dropped FROM cloudsync.columns WHERE tbl = $1 ORDER BY id",
            &[id.into()],
            |r| Ok((get::<i32>(r, 1, "id")?, get::<String>(r, 2, "name")?, get::<bool>(r, 3, "dropped")?)),
        )?;
        let mut columns = Vec::new();
        let mut dropped = Vec::new();
        for (cid, cname, is_dropped) in known {
            if is_dropped {
                dropped.push(cname);
                continue;
            }
            // A column dropped without an alter window reads as dropped too.
            match shape.columns.iter().find(|c| c.name == cname && c.pk == 0) {
                Some(col) => columns.push(SyncColumn {
                    id: ColId::try_from(cid).map_err(|_| Error::Corrupt("negative column id".into()))?,
                    col: col.clone(),
                }),
                None => dropped.push(cname),
            }
        }
        let fingerprint = shape.schema(&name).fingerprint(algo);
        Ok(Some(SyncTable {
            id,
            name,
            relid,
            rel: shape.rel(),
            display: shape.display(),
            algo,
            enabled,
            filter,
            flags,
            pk: shape.pk().into_iter().cloned().collect(),
            columns,
            dropped,
            mask_words: u32::try_from(mask_words).unwrap_or(1).max(1),
            altering,
            fingerprint,
        }))
    }

    /// Loads a synced table by sync name, or fails with [`Error::NotSynced`].
    pub fn require(c: &SpiClient<'_>, name: &str) -> Result<SyncTable> {
        SyncTable::load(c, name)?.ok_or_else(|| Error::NotSynced(name.to_string()))
    }

    /// Every synced table.
    pub fn all(c: &SpiClient<'_>) -> Result<Vec<SyncTable>> {
        SyncTable::names(c)?.iter().map(|n| SyncTable::require(c, n)).collect()
    }

    /// The sync name of a synced table by oid.
    pub fn name_of(c: &SpiClient<'_>, relid: Oid) -> Result<Option<String>> {
        query_opt(c, "SELECT name FROM cloudsync.tables WHERE relid = $1::oid::regclass", &[relid.into()], |r| {
            get::<String>(r, 1, "name")
        })
    }

    /// Assigns ids to new columns and marks vanished ones dropped. Returns whether
    /// anything changed.
    pub fn sync_columns(c: &mut SpiClient<'_>, id: i32, shape: &Shape) -> Result<bool> {
        let known: Vec<(i32, String, bool)> =
            query(c, "SELECT id, name, dropped FROM cloudsync.columns WHERE tbl = $1", &[id.into()], |r| {
                Ok((get::<i32>(r, 1, "id")?, get::<String>(r, 2, "name")?, get::<bool>(r, 3, "dropped")?))
            })?;
        let values: Vec<&Column> = shape.columns.iter().filter(|c| c.pk == 0).collect();
        let mut changed = false;
        for (cid, name, dropped) in &known {
            if !dropped && !values.iter().any(|c| &c.name == name) {
                exec(
                    c,
                    "UPDATE cloudsync.columns SET dropped = true WHERE tbl = $1 AND id = $2",
                    &[id.into(), (*cid).into()],
                )?;
                changed = true;
            }
        }
        for col in values {
            if known.iter().any(|(_, n, dropped)| !dropped && *n == col.name) {
                continue;
            }
            exec(
                c,
                "DELETE FROM cloudsync.columns WHERE tbl = $1 AND dropped AND name = $2",
                &[id.into(), col.name.clone().into()],
            )?;
            exec(
                c,
                "WITH n AS (UPDATE cloudsync.tables SET next_col = next_col + 1, \
                   mask_words = GREATEST(mask_words, (next_col + 1 + 62) / 63) WHERE id = $1 RETURNING next_col - 1 AS col) \
                 INSERT INTO cloudsync.columns (tbl, id, name) SELECT $1, col, $2 FROM n",
                &[id.into(), col.name.clone().into()],
            )?;
            changed = true;
        }
        Ok(changed)
    }
}
