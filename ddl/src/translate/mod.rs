//! SQLite schema → PostgreSQL schema, faithfully or not at all.
//!
//! Every choice here serves one goal: a row written on a SQLite device and synced
//! through Postgres Sync reads back the same on every replica, and PostgreSQL enforces
//! the same rules the device did. What cannot meet it is refused with a [`Refusal`]
//! naming the table, the column and the construct (`docs/translate-ddl.md` lists them).
//!
//! One file, over 500 lines: statements, types, keys, foreign keys and indexes of the
//! translation, which refer to each other; expressions and refusals are in their own
//! files.

use std::collections::{BTreeMap, BTreeSet};

use super::{Column, ColumnConstraint, ForeignKey, Index, IndexedTerm, Statement, Table, TableConstraint, Tok};
use cloudsync_core::schema::Affinity;

use crate::lex::ident;

pub use crate::refusal::{Omit, OmitError, OmitKind, Reason, Refusal, TranslateError};

mod expr;
#[cfg(test)]
mod tests;

/// The collation `COLLATE NOCASE` becomes: ICU, case-insensitive, accent-sensitive.
pub const NOCASE_COLLATION: &str = "cloudsync_nocase";

/// The domain a column without a type (or `ANY` in a `STRICT` table) becomes: `jsonb`
/// holding each value as its SQLite class — an integer as a JSON number without a
/// fraction, a real as one with a fraction (`{"real": "Infinity"}` for infinities),
/// text as a JSON string, a blob as `{"blob": "<hex>"}` — so every value reads back
/// as the class it was written with (Postgres Sync converts both ways).
pub const ANY_DOMAIN: &str = "cloudsync_any";

/// The domain's definition (after `CREATE DOMAIN <name> AS`).
const ANY_DOMAIN_DEFINITION: &str = "jsonb CHECK (jsonb_typeof(VALUE) IN ('number', 'string') \
    OR (jsonb_typeof(VALUE) = 'object' AND (VALUE - 'blob' - 'real') = '{}'::jsonb \
        AND ((VALUE ? 'blob') <> (VALUE ? 'real')) \
        AND jsonb_typeof(coalesce(VALUE -> 'blob', VALUE -> 'real')) = 'string'))";

/// The function `CAST(blob AS TEXT)` becomes: the bytes read as UTF-8 text, as SQLite
/// reads them (PostgreSQL's own cast gives their hex escape). Declared `IMMUTABLE`, which
/// `convert_from` is not only because the database encoding could change its result;
/// UTF-8 is fixed here, so index expressions may use it.
pub const UTF8_FUNCTION: &str = "cloudsync_utf8";

/// PostgreSQL truncates identifiers longer than this many bytes.
const MAX_IDENT_BYTES: usize = 63;

/// A table as the translation creates (or extends) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslatedTable {
    /// Name as declared.
    pub name: String,
    /// Primary-key columns, in key order.
    pub key: Vec<String>,
    /// The key is SQLite's rowid alias (`INTEGER PRIMARY KEY`, maybe `AUTOINCREMENT`):
    /// devices assign it, so syncing it needs globally unique values (`cloudsync_init`
    /// flag 1). PostgreSQL gets no sequence for it: its ids would collide with devices'.
    pub rowid_key: bool,
    /// Why the table cannot be synced although it translates: a table without a
    /// primary key is identified by SQLite's rowid, local to each database.
    pub unsynced: Option<String>,
    /// Whether the table already existed (only columns were added).
    pub existing: bool,
    /// Columns added to an existing table.
    pub added_columns: Vec<String>,
}

/// The PostgreSQL statements for a SQLite schema, in the order to run them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// Statements, each complete, without a trailing `;`.
    pub statements: Vec<String>,
    /// The tables created or extended, in declaration order.
    pub tables: Vec<TranslatedTable>,
    /// What the translation did that a reader of the SQL would not expect, each with
    /// why: a temporary table left out, an index renamed, a reference SQLite itself
    /// cannot enforce left out.
    pub notes: Vec<String>,
}

impl Translation {
    /// The statements as one script.
    pub fn script(&self) -> String {
        self.statements.iter().map(|s| format!("{s};\n")).collect()
    }
}

/// Tables that already exist in the target database (name → columns), so that a
/// schema posted again adds columns instead of failing on `CREATE TABLE`.
pub type Existing = BTreeMap<String, Vec<String>>;

