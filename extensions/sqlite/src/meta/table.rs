//! A synced table: its registry row, column ids and the names of its metadata tables.

use cloudsync_core::engine::{Affinities, TableInfo};
use cloudsync_core::{Algo, ColId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::schema::{self, Shape};
use crate::sql::ident;
use crate::{Error, Result};

/// Bits per log mask word.
pub const MASK_BITS: u32 = 64;

/// A synced non-key column.
#[derive(Clone, Debug)]
pub struct SyncColumn {
    /// Stable id.
    pub id: ColId,
    /// Current name.
    pub name: String,
    /// DEFAULT expression text, if any.
    pub default_sql: Option<String>,
    /// Declared type.
    pub decl_type: String,
}

/// A key column.
#[derive(Clone, Debug)]
pub struct KeyColumn {
    /// Name.
    pub name: String,
    /// Declared NOT NULL.
    pub not_null: bool,
}

/// Everything the adapter knows about one synced table.
#[derive(Clone, Debug)]
pub struct SyncTable {
    /// Canonical table name.
    pub name: String,
    /// Algorithm.
    pub algo: Algo,
    /// Whether local changes are tracked.
    pub enabled: bool,
    /// Row filter expression over bare column names.
    pub filter: Option<String>,
    /// Init flags.
    pub flags: i64,
    /// Key columns in key order.
    pub pk: Vec<KeyColumn>,
    /// Synced non-key columns (live ones).
    pub columns: Vec<SyncColumn>,
    /// Names of columns dropped by an alter (their changes are skipped, not refused).
    pub dropped: Vec<String>,
    /// Mask words in the log table: at least one (a table whose only columns are its
    /// key still has `m0`), clamped where the table is loaded.
    pub mask_words: u32,
    /// Between `cloudsync_begin_alter` and `cloudsync_commit_alter`.
    pub altering: bool,
    /// Schema fingerprint.
    pub fingerprint: u64,
    /// Type affinity of the key and synced columns (values they would convert are
    /// refused before an apply writes anything).
    pub affinities: Affinities,
}

impl SyncTable {
    /// Every column name a change of this table may carry: the key, the synced
    /// columns and the dropped ones (what the network layer declares to the server).
    #[cfg(feature = "network")]
    pub fn known_columns(&self) -> impl Iterator<Item = &str> {
        (self.pk.iter().map(|k| k.name.as_str()))
            .chain(self.columns.iter().map(|c| c.name.as_str()))
            .chain(self.dropped.iter().map(String::as_str))
    }

    /// Name of the clock table: one row per key.
    pub fn meta(&self) -> String {
        ident(&format!("{}_cloudsync", self.name))
    }

    /// Name of the local change log written by the triggers.
    pub fn log(&self) -> String {
        ident(&format!("{}_cloudsync_log", self.name))
    }

    /// Quoted table name.
    pub fn quoted(&self) -> String {
        ident(&self.name)
    }

    /// Key column names of the metadata tables: `k0, k1, …`.
    pub fn meta_keys(&self) -> Vec<String> {
        (0..self.pk.len()).map(|i| format!("k{i}")).collect()
    }

    /// The core's view.
    pub fn info(&self) -> TableInfo {
        TableInfo {
            name: self.name.clone(),
            algo: self.algo,
            pk_len: self.pk.len(),
            columns: self.columns.iter().map(|c| (c.id, c.name.clone())).collect(),
            fingerprint: self.fingerprint,
            dropped: self.dropped.clone(),
            affinities: self.affinities.clone(),
        }
    }

    /// Column by id.
    pub fn column(&self, id: ColId) -> Option<&SyncColumn> {
        self.columns.iter().find(|c| c.id == id)
    }

    /// Loads a synced table, or `None` if `name` is not synced (cached per connection
    /// while the schema is unchanged, see [`crate::meta::cache`]).
    pub fn load(conn: &Connection, name: &str) -> Result<Option<SyncTable>> {
        crate::meta::cache::table(name, || Self::load_uncached(conn, name))
    }

    fn load_uncached(conn: &Connection, name: &str) -> Result<Option<SyncTable>> {
        if !crate::meta::exists(conn)? {
            return Ok(None);
        }
        type Row = (String, String, bool, Option<String>, i64, i64, bool);
        let row: Option<Row> = conn
            .prepare_cached(
                "SELECT name, algo, enabled, filter, flags, mask_words, altering
                 FROM cloudsync_tables WHERE name = ?1 COLLATE NOCASE",
            )?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
            .optional()?;
        let Some((name, algo, enabled, filter, flags, mask_words, altering)) = row else {
            return Ok(None);
        };
        let algo = algo.parse::<Algo>().map_err(|e| Error::Corrupt(e.to_string()))?;
        let shape = schema::read(conn, &name)?.ok_or_else(|| Error::Unsupported {
            table: name.clone(),
            why: "the table was dropped without cloudsync_cleanup; call cloudsync_cleanup to remove its metadata"
                .into(),
        })?;
        let mut columns = Vec::new();
        let mut affinities = Affinities {
            keys: shape.pk().iter().map(|c| (c.def.name.clone(), c.affinity(shape.strict))).collect(),
            columns: Vec::new(),
        };
        let mut dropped = Vec::new();
        let mut stmt =
            conn.prepare_cached("SELECT id, name, dropped FROM cloudsync_columns WHERE tbl = ?1 ORDER BY id")?;
        let mut rows = stmt.query([&name])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let col_name: String = r.get(1)?;
            if r.get::<_, bool>(2)? {
                dropped.push(col_name);
                continue;
            }
            // During an alter the column may be gone from the table already.
            let Some(c) = shape.values().find(|c| c.def.name.eq_ignore_ascii_case(&col_name)) else { continue };
            let id = ColId::try_from(id).map_err(|_| Error::Corrupt(format!("column id {id}")))?;
            affinities.columns.push((id, c.affinity(shape.strict)));
            columns.push(SyncColumn {
                id,
                name: c.def.name.clone(),
                default_sql: c.default_sql.clone(),
                decl_type: c.def.decl_type.clone(),
            });
        }
        let pk =
            shape.pk().into_iter().map(|c| KeyColumn { name: c.def.name.clone(), not_null: c.def.not_null }).collect();
        let fingerprint = shape.schema().fingerprint(algo);
        Ok(Some(SyncTable {
            name,
            algo,
            enabled,
            filter,
            flags,
            pk,
            columns,
            dropped,
            mask_words: u32::try_from(mask_words).unwrap_or(1).max(1),
            altering,
            fingerprint,
            affinities,
        }))
    }

    /// Loads a synced table or fails with [`Error::NotSynced`].
    pub fn require(conn: &Connection, name: &str) -> Result<SyncTable> {
        SyncTable::load(conn, name)?.ok_or_else(|| Error::NotSynced(name.to_string()))
    }

    /// Names of all synced tables, sorted.
    pub fn names(conn: &Connection) -> Result<Vec<String>> {
        crate::meta::cache::names(|| Self::names_uncached(conn))
    }

    fn names_uncached(conn: &Connection) -> Result<Vec<String>> {
        if !crate::meta::exists(conn)? {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare_cached("SELECT name FROM cloudsync_tables ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    /// Registers new columns of `shape` (ids assigned in declaration order) and marks
    /// missing ones dropped. Returns whether anything changed.
    pub fn sync_columns(conn: &Connection, name: &str, shape: &Shape) -> Result<bool> {
        crate::meta::cache::invalidate();
        let mut changed = false;
        let known: Vec<(i64, String, bool)> = conn
            .prepare("SELECT id, name, dropped FROM cloudsync_columns WHERE tbl = ?1")?
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, col, dropped) in &known {
            let present = shape.values().any(|c| c.def.name.eq_ignore_ascii_case(col));
            if !present && !dropped {
                conn.execute("UPDATE cloudsync_columns SET dropped = 1 WHERE tbl = ?1 AND id = ?2", params![name, id])?;
                changed = true;
            }
        }
        for c in shape.values() {
            let live = known.iter().any(|(_, n, dropped)| !dropped && n.eq_ignore_ascii_case(&c.def.name));
            if live {
                continue;
            }
            let next: i64 =
                conn.query_row("SELECT next_col FROM cloudsync_tables WHERE name = ?1", [name], |r| r.get(0))?;
            conn.execute(
                "INSERT INTO cloudsync_columns (tbl, id, name) VALUES (?1, ?2, ?3)",
                params![name, next, c.def.name],
            )?;
            // A re-added column of a previously dropped name is live again.
            conn.execute(
                "DELETE FROM cloudsync_columns WHERE tbl = ?1 AND dropped = 1 AND name = ?2 COLLATE NOCASE",
                params![name, c.def.name],
            )?;
            let words = u32::try_from(next + 1).unwrap_or(u32::MAX).div_ceil(MASK_BITS).max(1);
            conn.execute(
                "UPDATE cloudsync_tables SET next_col = ?2, mask_words = max(mask_words, ?3) WHERE name = ?1",
                params![name, next + 1, words],
            )?;
            changed = true;
        }
        Ok(changed)
    }
}
