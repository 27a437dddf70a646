//! SQLite schema → PostgreSQL schema, faithfully or not at all.
//!
//! Every choice here serves one goal: a row written on a SQLite device and synced
//! through Postgres Sync reads back the same on every replica, and PostgreSQL enforces
//! the same rules the device did. What cannot meet it is refused with a [`Refusal`]
//! naming the table, the column and the construct (`docs/translate-ddl.md` lists them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Column, ColumnConstraint, ForeignKey, Index, IndexedTerm, Statement, Table, TableConstraint, Tok};
use crate::schema::Affinity;

/// The collation `COLLATE NOCASE` becomes: ICU, case-insensitive, accent-sensitive.
pub const NOCASE_COLLATION: &str = "cloudsync_nocase";

/// PostgreSQL truncates identifiers longer than this many bytes.
const MAX_IDENT_BYTES: usize = 63;

/// Why a construct cannot be translated. The codes are stable and documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// `CREATE TEMP TABLE`: a temporary table is not part of a schema to sync.
    TempTable,
    /// A column without a declared type holds any class of value; PostgreSQL needs one.
    TypelessColumn,
    /// `ANY` in a `STRICT` table: same as a typeless column.
    AnyColumn,
    /// `ON CONFLICT REPLACE`/`IGNORE`: PostgreSQL constraints cannot resolve conflicts.
    OnConflict,
    /// A collation other than `BINARY` and `NOCASE`.
    Collation,
    /// A function without a faithful PostgreSQL equivalent.
    Function,
    /// An operator or keyword without a faithful PostgreSQL equivalent.
    Operator,
    /// A `DEFAULT` that is not a constant or a known time expression, or does not fit
    /// the column's type.
    Default,
    /// An identifier PostgreSQL would truncate (over 63 bytes).
    LongIdentifier,
    /// A foreign key whose target PostgreSQL cannot accept (unknown table, or columns
    /// that are not that table's key or a unique constraint).
    ForeignKeyTarget,
    /// An index on a table neither declared in the SQL nor existing in the database.
    UnknownTable,
    /// A table defined twice without `IF NOT EXISTS`, or a column twice.
    Duplicate,
    /// A change to an existing table other than adding columns.
    SchemaChange,
}

impl Reason {
    /// The stable code (`docs/translate-ddl.md`).
    pub fn code(self) -> &'static str {
        match self {
            Reason::TempTable => "temp-table",
            Reason::TypelessColumn => "typeless-column",
            Reason::AnyColumn => "any-column",
            Reason::OnConflict => "on-conflict",
            Reason::Collation => "collation",
            Reason::Function => "function",
            Reason::Operator => "operator",
            Reason::Default => "default",
            Reason::LongIdentifier => "long-identifier",
            Reason::ForeignKeyTarget => "foreign-key-target",
            Reason::UnknownTable => "unknown-table",
            Reason::Duplicate => "duplicate",
            Reason::SchemaChange => "schema-change",
        }
    }
}

/// One construct the translator refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The table (or index) it is in.
    pub table: String,
    /// The column, when it is about one.
    pub column: Option<String>,
    /// The construct, as SQLite spelled it.
    pub construct: String,
    /// What it would take, in a sentence.
    pub detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] table \"{}\"", self.reason.code(), self.table)?;
        if let Some(c) = &self.column {
            write!(f, ", column \"{c}\"")?;
        }
        write!(f, ": {}: {}", self.construct, self.detail)
    }
}

/// Why a schema could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The SQL does not parse.
    #[error(transparent)]
    Syntax(#[from] super::DdlError),
    /// The SQL parses but declares nothing to translate.
    #[error("the SQL creates no table")]
    Empty,
    /// Constructs without a faithful translation (all of them, not just the first).
    #[error("{} construct(s) cannot be translated faithfully:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<Refusal>),
}

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
/// on the `search_path`), and per-table overrides (table name → schema).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Schema of every table not in `tables`, and of the NOCASE collation.
    pub schema: Option<String>,
    /// Schema per table (names compared case-insensitively, as SQLite does).
    pub tables: BTreeMap<String, String>,
}

/// Translates SQLite `CREATE TABLE`/`CREATE INDEX` statements to PostgreSQL.
pub fn translate(sql: &str) -> Result<Translation, TranslateError> {
    translate_against(sql, &Existing::new())
}