/// Where the translated tables go: a schema for all (None: unqualified names, found
/// on the `search_path`), and per-table overrides (table name → schema); and what the
/// user chose to leave out ([`Omit`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Schema of every table not in `tables`, and of the NOCASE collation.
    pub schema: Option<String>,
    /// Schema per table (names compared case-insensitively, as SQLite does).
    pub tables: BTreeMap<String, String>,
    /// Constructs without a faithful translation to leave out instead of refusing the
    /// schema, each noted in [`Translation::notes`].
    pub omit: Vec<Omit>,
}

/// Translates SQLite `CREATE TABLE`/`CREATE INDEX` statements to PostgreSQL.
pub fn translate(sql: &str) -> Result<Translation, TranslateError> {
    translate_against(sql, &Existing::new())
}

/// [`translate`], for a database that already has `existing` tables: a table declared
/// again, or altered with `ALTER TABLE … ADD COLUMN`, gets `ALTER TABLE … ADD COLUMN`
/// for its new columns (other changes are refused, `guard::added_columns`); an index
/// declared again is created `IF NOT EXISTS`.
pub fn translate_against(sql: &str, existing: &Existing) -> Result<Translation, TranslateError> {
    translate_into(sql, existing, &Target::default())
}

/// [`translate_against`], with every table name qualified by its schema in `target`.
pub fn translate_into(sql: &str, existing: &Existing, target: &Target) -> Result<Translation, TranslateError> {
    let stmts = super::parse(sql)?;
    // What a tenant may not run at all, whatever the backend (`guard`): listed after
    // the translator's own refusals, unless those already name the same column.
    let guarded = super::guard::check(&stmts);
    let mut tr = Translator {
        tables: Vec::new(),
        existing: existing.clone(),
        target: target.clone(),
        refusals: Vec::new(),
        notes: Vec::new(),
        temp: Vec::new(),
        unique_indexes: Vec::new(),
        needs_utf8: false,
        needs_any: false,
        omits_used: BTreeSet::new(),
    };
    let mut indexes = Vec::new();
    for s in stmts {
        match s {
            // Per connection, never shared: nothing to create centrally or to sync.
            Statement::Table(t) if t.temp => {
                tr.notes.push(format!(
                    "table \"{}\": CREATE TEMP TABLE is left out (a temporary table lives in one connection; \
                     nothing of it is stored or synced)",
                    t.name
                ));
                tr.temp.push(t.name);
            }
            Statement::Table(t) => {
                if tr.tables.iter().any(|x| x.name.eq_ignore_ascii_case(&t.name)) {
                    if !t.if_not_exists {
                        tr.refuse(Reason::Duplicate, &t.name, None, "CREATE TABLE", "the table is defined twice");
                    }
                    continue;
                }
                tr.tables.push(t);
            }
            Statement::Index(i) => indexes.push(i),
            // As the table declared (again) with one more column.
            Statement::AddColumn { table, column } => {
                if let Some(t) = tr.tables.iter_mut().find(|x| x.name.eq_ignore_ascii_case(&table)) {
                    if !t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(&column.name)) {
                        t.columns.push(column);
                    }
                } else if let Some((name, have)) = existing.iter().find(|(n, _)| n.eq_ignore_ascii_case(&table)) {
                    tr.tables.push(crate::guard::with_column(name, have, &column));
                } else {
                    tr.refuse(
                        Reason::SchemaChange,
                        &table,
                        Some(&column.name),
                        "ALTER TABLE",
                        "no such table: create it (a CREATE TABLE with the column) instead",
                    );
                }
            }
        }
    }
    if tr.tables.is_empty() && indexes.iter().all(|i| tr.temp.iter().any(|t| t.eq_ignore_ascii_case(&i.table))) {
        return Err(TranslateError::Empty);
    }
    let mut out = Translation::default();
    let nocase = tr.tables.iter().any(uses_nocase) || indexes.iter().any(|i| i.terms.iter().any(term_nocase));
    if nocase {
        out.statements.push(format!(
            "CREATE COLLATION IF NOT EXISTS {} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
            tr.qualified_collation()
        ));
    }
    // A UNIQUE index on plain columns is a parent key for SQLite's foreign keys, as
    // for PostgreSQL's (which is why the foreign keys are added after the indexes).
    tr.unique_indexes = indexes
        .iter()
        .filter(|i| i.unique && i.predicate.is_none() && i.terms.iter().all(|t| t.name.is_some()))
        .map(|i| (i.table.clone(), i.terms.iter().filter_map(|t| t.name.clone()).collect()))
        .collect();
    let mut foreign_keys = Vec::new();
    for t in tr.tables.clone() {
        let old = existing.iter().find(|(n, _)| n.eq_ignore_ascii_case(&t.name));
        let done = match old {
            Some((name, cols)) => tr.extend_table(&t, name, cols, &mut out.statements),
            None => tr.create_table(&t, &mut out.statements, &mut foreign_keys),
        };
        if let Some(done) = done {
            out.tables.push(done);
        }
    }
    for i in &indexes {
        if tr.temp.iter().any(|t| t.eq_ignore_ascii_case(&i.table)) {
            tr.notes.push(format!("index \"{}\": on a temporary table, left out with it", i.name));
            continue;
        }
        if let Some(s) = tr.index(i) {
            out.statements.push(s);
        }
    }
    out.statements.extend(foreign_keys);
    if tr.needs_any {
        // First: tables use it. PostgreSQL has no CREATE DOMAIN IF NOT EXISTS.
        out.statements.insert(
            0,
            format!(
                "DO $cloudsync$ BEGIN CREATE DOMAIN {} AS {ANY_DOMAIN_DEFINITION}; \
                 EXCEPTION WHEN duplicate_object THEN NULL; END $cloudsync$",
                tr.qualified_domain()
            ),
        );
    }
    if tr.needs_utf8 {
        // Before the first statement that uses it (the domain or collation may come first).
        let at = out.statements.iter().position(|s| s.starts_with("CREATE TABLE")).unwrap_or(0);
        out.statements.insert(
            at,
            format!(
                "CREATE OR REPLACE FUNCTION {}(bytea) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE \
                 AS $cloudsync$SELECT pg_catalog.convert_from($1, 'UTF8')$cloudsync$",
                tr.qualified_utf8()
            ),
        );
    }
    for (i, o) in tr.target.omit.iter().enumerate() {
        if !tr.omits_used.contains(&i) {
            tr.notes.push(format!("omit \"{o}\": nothing of it needed leaving out"));
        }
    }
    out.notes = std::mem::take(&mut tr.notes);
    for g in guarded {
        if !tr.refusals.iter().any(|r| r.table == g.table && r.column == g.column) {
            tr.refusals.push(g);
        }
    }
    if tr.refusals.is_empty() {
        Ok(out)
    } else {
        Err(TranslateError::Refused(tr.refusals))
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn uses_nocase(t: &Table) -> bool {
    t.columns.iter().any(|c| {
        c.constraints
            .iter()
            .any(|k| matches!(&k.item, ColumnConstraint::Collate(n) if n.eq_ignore_ascii_case("NOCASE")))
    }) || t.constraints.iter().any(|c| match &c.item {
        TableConstraint::PrimaryKey { columns, .. } | TableConstraint::Unique { columns, .. } => {
            columns.iter().any(term_nocase)
        }
        _ => false,
    })
}

fn term_nocase(t: &IndexedTerm) -> bool {
    t.collate.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("NOCASE"))
}

