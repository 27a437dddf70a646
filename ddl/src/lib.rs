//! SQLite schema statements (`CREATE TABLE`, `CREATE INDEX`) parsed into a small
//! syntax tree: the first half of the SQLite→PostgreSQL DDL translator.
//!
//! The parser follows SQLite's grammar closely enough for real-world schemas (see
//! `../shared/ddl-corpus`): every quoting style, comments anywhere, column and table
//! constraints in any order, typeless columns, multi-word and parameterised types,
//! `ON CONFLICT` clauses, `WITHOUT ROWID` and `STRICT`, partial and expression
//! indexes. Expressions (`DEFAULT (…)`, `CHECK`, `WHERE`, generated columns, index
//! terms) are kept as token lists for the translator to rewrite. Other statements are
//! refused with their line. [`guard`] decides what a tenant may run and emits SQLite
//! DDL from the tree; [`translate`] turns the tree into PostgreSQL statements
//! (`docs/translate-ddl.md`).

pub mod guard;
mod lex;
mod parse;
mod refusal;
mod translate;

pub use lex::{ident, lex, Spanned, Tok};
pub use parse::parse;
pub use translate::{
    translate, translate_against, translate_into, Existing, Omit, OmitError, OmitKind, Reason, Refusal, Target,
    TranslateError, TranslatedTable, Translation, ANY_DOMAIN, NOCASE_COLLATION,
};

/// Why schema SQL could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    /// Malformed or unsupported syntax.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line of the offending token.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A parsed schema statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// `CREATE TABLE`.
    Table(Table),
    /// `CREATE INDEX`.
    Index(Index),
    /// `ALTER TABLE … ADD [COLUMN]`: the one alter a synced schema takes (a column
    /// cannot be dropped or renamed while devices hold it).
    AddColumn {
        /// The table (schema qualifier dropped).
        table: String,
        /// The new column.
        column: Column,
    },
}

/// `CREATE [TEMP] TABLE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Table name (schema qualifier dropped).
    pub name: String,
    /// `TEMP`/`TEMPORARY`.
    pub temp: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Columns in declaration order.
    pub columns: Vec<Column>,
    /// Table constraints.
    pub constraints: Vec<Named<TableConstraint>>,
    /// `WITHOUT ROWID`.
    pub without_rowid: bool,
    /// `STRICT`.
    pub strict: bool,
}

impl Table {
    /// The primary-key columns, in key order (column or table constraint).
    pub fn primary_key(&self) -> Vec<String> {
        for c in &self.constraints {
            if let TableConstraint::PrimaryKey { columns, .. } = &c.item {
                return columns.iter().map(|t| t.name.clone().unwrap_or_default()).collect();
            }
        }
        self.columns
            .iter()
            .filter(|c| c.constraints.iter().any(|k| matches!(k.item, ColumnConstraint::PrimaryKey { .. })))
            .map(|c| c.name.clone())
            .collect()
    }
}

impl Table {
    /// Whether SQLite refuses NULL in `column`: declared `NOT NULL`, or a key column of
    /// a `WITHOUT ROWID` table. (In ordinary tables SQLite accepts NULL in a
    /// non-integer primary key, for compatibility; PostgreSQL never does.)
    pub fn not_null(&self, column: &Column) -> bool {
        let declared = column.constraints.iter().any(|k| matches!(k.item, ColumnConstraint::NotNull { .. }));
        declared || (self.without_rowid && self.primary_key().iter().any(|k| k.eq_ignore_ascii_case(&column.name)))
    }
}

/// A constraint with its optional `CONSTRAINT name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named<T> {
    /// The constraint's name.
    pub name: Option<String>,
    /// The constraint.
    pub item: T,
}

/// A column definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Declared type as written (words joined by one space, with its parameters), or
    /// empty for a typeless column.
    pub decl_type: String,
    /// Column constraints in order.
    pub constraints: Vec<Named<ColumnConstraint>>,
}

/// A column constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnConstraint {
    /// `PRIMARY KEY`.
    PrimaryKey {
        /// `DESC`.
        desc: bool,
        /// `ON CONFLICT …` resolution.
        on_conflict: Option<String>,
        /// `AUTOINCREMENT`.
        autoincrement: bool,
    },
    /// `NOT NULL`.
    NotNull {
        /// `ON CONFLICT …` resolution.
        on_conflict: Option<String>,
    },
    /// `NULL` (explicitly nullable).
    Null,
    /// `UNIQUE`.
    Unique {
        /// `ON CONFLICT …` resolution.
        on_conflict: Option<String>,
    },
    /// `CHECK (expr)`.
    Check(Vec<Tok>),
    /// `DEFAULT …`: a parenthesised expression, or the literal's tokens (a sign and
    /// a number are two tokens).
    Default(Vec<Tok>),
    /// `COLLATE name`.
    Collate(String),
    /// `REFERENCES …`.
    References(ForeignKey),
    /// `[GENERATED ALWAYS] AS (expr) [VIRTUAL | STORED]`.
    Generated {
        /// The expression.
        expr: Vec<Tok>,
        /// `STORED`.
        stored: bool,
    },
}

/// A table constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableConstraint {
    /// `PRIMARY KEY (…)`.
    PrimaryKey {
        /// Key columns.
        columns: Vec<IndexedTerm>,
        /// `ON CONFLICT …` resolution.
        on_conflict: Option<String>,
    },
    /// `UNIQUE (…)`.
    Unique {
        /// Columns.
        columns: Vec<IndexedTerm>,
        /// `ON CONFLICT …` resolution.
        on_conflict: Option<String>,
    },
    /// `CHECK (expr)`.
    Check(Vec<Tok>),
    /// `FOREIGN KEY (…) REFERENCES …`.
    ForeignKey {
        /// Referencing columns.
        columns: Vec<String>,
        /// The reference.
        references: ForeignKey,
    },
}

/// `REFERENCES table [(columns)] [actions] [deferrable]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    /// Referenced table.
    pub table: String,
    /// Referenced columns (empty: the referenced table's primary key).
    pub columns: Vec<String>,
    /// `ON DELETE` action (`CASCADE`, `SET NULL`, …), upper-case.
    pub on_delete: Option<String>,
    /// `ON UPDATE` action, upper-case.
    pub on_update: Option<String>,
    /// `DEFERRABLE INITIALLY DEFERRED`.
    pub deferred: bool,
}

/// A term of an index or a key: a column, or an expression, with collation and order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedTerm {
    /// The column, when the term is a bare column name.
    pub name: Option<String>,
    /// The term's tokens (the column, or the expression).
    pub expr: Vec<Tok>,
    /// `COLLATE name`.
    pub collate: Option<String>,
    /// `DESC`.
    pub desc: bool,
}

/// `CREATE [UNIQUE] INDEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// Index name.
    pub name: String,
    /// `UNIQUE`.
    pub unique: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Indexed table.
    pub table: String,
    /// Terms.
    pub terms: Vec<IndexedTerm>,
    /// `WHERE expr` of a partial index.
    pub predicate: Option<Vec<Tok>>,
}