/// [`translate`], for a database that already has `existing` tables: a table declared
/// again gets `ALTER TABLE … ADD COLUMN` for its new columns (other changes are
/// refused); an index declared again is created `IF NOT EXISTS`.
pub fn translate_against(sql: &str, existing: &Existing) -> Result<Translation, TranslateError> {
    translate_into(sql, existing, &Target::default())
}

/// [`translate_against`], with every table name qualified by its schema in `target`.
pub fn translate_into(sql: &str, existing: &Existing, target: &Target) -> Result<Translation, TranslateError> {
    let stmts = super::parse(sql)?;
    let mut tr =
        Translator { tables: Vec::new(), existing: existing.clone(), target: target.clone(), refusals: Vec::new() };
    let mut indexes = Vec::new();
    for s in stmts {
        match s {
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
        }
    }
    if tr.tables.is_empty() && indexes.is_empty() {
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
    out.statements.extend(foreign_keys);
    for i in &indexes {
        if let Some(s) = tr.index(i) {
            out.statements.push(s);
        }
    }
    if tr.refusals.is_empty() {
        Ok(out)
    } else {
        Err(TranslateError::Refused(tr.refusals))
    }
}

/// `"name"`, with `"` doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
}

impl PgType {
    fn sql(self) -> &'static str {
        match self {
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
        });
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

    fn column_type(&self, table: &Table, name: &str) -> Option<PgType> {
        table.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)).and_then(|c| column_pg_type(table, c))
    }

    fn table_named(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    fn create_table(&mut self, t: &Table, out: &mut Vec<String>, fks: &mut Vec<String>) -> Option<TranslatedTable> {
        let before = self.refusals.len();
        if t.temp {
            self.refuse(Reason::TempTable, &t.name, None, "CREATE TEMP TABLE", "temporary tables are not synced");
            return None;
        }
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
                    if let Some(e) = self.expr(&Scope { table: t, column: None }, expr) {
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
        for old in have {
            if !t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(old)) {
                self.refuse(
                    Reason::SchemaChange,
                    name,
                    Some(old),
                    "column removed",
                    "only new columns and new tables can be added to a synced schema",
                );
            }
        }
        for c in t.columns.iter().filter(|c| !have.iter().any(|h| h.eq_ignore_ascii_case(&c.name))) {
            if c.constraints
                .iter()
                .any(|k| matches!(k.item, ColumnConstraint::PrimaryKey { .. } | ColumnConstraint::Unique { .. }))
            {
                self.refuse(
                    Reason::SchemaChange,
                    name,
                    Some(&c.name),
                    "new key or UNIQUE column",
                    "an added column cannot join the primary key or carry UNIQUE",
                );
                continue;
            }
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

    fn on_conflict(&mut self, t: &Table, column: Option<&str>, clause: Option<&str>, on: &str) {
        if let Some(c) = clause {
            if !matches!(c, "ABORT" | "FAIL" | "ROLLBACK") {
                self.refuse(
                    Reason::OnConflict,
                    &t.name,
                    column,
                    &format!("{on} ON CONFLICT {c}"),
                    "PostgreSQL constraints only refuse; resolve the conflict in the application",
                );
            }
        }
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
        let Some(ty) = column_pg_type(t, c) else {
            let (reason, detail) = if t.strict {
                (Reason::AnyColumn, "an ANY column holds values of any class; PostgreSQL needs one type")
            } else {
                (Reason::TypelessColumn, "a column without a type holds values of any class; declare its type")
            };
            self.refuse(reason, &t.name, Some(&c.name), "column without a type", detail);
            return None;
        };
        let mut s = format!("{} {}", ident(&c.name), ty.sql());
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
                    if let Some(e) = self.expr(&scope, expr) {
                        s.push_str(&format!(" CHECK ({e})"));
                    }
                }
                ColumnConstraint::Default(expr) => {
                    if let Some(d) = self.default(t, c, ty, expr) {
                        s.push_str(&format!(" DEFAULT {d}"));
                    }
                }
                ColumnConstraint::Collate(name) => {
                    if let Some(coll) = self.collation(&t.name, Some(&c.name), name, ty) {
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
            self.refuse(
                Reason::ForeignKeyTarget,
                &t.name,
                columns.first().map(String::as_str),
                &construct,
                "the referenced table is not declared in this SQL",
            );
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
        self.check_ident(&i.table, None, &i.name);
        let table = self.table_named(&i.table).cloned();
        let Some(table) = table else {
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
                    ident(&i.name),
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
            ident(&i.name),
            self.qualified(&table.name),
            terms.join(", ")
        );
        if let Some(p) = &i.predicate {
            s.push_str(&format!(" WHERE {}", self.expr(&scope, p)?));
        }
        Some(s)
    }

    fn default(&mut self, t: &Table, c: &Column, ty: PgType, toks: &[Tok]) -> Option<String> {
        let refuse = |me: &mut Self, detail: &str| {
            let shown = toks.iter().map(shown).collect::<Vec<_>>().join(" ");
            me.refuse(Reason::Default, &t.name, Some(&c.name), &format!("DEFAULT {shown}"), detail);
            None
        };
        // `CAST(<time> AS INT)`: the same time, already an integer.
        if let [Tok::Word(cast), Tok::Punct(open), inner @ .., Tok::Word(as_), Tok::Word(int), Tok::Punct(close)] = toks
        {
            if cast.eq_ignore_ascii_case("CAST")
                && open == "("
                && as_.eq_ignore_ascii_case("AS")
                && close == ")"
                && pg_type(int) == Some(PgType::Bigint)
                && ty == PgType::Bigint
            {
                return self.default(t, c, ty, inner);
            }
        }
        let now_text = |fmt: &str| format!("to_char(now() AT TIME ZONE 'UTC', '{fmt}')");
        // Words lower-cased, strings as written (`%M` is not `%m`).
        let joined: String = toks
            .iter()
            .map(|t| match t {
                Tok::Word(w) => w.to_ascii_lowercase(),
                t => shown(t),
            })
            .collect();
        // Time defaults: spelled the way SQLite would have stored them.
        let time = match joined.as_str() {
            "current_timestamp"
            | "datetime('now')"
            | "datetime('now','utc')"
            | "strftime('%Y-%m-%d %H:%M:%S','now')" => Some((PgType::Text, now_text("YYYY-MM-DD HH24:MI:SS"))),
            "strftime('%Y-%m-%dT%H:%M:%fZ','now')" => {
                Some((PgType::Text, now_text("YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"")))
            }
            "strftime('%Y-%m-%d %H:%M:%f','now')" => Some((PgType::Text, now_text("YYYY-MM-DD HH24:MI:SS.MS"))),
            "current_date" | "date('now')" => Some((PgType::Text, now_text("YYYY-MM-DD"))),
            "current_time" | "time('now')" => Some((PgType::Text, now_text("HH24:MI:SS"))),
            "strftime('%s','now')" | "unixepoch()" | "unixepoch('now')" => {
                Some((PgType::Bigint, "(extract(epoch FROM now()))::bigint".to_string()))
            }
            "unixepoch('subsec')" | "unixepoch('now','subsec')" => {
                Some((PgType::Double, "(extract(epoch FROM now()))::double precision".to_string()))
            }
            _ => None,
        };
        if let Some((want, sql)) = time {
            // A text time in an integer column (or the reverse) is what SQLite stores,
            // but PostgreSQL's column cannot hold it.
            return if want == ty || (want != PgType::Text && ty == PgType::Numeric) {
                Some(sql)
            } else {
                refuse(self, &format!("this time default does not fit a {} column", ty.sql()))
            };
        }
        match (ty, toks) {
            (_, [Tok::Word(w)]) if w.eq_ignore_ascii_case("NULL") => Some("NULL".into()),
            (PgType::Boolean, [Tok::Num(n)]) if n == "0" || n == "1" => {
                Some((if n == "1" { "true" } else { "false" }).into())
            }
            (PgType::Boolean, [Tok::Word(w)]) if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") => {
                Some(w.to_ascii_lowercase())
            }
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Word(w)])
                if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") =>
            {
                Some((if w.eq_ignore_ascii_case("TRUE") { "1" } else { "0" }).into())
            }
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Num(n)]) if number_fits(ty, n) => Some(n.clone()),
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Punct(sign), Tok::Num(n)])
                if (sign == "-" || sign == "+") && number_fits(ty, n) =>
            {
                Some(format!("{sign}{n}"))
            }
            // A number default on a text column is stored by SQLite as its text.
            (PgType::Text, [Tok::Num(n)]) => Some(literal(n)),
            (PgType::Text, [Tok::Punct(sign), Tok::Num(n)]) if sign == "-" || sign == "+" => {
                Some(literal(&format!("{}{n}", if sign == "-" { "-" } else { "" })))
            }
            // SQLite reads a double-quoted word in DEFAULT as a string.
            (PgType::Text, [Tok::Str(s) | Tok::Quoted(s)]) => Some(literal(s)),
            (PgType::Numeric | PgType::Bigint | PgType::Double, [Tok::Str(s) | Tok::Quoted(s)])
                if number_fits(ty, s) =>
            {
                Some(s.clone())
            }
            (PgType::Bytea, [Tok::Blob(hex)]) => Some(format!("'\\x{hex}'::bytea")),
            (PgType::Bytea, [Tok::Str(s)]) => Some(format!("convert_to({}, 'UTF8')", literal(s))),
            _ => refuse(
                self,
                &format!("only constants and the current time translate; this one does not fit a {} column", ty.sql()),
            ),
        }
    }

    /// An expression (`CHECK`, index term, partial-index predicate, generated column).
    fn expr(&mut self, scope: &Scope<'_>, toks: &[Tok]) -> Option<String> {
        let t = scope.table;
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        let before = self.refusals.len();
        let fail = |me: &mut Self, construct: String, reason: Reason, detail: &str| {
            me.refuse(reason, &t.name, scope.column, &construct, detail);
        };
        // The boolean column compared on the left, for `b = 1`, `b IN (0, 1)`.
        let mut bool_context = false;
        while i < toks.len() {
            let tok = &toks[i];
            let next = toks.get(i + 1);
            let call = next.is_some_and(|n| n.is_punct("(")) && !is_keyword(tok);
            match tok {
                Tok::Word(w) if call => {
                    let f = w.to_ascii_lowercase();
                    let mapped = match f.as_str() {
                        "lower" | "upper" | "length" | "abs" | "coalesce" | "nullif" | "trim" | "ltrim" | "rtrim"
                        | "replace" | "substr" | "round" => f.clone(),
                        "ifnull" => "coalesce".into(),
                        "substring" => "substr".into(),
                        _ => {
                            fail(
                                self,
                                format!("{w}()"),
                                Reason::Function,
                                "no PostgreSQL function behaves the same; remove it or rewrite the expression",
                            );
                            String::new()
                        }
                    };
                    out.push(mapped);
                }
                Tok::Word(w) => {
                    let up = w.to_ascii_uppercase();
                    match up.as_str() {
                        "AND" | "OR" | "NOT" | "IN" | "NULL" | "BETWEEN" | "CASE" | "WHEN" | "THEN" | "ELSE"
                        | "END" | "ISNULL" | "NOTNULL" | "ESCAPE" | "TRUE" | "FALSE" => {
                            out.push(match up.as_str() {
                                "ISNULL" => "IS NULL".into(),
                                "NOTNULL" => "IS NOT NULL".into(),
                                _ => up.clone(),
                            });
                            if up != "IN" && up != "NOT" {
                                bool_context = false;
                            }
                        }
                        "IS" => {
                            // `a IS b` compares any two values in SQLite; in PostgreSQL
                            // only NULL/TRUE/FALSE may follow IS.
                            let not = toks.get(i + 1).is_some_and(|n| n.is("NOT"));
                            let after = toks.get(i + 1 + usize::from(not));
                            if after.is_some_and(|a| a.is("NULL") || a.is("TRUE") || a.is("FALSE")) {
                                out.push(if not { "IS NOT".into() } else { "IS".into() });
                            } else {
                                out.push(if not { "IS DISTINCT FROM".into() } else { "IS NOT DISTINCT FROM".into() });
                            }
                            i += usize::from(not);
                        }
                        "LIKE" => {
                            // SQLite's LIKE ignores (ASCII) case.
                            out.push("ILIKE".into());
                        }
                        "CAST" => {
                            out.push("CAST".into());
                        }
                        "AS" => {
                            // Inside CAST(x AS type): map the type.
                            out.push("AS".into());
                            let mut j = i + 1;
                            let mut decl = Vec::new();
                            while let Some(Tok::Word(w)) = toks.get(j) {
                                decl.push(w.clone());
                                j += 1;
                            }
                            match pg_type(&decl.join(" ")) {
                                Some(ty) => out.push(ty.sql().into()),
                                None => {
                                    fail(self, "CAST without a type".into(), Reason::Operator, "a CAST needs a type")
                                }
                            }
                            i = j;
                            continue;
                        }
                        "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "CURRENT_TIME" => {
                            fail(
                                self,
                                up.clone(),
                                Reason::Function,
                                "the current time is only translated as a DEFAULT",
                            );
                        }
                        "GLOB" | "REGEXP" | "MATCH" | "COLLATE" => {
                            fail(self, up.clone(), Reason::Operator, "no PostgreSQL operator behaves the same");
                        }
                        _ => {
                            let name = canonical_column(t, w);
                            bool_context = self.column_type(t, &name) == Some(PgType::Boolean);
                            out.push(ident(&name));
                        }
                    }
                }
                Tok::Quoted(q) => {
                    if t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(q)) {
                        let name = canonical_column(t, q);
                        bool_context = self.column_type(t, &name) == Some(PgType::Boolean);
                        out.push(ident(&name));
                    } else {
                        // SQLite falls back to a string for an unknown "word".
                        out.push(literal(q));
                    }
                }
                Tok::Str(s) => out.push(literal(s)),
                Tok::Blob(h) => out.push(format!("'\\x{h}'::bytea")),
                Tok::Num(n) => {
                    if bool_context && (n == "0" || n == "1") {
                        out.push(if n == "1" { "true".into() } else { "false".into() });
                    } else {
                        out.push(n.clone());
                    }
                }
                Tok::Punct(p) => {
                    let mapped = match p.as_str() {
                        "==" => "=",
                        "(" | ")" | "," | "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%"
                        | "||" => p.as_str(),
                        _ => {
                            fail(self, p.clone(), Reason::Operator, "no PostgreSQL operator behaves the same");
                            ""
                        }
                    };
                    if matches!(p.as_str(), "+" | "-" | "*" | "/" | "%" | "||") {
                        bool_context = false;
                    }
                    out.push(mapped.to_string());
                }
            }
            i += 1;
        }
        if self.refusals.len() > before {
            return None;
        }
        Some(join_tokens(&out))
    }
}