/// The PostgreSQL type of a column, by what SQLite stores in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PgType {
    Bigint,
    Double,
    Text,
    Bytea,
    Boolean,
    Numeric,
    /// No type: the [`ANY_DOMAIN`] (qualified by the target schema where used).
    Any,
}

impl PgType {
    fn sql(self) -> &'static str {
        match self {
            PgType::Any => ANY_DOMAIN,
            PgType::Bigint => "bigint",
            PgType::Double => "double precision",
            PgType::Text => "text",
            PgType::Bytea => "bytea",
            PgType::Boolean => "boolean",
            PgType::Numeric => "numeric",
        }
    }
}

fn first_word(decl: &str) -> String {
    decl.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("").to_ascii_uppercase()
}

/// `None`: typeless (or `ANY`), which no single PostgreSQL type can hold.
fn pg_type(decl: &str) -> Option<PgType> {
    let word = first_word(decl);
    if decl.trim().is_empty() || word == "ANY" {
        return None;
    }
    Some(match word.as_str() {
        "BOOL" | "BOOLEAN" => PgType::Boolean,
        // NUMERIC affinity, but applications keep their own spelling of these.
        "DATE" | "DATETIME" | "TIMESTAMP" | "TIMESTAMPTZ" | "TIME" => PgType::Text,
        _ => match Affinity::of(decl) {
            Affinity::Integer => PgType::Bigint,
            Affinity::Text => PgType::Text,
            Affinity::Blob => PgType::Bytea,
            Affinity::Real => PgType::Double,
            // Decimals: exact in PostgreSQL; SQLite turns the decimal text it receives
            // back into the INTEGER or REAL it would have stored.
            Affinity::Numeric if matches!(word.as_str(), "NUMERIC" | "DECIMAL" | "NUMBER" | "MONEY") => PgType::Numeric,
            // Other NUMERIC-affinity names (UUID, JSON, custom names) hold text in
            // practice; numeric-looking text comes back as the number SQLite made of it.
            Affinity::Numeric => PgType::Text,
        },
    })
}