/// A column's type in its table (`None`: typeless).
fn column_pg_type(t: &Table, c: &Column) -> Option<PgType> {
    if t.strict {
        return match first_word(&c.decl_type).as_str() {
            "INT" | "INTEGER" => Some(PgType::Bigint),
            "REAL" => Some(PgType::Double),
            "TEXT" => Some(PgType::Text),
            "BLOB" => Some(PgType::Bytea),
            _ => None,
        };
    }
    pg_type(&c.decl_type)
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

fn number_fits(ty: PgType, n: &str) -> bool {
    match ty {
        PgType::Bigint => {
            n.parse::<i64>().is_ok() || n.parse::<f64>().is_ok_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
        }
        _ => n.parse::<f64>().is_ok_and(f64::is_finite),
    }
}

fn shown(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Num(w) | Tok::Punct(w) => w.clone(),
        Tok::Quoted(q) => ident(q),
        Tok::Str(s) => literal(s),
        Tok::Blob(h) => format!("X'{h}'"),
    }
}

fn join_tokens(toks: &[String]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        if t.is_empty() {
            continue;
        }
        let prev = if i > 0 { toks[i - 1].as_str() } else { "" };
        let tight = s.is_empty() || t == ")" || t == "," || prev == "(" || (t == "(" && is_function_name(prev));
        if !tight {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Words the expression translator handles itself (never function names).
fn is_keyword(t: &Tok) -> bool {
    const KEYWORDS: [&str; 25] = [
        "AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "AS", "LIKE",
        "GLOB", "REGEXP", "MATCH", "ESCAPE", "EXISTS", "ISNULL", "NOTNULL", "TRUE", "FALSE", "COLLATE",
    ];
    matches!(t, Tok::Word(w) if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

fn is_function_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_') && s != "in"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> Translation {
        translate(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn refused(sql: &str) -> Vec<Refusal> {
        match translate(sql) {
            Err(TranslateError::Refused(r)) => r,
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn types_follow_sqlite_affinity() {
        let t = ok("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INT, b VARCHAR(10), c REAL, d BLOB, e BOOLEAN, \
                    f DECIMAL(5,2), g DATETIME, h UUID, i DOUBLE PRECISION, j NVARCHAR, k FLOATING POINT, l BIGINT)");
        let create = &t.statements[0];
        for line in [
            "\"a\" bigint",
            "\"b\" text",
            "\"c\" double precision",
            "\"d\" bytea",
            "\"e\" boolean",
            "\"f\" numeric",
            "\"g\" text",
            "\"h\" text",
            "\"i\" double precision",
            "\"j\" text",
            // "FLOATING POINT" has INT in it: INTEGER affinity, as SQLite decides.
            "\"k\" bigint",
            "\"l\" bigint",
        ] {
            assert!(create.contains(line), "{line} in\n{create}");
        }
        let strict = ok("CREATE TABLE s (id INTEGER PRIMARY KEY, n INT, r REAL, x TEXT, b BLOB) STRICT");
        assert!(strict.statements[0].contains("\"n\" bigint") && strict.statements[0].contains("\"b\" bytea"));
    }

    #[test]
    fn identifiers_are_always_quoted_as_declared() {
        let t = ok(r#"CREATE TABLE "order" ([user] TEXT PRIMARY KEY NOT NULL, `group` INTEGER, "we""ird name" TEXT);
                      CREATE TABLE [Order Details] (id TEXT PRIMARY KEY NOT NULL, o TEXT REFERENCES "ORDER"(USER));"#);
        assert!(t.statements[0].starts_with("CREATE TABLE \"order\" (\n    \"user\" text NOT NULL,\n    \"group\" bigint,\n    \"we\"\"ird name\" text,\n    PRIMARY KEY (\"user\")\n)"), "{}", t.statements[0]);
        assert!(t.statements[1].starts_with("CREATE TABLE \"Order Details\""));
        // References resolve (case-insensitively) to the declared spelling.
        assert_eq!(
            t.statements[2],
            "ALTER TABLE \"Order Details\" ADD FOREIGN KEY (\"o\") REFERENCES \"order\" (\"user\") DEFERRABLE INITIALLY DEFERRED"
        );
    }

    #[test]
    fn rowid_keys_are_flagged_and_get_no_sequence() {
        let t = ok("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT);
                    CREATE TABLE b (id INT PRIMARY KEY, x TEXT);
                    CREATE TABLE c (id INTEGER, PRIMARY KEY (id));
                    CREATE TABLE d (id INTEGER PRIMARY KEY, x TEXT) WITHOUT ROWID;
                    CREATE TABLE e (id INTEGER PRIMARY KEY DESC, x TEXT);
                    CREATE TABLE f (x TEXT);");
        let flags: Vec<(bool, bool)> = t.tables.iter().map(|x| (x.rowid_key, x.unsynced.is_some())).collect();
        assert_eq!(
            flags,
            [(true, false), (false, false), (true, false), (false, false), (false, false), (false, true)]
        );
        assert!(!t.script().contains("serial") && !t.script().contains("IDENTITY") && !t.script().contains("nextval"));
    }

    #[test]
    fn defaults_translate_or_are_refused() {
        let t = ok("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL,
                      a INTEGER DEFAULT -5, b INTEGER DEFAULT FALSE, c BOOLEAN DEFAULT 1, d BOOLEAN DEFAULT TRUE,
                      e TEXT DEFAULT 'it''s', f TEXT DEFAULT \"dq\", g TEXT DEFAULT 7, h BLOB DEFAULT X'00FF',
                      i TEXT DEFAULT CURRENT_TIMESTAMP, j TEXT DEFAULT (datetime('now')), k INTEGER DEFAULT (strftime('%s', 'now')),
                      l INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)), m REAL DEFAULT (unixepoch('subsec')),
                      n TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), o REAL DEFAULT 1.5e3, p TEXT DEFAULT NULL,
                      q DATE DEFAULT CURRENT_DATE)");
        let s = &t.statements[0];
        for want in [
            "\"a\" bigint DEFAULT -5",
            "\"b\" bigint DEFAULT 0",
            "\"c\" boolean DEFAULT true",
            "\"d\" boolean DEFAULT true",
            "\"e\" text DEFAULT 'it''s'",
            "\"f\" text DEFAULT 'dq'",
            "\"g\" text DEFAULT '7'",
            "\"h\" bytea DEFAULT '\\x00FF'::bytea",
            "\"i\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
            "\"j\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
            "\"k\" bigint DEFAULT (extract(epoch FROM now()))::bigint",
            "\"l\" bigint NOT NULL DEFAULT (extract(epoch FROM now()))::bigint",
            "\"m\" double precision DEFAULT (extract(epoch FROM now()))::double precision",
            "\"n\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            "\"o\" double precision DEFAULT 1.5e3",
            "\"p\" text DEFAULT NULL",
            "\"q\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ] {
            assert!(s.contains(want), "{want} in\n{s}");
        }
        let r = refused(
            "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT DEFAULT (datetime('now', 'localtime')),
                           b INTEGER DEFAULT CURRENT_TIMESTAMP, c INTEGER DEFAULT 'x', d TEXT DEFAULT (random()))",
        );
        let cols: Vec<(Reason, Option<&str>)> = r.iter().map(|x| (x.reason, x.column.as_deref())).collect();
        assert_eq!(
            cols,
            [
                (Reason::Default, Some("a")),
                (Reason::Default, Some("b")),
                (Reason::Default, Some("c")),
                (Reason::Default, Some("d"))
            ]
        );
        assert!(
            r[0].to_string().contains("DEFAULT ( datetime ( 'now' , 'localtime' ) )")
                || r[0].construct.contains("localtime")
        );
    }

    #[test]
    fn constraints_and_expressions() {
        let t = ok("CREATE TABLE p (id TEXT PRIMARY KEY NOT NULL ON CONFLICT ABORT, name TEXT COLLATE NOCASE UNIQUE,
                      flag BOOL NOT NULL DEFAULT 0 CHECK (flag IN (0, 1)), n INTEGER CHECK (n >= 0 AND n == abs(n)),
                      s TEXT CHECK (s IS NOT 'x' AND s LIKE 'a%' AND ifnull(s, '') <> ''), m TEXT COLLATE BINARY,
                      u TEXT GENERATED ALWAYS AS (upper(s)) VIRTUAL, CHECK (length(name) < 100 OR name IS NULL));
                    CREATE TABLE c (id TEXT PRIMARY KEY NOT NULL, p TEXT NOT NULL REFERENCES p ON DELETE CASCADE,
                      x INTEGER, UNIQUE (p, x));
                    CREATE UNIQUE INDEX c_x ON c (x DESC, p COLLATE NOCASE) WHERE x IS NOT NULL;");
        let s = t.script();
        for want in [
            "CREATE COLLATION IF NOT EXISTS \"cloudsync_nocase\" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);\n",
            "\"id\" text NOT NULL,",
            "\"name\" text COLLATE \"cloudsync_nocase\" UNIQUE",
            "\"flag\" boolean NOT NULL DEFAULT false CHECK (\"flag\" IN (false, true))",
            "\"n\" bigint CHECK (\"n\" >= 0 AND \"n\" = abs(\"n\"))",
            "CHECK (\"s\" IS DISTINCT FROM 'x' AND \"s\" ILIKE 'a%' AND coalesce(\"s\", '') <> '')",
            "\"m\" text,",
            "\"u\" text GENERATED ALWAYS AS (upper(\"s\")) STORED",
            "CHECK (length(\"name\") < 100 OR \"name\" IS NULL)",
            "UNIQUE (\"p\", \"x\")",
            "ALTER TABLE \"c\" ADD FOREIGN KEY (\"p\") REFERENCES \"p\" (\"id\") ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;",
            "CREATE UNIQUE INDEX IF NOT EXISTS \"c_x\" ON \"c\" (\"x\" DESC, \"p\" COLLATE \"cloudsync_nocase\") WHERE \"x\" IS NOT NULL;",
        ] {
            assert!(s.contains(want), "{want} in\n{s}");
        }
        // Foreign keys come after every table: a forward reference works.
        let fwd = ok("CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL, b TEXT REFERENCES b(id));
                      CREATE TABLE b (id TEXT PRIMARY KEY NOT NULL);");
        assert!(fwd.statements[2].starts_with("ALTER TABLE \"a\" ADD FOREIGN KEY"));
    }

    #[test]
    fn every_refusal_is_listed_with_table_column_and_construct() {
        let r = refused(
            "CREATE TEMP TABLE tmp (id TEXT PRIMARY KEY);
             CREATE TABLE t (id TEXT PRIMARY KEY ON CONFLICT REPLACE, a, b TEXT COLLATE RTRIM, c TEXT CHECK (c GLOB 'x*'),
               d TEXT CHECK (json_valid(d)), e TEXT REFERENCES nowhere(id), f TEXT REFERENCES t(b), g INTEGER CHECK (g & 1));
             CREATE TABLE s (id INTEGER PRIMARY KEY, v ANY) STRICT;
             CREATE TABLE a_name_that_is_far_too_long_for_postgresql_which_truncates_at_63_bytes (id TEXT PRIMARY KEY);",
        );
        let got: Vec<(Reason, &str, Option<&str>)> =
            r.iter().map(|x| (x.reason, x.table.as_str(), x.column.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Reason::TempTable, "tmp", None),
                (Reason::OnConflict, "t", Some("id")),
                (Reason::TypelessColumn, "t", Some("a")),
                (Reason::Collation, "t", Some("b")),
                (Reason::Operator, "t", Some("c")),
                (Reason::Function, "t", Some("d")),
                (Reason::ForeignKeyTarget, "t", Some("e")),
                (Reason::ForeignKeyTarget, "t", Some("f")),
                (Reason::Operator, "t", Some("g")),
                (Reason::AnyColumn, "s", Some("v")),
                (
                    Reason::LongIdentifier,
                    "a_name_that_is_far_too_long_for_postgresql_which_truncates_at_63_bytes",
                    None
                ),
            ]
        );
        assert!(r[5].construct == "json_valid()", "{}", r[5]);
        let shown = TranslateError::Refused(r).to_string();
        assert!(
            shown.starts_with("11 construct(s) cannot be translated faithfully:\n[temp-table] table \"tmp\""),
            "{shown}"
        );
        assert!(matches!(translate("CREATE VIEW v AS SELECT 1"), Err(TranslateError::Syntax(_))));
        assert!(matches!(translate("CREATE INDEX i ON t (x)"),
            Err(TranslateError::Refused(r)) if r[0].reason == Reason::UnknownTable));
        assert!(matches!(translate("  -- nothing\n"), Err(TranslateError::Empty)));
    }

    #[test]
    fn tables_go_to_their_target_schema() {
        let mut target = Target { schema: Some("app".into()), ..Target::default() };
        target.tables.insert("Audit".into(), "private".into());
        let t = translate_into(
            "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT COLLATE NOCASE);
             CREATE TABLE audit (id TEXT PRIMARY KEY NOT NULL, note TEXT REFERENCES notes(id));
             CREATE INDEX notes_title ON notes (title);",
            &Existing::new(),
            &target,
        )
        .unwrap();
        let s = t.script();
        for want in [
            "CREATE COLLATION IF NOT EXISTS \"app\".\"cloudsync_nocase\"",
            "CREATE TABLE \"app\".\"notes\" (",
            "\"title\" text COLLATE \"app\".\"cloudsync_nocase\"",
            "CREATE TABLE \"private\".\"audit\" (",
            "ALTER TABLE \"private\".\"audit\" ADD FOREIGN KEY (\"note\") REFERENCES \"app\".\"notes\" (\"id\")",
            "CREATE INDEX IF NOT EXISTS \"notes_title\" ON \"app\".\"notes\" (\"title\")",
        ] {
            assert!(s.contains(want), "{want} in\n{s}");
        }
    }

    #[test]
    fn schema_changes_add_columns_only() {
        let mut have = Existing::new();
        have.insert("notes".into(), vec!["id".into(), "body".into()]);
        let t = translate_against(
            "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT, pinned BOOLEAN NOT NULL DEFAULT 0);
             CREATE TABLE tags (id TEXT PRIMARY KEY NOT NULL, note TEXT REFERENCES notes(id));
             CREATE INDEX notes_pinned ON notes (pinned);",
            &have,
        )
        .unwrap();
        assert_eq!(
            t.statements,
            [
                "ALTER TABLE \"notes\" ADD COLUMN \"pinned\" boolean NOT NULL DEFAULT false",
                "CREATE TABLE \"tags\" (\n    \"id\" text NOT NULL,\n    \"note\" text,\n    PRIMARY KEY (\"id\")\n)",
                "ALTER TABLE \"tags\" ADD FOREIGN KEY (\"note\") REFERENCES \"notes\" (\"id\") DEFERRABLE INITIALLY DEFERRED",
                "CREATE INDEX IF NOT EXISTS \"notes_pinned\" ON \"notes\" (\"pinned\")",
            ]
        );
        assert!(t.tables[0].existing && t.tables[0].added_columns == ["pinned"] && !t.tables[1].existing);
        let r = match translate_against("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, extra TEXT UNIQUE)", &have) {
            Err(TranslateError::Refused(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            r.iter().map(|x| (x.reason, x.column.as_deref())).collect::<Vec<_>>(),
            [(Reason::SchemaChange, Some("body")), (Reason::SchemaChange, Some("extra"))]
        );
    }
}