struct Translator {
    tables: Vec<Table>,
    existing: Existing,
    target: Target,
    refusals: Vec<Refusal>,
    notes: Vec<String>,
    /// Temporary tables left out.
    temp: Vec<String>,
    /// `(table, columns)` of each UNIQUE index on plain columns declared in the SQL.
    unique_indexes: Vec<(String, Vec<String>)>,
    /// Whether an expression reads a blob as text ([`UTF8_FUNCTION`]).
    needs_utf8: bool,
    /// Whether a column created is of the [`ANY_DOMAIN`].
    needs_any: bool,
    /// Which of `target.omit` left something out.
    omits_used: BTreeSet<usize>,
}

/// What an expression is translated for: its table's columns and their types.
struct Scope<'a> {
    table: &'a Table,
    column: Option<&'a str>,
}

impl Translator {
    /// A table's name as statements use it: qualified by its target schema.
    fn qualified(&self, table: &str) -> String {
        let schema = self.target.tables.iter().find(|(t, _)| t.eq_ignore_ascii_case(table)).map(|(_, s)| s);
        match schema.or(self.target.schema.as_ref()) {
            Some(s) => format!("{}.{}", ident(s), ident(table)),
            None => ident(table),
        }
    }

    fn qualified_utf8(&self) -> String {
        match &self.target.schema {
            Some(s) => format!("{}.{}", ident(s), ident(UTF8_FUNCTION)),
            None => ident(UTF8_FUNCTION),
        }
    }

    fn qualified_domain(&self) -> String {
        match &self.target.schema {
            Some(s) => format!("{}.{}", ident(s), ident(ANY_DOMAIN)),
            None => ident(ANY_DOMAIN),
        }
    }

    /// A column type as a statement spells it.
    fn type_sql(&self, ty: PgType) -> String {
        match ty {
            PgType::Any => self.qualified_domain(),
            other => other.sql().to_string(),
        }
    }

    fn qualified_collation(&self) -> String {
        match &self.target.schema {
            Some(s) => format!("{}.{}", ident(s), ident(NOCASE_COLLATION)),
            None => ident(NOCASE_COLLATION),
        }
    }

    fn refuse(&mut self, reason: Reason, table: &str, column: Option<&str>, construct: &str, detail: &str) {
        self.refusals.push(Refusal {
            reason,
            table: table.to_string(),
            column: column.map(str::to_string),
            construct: construct.to_string(),
            detail: detail.to_string(),
            omit: None,
        });
    }

    /// Translates, with `f`, a construct of `table` (its `column`'s, or the table's own
    /// with None) that `kind` may leave out. When `f` refuses it and the user chose to
    /// leave it out, it is left out and noted, and None returned; otherwise each of
    /// its refusals names that choice.
    fn omittable<T>(
        &mut self,
        table: &str,
        column: Option<&str>,
        kind: OmitKind,
        f: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let before = self.refusals.len();
        let out = f(self);
        if self.refusals.len() == before {
            return out;
        }
        let choice = Omit { table: table.to_string(), column: column.map(str::to_string), kind };
        if let Some(i) = self.target.omit.iter().position(|o| o.names(table, column, kind)) {
            self.omits_used.insert(i);
            for r in self.refusals.drain(before..).collect::<Vec<_>>() {
                self.notes.push(format!("omit \"{choice}\": {} left out, as asked ({})", r.construct, r.detail));
            }
            return None;
        }
        for r in &mut self.refusals[before..] {
            r.omit = Some(choice.clone());
        }
        out
    }

    fn check_ident(&mut self, table: &str, column: Option<&str>, name: &str) {
        if name.len() > MAX_IDENT_BYTES {
            self.refuse(
                Reason::LongIdentifier,
                table,
                column,
                name,
                "PostgreSQL truncates identifiers to 63 bytes; shorten the name",
            );
        }
    }

    /// An index's name as PostgreSQL can hold it: one over 63 bytes is cut and given
    /// a hash of the whole name (an index name is local to the database: nothing
    /// syncs or refers to it), and the rename noted.
    fn index_name(&mut self, name: &str) -> String {
        if name.len() <= MAX_IDENT_BYTES {
            return name.to_string();
        }
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        let mut cut = MAX_IDENT_BYTES - 9;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let short = format!("{}_{hash:08x}", &name[..cut]);
        self.notes.push(format!("index \"{name}\": renamed \"{short}\" (PostgreSQL names are at most 63 bytes)"));
        short
    }

    /// A column's PostgreSQL type: [`column_pg_type`], except that a column without a
    /// type referencing a typed key (`valueID REFERENCES values(valueID)`) takes the
    /// key's type: only values equal to a key satisfy the reference (SQLite compares
    /// them with the key's affinity), and PostgreSQL needs the two types alike.
    fn typed(&self, t: &Table, c: &Column) -> Option<PgType> {
        let own = column_pg_type(t, c)?;
        if own != PgType::Any {
            return Some(own);
        }
        let is = |n: &String| n.eq_ignore_ascii_case(&c.name);
        let references = c
            .constraints
            .iter()
            .filter_map(|k| match &k.item {
                ColumnConstraint::References(fk) => Some((fk, 0)),
                _ => None,
            })
            .chain(t.constraints.iter().filter_map(|k| match &k.item {
                TableConstraint::ForeignKey { columns, references } => {
                    columns.iter().position(is).map(|at| (references, at))
                }
                _ => None,
            }));
        for (fk, at) in references {
            let Some(parent) = self.table_named(&fk.table) else { continue };
            let key = if fk.columns.is_empty() { parent.primary_key() } else { fk.columns.clone() };
            let parent_type = key
                .get(at)
                .and_then(|k| parent.columns.iter().find(|pc| pc.name.eq_ignore_ascii_case(k)))
                .and_then(|pc| column_pg_type(parent, pc));
            if let Some(ty) = parent_type.filter(|ty| *ty != PgType::Any) {
                return Some(ty);
            }
        }
        Some(PgType::Any)
    }

    fn column_type(&self, table: &Table, name: &str) -> Option<PgType> {
        table.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)).and_then(|c| self.typed(table, c))
    }

    fn table_named(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    fn create_table(&mut self, t: &Table, out: &mut Vec<String>, fks: &mut Vec<String>) -> Option<TranslatedTable> {
        let before = self.refusals.len();
        self.check_ident(&t.name, None, &t.name);
        let key = t.primary_key();
        let mut seen = BTreeSet::new();
        let mut lines = Vec::new();
        for c in &t.columns {
            if !seen.insert(c.name.to_ascii_lowercase()) {
                self.refuse(Reason::Duplicate, &t.name, Some(&c.name), "column", "the column is declared twice");
            }
            if let Some(line) = self.column(t, c, fks) {
                lines.push(line);
            }
        }
        for c in &t.constraints {
            match &c.item {
                TableConstraint::PrimaryKey { columns, on_conflict } => {
                    self.on_conflict(t, None, on_conflict.as_deref(), "PRIMARY KEY");
                    let cols = self.term_names(t, columns);
                    lines.push(format!("PRIMARY KEY ({cols})"));
                }
                TableConstraint::Unique { columns, on_conflict } => {
                    self.on_conflict(t, None, on_conflict.as_deref(), "UNIQUE");
                    let cols = self.term_names(t, columns);
                    lines.push(format!("UNIQUE ({cols})"));
                }
                TableConstraint::Check(expr) => {
                    let check = self.omittable(&t.name, None, OmitKind::Check, |me| {
                        me.expr(&Scope { table: t, column: None }, expr)
                    });
                    if let Some(e) = check {
                        lines.push(format!("CHECK ({e})"));
                    }
                }
                TableConstraint::ForeignKey { columns, references } => {
                    if let Some(fk) = self.foreign_key(t, columns, references) {
                        fks.push(fk);
                    }
                }
            }
        }
        // The column-level key becomes a table constraint, in key order.
        if !t.constraints.iter().any(|c| matches!(c.item, TableConstraint::PrimaryKey { .. })) && !key.is_empty() {
            let cols: Vec<String> = key.iter().map(|k| ident(k)).collect();
            lines.insert(t.columns.len().min(lines.len()), format!("PRIMARY KEY ({})", cols.join(", ")));
        }
        if self.refusals.len() > before {
            return None;
        }
        out.push(format!(
            "CREATE TABLE {}{} (\n    {}\n)",
            if t.if_not_exists { "IF NOT EXISTS " } else { "" },
            self.qualified(&t.name),
            lines.join(",\n    ")
        ));
        Some(TranslatedTable {
            name: t.name.clone(),
            rowid_key: rowid_key(t).is_some(),
            unsynced: key
                .is_empty()
                .then(|| "no primary key: SQLite identifies its rows by a rowid local to each database".to_string()),
            key,
            existing: false,
            added_columns: Vec::new(),
        })
    }

    /// A table that exists already: `ADD COLUMN` for each new column.
    fn extend_table(
        &mut self,
        t: &Table,
        name: &str,
        have: &[String],
        out: &mut Vec<String>,
    ) -> Option<TranslatedTable> {
        let before = self.refusals.len();
        let mut added = Vec::new();
        let mut fks = Vec::new();
        let (columns, refused) = crate::guard::added_columns(t, name, have);
        self.refusals.extend(refused);
        for c in columns {
            if let Some(line) = self.column(t, c, &mut fks) {
                out.push(format!("ALTER TABLE {} ADD COLUMN {line}", self.qualified(name)));
                added.push(c.name.clone());
            }
        }
        out.extend(fks);
        if self.refusals.len() > before {
            return None;
        }
        Some(TranslatedTable {
            name: name.to_string(),
            key: t.primary_key(),
            rowid_key: rowid_key(t).is_some(),
            unsynced: None,
            existing: true,
            added_columns: added,
        })
    }

    /// An `ON CONFLICT` clause: only those that refuse (`ABORT`, `FAIL`, `ROLLBACK`)
    /// translate; the others may be left out ([`OmitKind::OnConflict`]), the constraint
    /// kept.
    fn on_conflict(&mut self, t: &Table, column: Option<&str>, clause: Option<&str>, on: &str) {
        let Some(c) = clause else { return };
        if matches!(c, "ABORT" | "FAIL" | "ROLLBACK") {
            return;
        }
        self.omittable(&t.name, column, OmitKind::OnConflict, |me| {
            me.refuse(
                Reason::OnConflict,
                &t.name,
                column,
                &format!("{on} ON CONFLICT {c}"),
                "PostgreSQL constraints only refuse; resolve the conflict in the application",
            );
            Some(())
        });
    }

    fn term_names(&mut self, t: &Table, terms: &[IndexedTerm]) -> String {
        terms
            .iter()
            .map(|term| match &term.name {
                Some(n) => ident(&canonical_column(t, n)),
                None => {
                    self.refuse(Reason::Operator, &t.name, None, "expression in a key", "keys must be columns");
                    String::new()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A column definition (without its key, which becomes a table constraint).
    fn column(&mut self, t: &Table, c: &Column, fks: &mut Vec<String>) -> Option<String> {
        self.check_ident(&t.name, Some(&c.name), &c.name);
        let ty = self.typed(t, c)?;
        self.needs_any |= ty == PgType::Any;
        let mut s = format!("{} {}", ident(&c.name), self.type_sql(ty));
        let scope = Scope { table: t, column: Some(&c.name) };
        for k in &c.constraints {
            match &k.item {
                ColumnConstraint::PrimaryKey { on_conflict, .. } => {
                    self.on_conflict(t, Some(&c.name), on_conflict.as_deref(), "PRIMARY KEY");
                }
                ColumnConstraint::NotNull { on_conflict } => {
                    self.on_conflict(t, Some(&c.name), on_conflict.as_deref(), "NOT NULL");
                    s.push_str(" NOT NULL");
                }
                ColumnConstraint::Null => {}
                ColumnConstraint::Unique { on_conflict } => {
                    self.on_conflict(t, Some(&c.name), on_conflict.as_deref(), "UNIQUE");
                    s.push_str(" UNIQUE");
                }
                ColumnConstraint::Check(expr) => {
                    if let Some(e) = self.omittable(&t.name, Some(&c.name), OmitKind::Check, |me| me.expr(&scope, expr))
                    {
                        s.push_str(&format!(" CHECK ({e})"));
                    }
                }
                ColumnConstraint::Default(expr) => {
                    let default =
                        self.omittable(&t.name, Some(&c.name), OmitKind::Default, |me| me.default(t, c, ty, expr));
                    if let Some(d) = default {
                        s.push_str(&format!(" DEFAULT {d}"));
                    }
                }
                ColumnConstraint::Collate(name) => {
                    let collation = self.omittable(&t.name, Some(&c.name), OmitKind::Collate, |me| {
                        me.collation(&t.name, Some(&c.name), name, ty)
                    });
                    if let Some(coll) = collation {
                        s.push_str(&coll);
                    }
                }
                ColumnConstraint::References(fk) => {
                    if let Some(fk) = self.foreign_key(t, std::slice::from_ref(&c.name), fk) {
                        fks.push(fk);
                    }
                }
                ColumnConstraint::Generated { expr, .. } => {
                    // PostgreSQL 15 has only stored generated columns; neither kind syncs.
                    if let Some(e) = self.expr(&scope, expr) {
                        s.push_str(&format!(" GENERATED ALWAYS AS ({e}) STORED"));
                    }
                }
            }
        }
        Some(s)
    }

    fn collation(&mut self, table: &str, column: Option<&str>, name: &str, ty: PgType) -> Option<String> {
        match name.to_ascii_uppercase().as_str() {
            "BINARY" => Some(String::new()),
            "NOCASE" if ty == PgType::Text => Some(format!(" COLLATE {}", self.qualified_collation())),
            "NOCASE" if ty == PgType::Any => {
                self.refuse(
                    Reason::Collation,
                    table,
                    column,
                    &format!("COLLATE {name}"),
                    "a column without a type is stored as JSON in PostgreSQL, which NOCASE cannot compare; \
                     declare it TEXT",
                );
                None
            }
            "NOCASE" => Some(String::new()),
            _ => {
                self.refuse(
                    Reason::Collation,
                    table,
                    column,
                    &format!("COLLATE {name}"),
                    "only BINARY and NOCASE have PostgreSQL equivalents",
                );
                None
            }
        }
    }

    fn foreign_key(&mut self, t: &Table, columns: &[String], fk: &ForeignKey) -> Option<String> {
        let construct = format!("REFERENCES {}", fk.table);
        let Some(target) = self.table_named(&fk.table).cloned() else {
            if let Some(name) = self.existing.keys().find(|k| k.eq_ignore_ascii_case(&fk.table)).cloned() {
                // A table created earlier: PostgreSQL checks the referenced key.
                let targets = if fk.columns.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", fk.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "))
                };
                return Some(self.foreign_key_sql(t, columns, &name, &targets, fk));
            }
            // SQLite refuses every write to this table while it enforces foreign keys
            // (the parent table does not exist): an application using this schema
            // runs with them off, so nothing is enforced centrally either.
            self.notes.push(format!(
                "table \"{}\": {construct} ({}) is left out: the referenced table is not declared, so SQLite \
                 cannot enforce it either (writes fail while foreign keys are on)",
                t.name,
                columns.join(", ")
            ));
            return None;
        };
        let target_cols: Vec<String> = if fk.columns.is_empty() { target.primary_key() } else { fk.columns.clone() };
        let same = |a: &[String], b: &[String]| {
            a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
        };
        let unique_sets: Vec<Vec<String>> = std::iter::once(target.primary_key())
            .chain(target.constraints.iter().filter_map(|c| match &c.item {
                TableConstraint::Unique { columns, .. } => {
                    Some(columns.iter().filter_map(|t| t.name.clone()).collect())
                }
                _ => None,
            }))
            .chain(
                target
                    .columns
                    .iter()
                    .filter(|c| c.constraints.iter().any(|k| matches!(k.item, ColumnConstraint::Unique { .. })))
                    .map(|c| vec![c.name.clone()]),
            )
            .chain(
                self.unique_indexes
                    .iter()
                    .filter(|(table, _)| table.eq_ignore_ascii_case(&target.name))
                    .map(|(_, cols)| cols.clone()),
            )
            .collect();
        if target_cols.len() != columns.len() || !unique_sets.iter().any(|u| same(u, &target_cols)) {
            self.refuse(
                Reason::ForeignKeyTarget,
                &t.name,
                columns.first().map(String::as_str),
                &construct,
                "the referenced columns are not the referenced table's primary key or a UNIQUE constraint",
            );
            return None;
        }
        let targets = format!(
            " ({})",
            target_cols.iter().map(|c| ident(&canonical_column(&target, c))).collect::<Vec<_>>().join(", ")
        );
        Some(self.foreign_key_sql(t, columns, &target.name, &targets, fk))
    }

    fn foreign_key_sql(&self, t: &Table, columns: &[String], target: &str, targets: &str, fk: &ForeignKey) -> String {
        let mut s = format!(
            "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {}{targets}",
            self.qualified(&t.name),
            columns.iter().map(|c| ident(&canonical_column(t, c))).collect::<Vec<_>>().join(", "),
            self.qualified(target),
        );
        for (on, action) in [("DELETE", &fk.on_delete), ("UPDATE", &fk.on_update)] {
            if let Some(a) = action {
                s.push_str(&format!(" ON {on} {a}"));
            }
        }
        // Payloads list rows in feed order, not parents first: checked at commit.
        s.push_str(" DEFERRABLE INITIALLY DEFERRED");
        s
    }

    fn index(&mut self, i: &Index) -> Option<String> {
        let name = self.index_name(&i.name);
        let table = self.table_named(&i.table).cloned();
        let Some(table) = table else {
            let index_name = name;
            if let Some(name) = self.existing.keys().find(|k| k.eq_ignore_ascii_case(&i.table)).cloned() {
                // An index on a table created earlier: PostgreSQL checks the columns.
                let terms = i
                    .terms
                    .iter()
                    .map(|t| t.name.as_deref().map(ident).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ");
                if i.terms.iter().any(|t| t.name.is_none() || t.collate.is_some()) || i.predicate.is_some() {
                    self.refuse(
                        Reason::SchemaChange,
                        &name,
                        None,
                        &format!("INDEX {}", i.name),
                        "an index added to an existing table may list columns only; declare the table in the same SQL",
                    );
                    return None;
                }
                return Some(format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {} ({terms})",
                    if i.unique { "UNIQUE " } else { "" },
                    ident(&index_name),
                    self.qualified(&name)
                ));
            }
            self.refuse(
                Reason::UnknownTable,
                &i.table,
                None,
                &format!("INDEX {}", i.name),
                "the indexed table is neither declared in this SQL nor in the database",
            );
            return None;
        };
        let scope = Scope { table: &table, column: None };
        let mut terms = Vec::new();
        for term in &i.terms {
            let mut s = match &term.name {
                Some(n) => ident(&canonical_column(&table, n)),
                None => format!("({})", self.expr(&scope, &term.expr)?),
            };
            if let Some(c) = &term.collate {
                let ty = term.name.as_deref().and_then(|n| self.column_type(&table, n)).unwrap_or(PgType::Text);
                s.push_str(&self.collation(&table.name, term.name.as_deref(), c, ty)?);
            }
            if term.desc {
                s.push_str(" DESC");
            }
            terms.push(s);
        }
        let mut s = format!(
            "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
            if i.unique { "UNIQUE " } else { "" },
            ident(&name),
            self.qualified(&table.name),
            terms.join(", ")
        );
        if let Some(p) = &i.predicate {
            s.push_str(&format!(" WHERE {}", self.expr(&scope, p)?));
        }
        Some(s)
    }
}

/// A column's type in its table: [`PgType::Any`] without a type (or `ANY` in a
/// `STRICT` table). Always `Some` (an `Option` for the callers that look a name up).
fn column_pg_type(t: &Table, c: &Column) -> Option<PgType> {
    if t.strict {
        return Some(match first_word(&c.decl_type).as_str() {
            "INT" | "INTEGER" => PgType::Bigint,
            "REAL" => PgType::Double,
            "TEXT" => PgType::Text,
            "BLOB" => PgType::Bytea,
            _ => PgType::Any,
        });
    }
    Some(pg_type(&c.decl_type).unwrap_or(PgType::Any))
}

/// The rowid-alias key column, if the table has one.
fn rowid_key(t: &Table) -> Option<&Column> {
    if t.without_rowid {
        return None;
    }
    let key = t.primary_key();
    let [k] = key.as_slice() else { return None };
    let col = t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(k))?;
    // Only the exact type name INTEGER aliases the rowid (not INT, not BIGINT).
    let desc_column_key =
        col.constraints.iter().any(|c| matches!(c.item, ColumnConstraint::PrimaryKey { desc: true, .. }));
    (col.decl_type.eq_ignore_ascii_case("INTEGER") && !desc_column_key).then_some(col)
}

/// The column's name as declared (SQLite names are case-insensitive).
fn canonical_column(t: &Table, name: &str) -> String {
    t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)).map_or_else(|| name.to_string(), |c| c.name.clone())
}
