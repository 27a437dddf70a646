//! What the translator refuses, and how it says so.

use std::fmt;

/// Why a construct cannot be translated. The codes are stable and documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A column without a declared type (or `ANY` in a `STRICT` table) used in an
    /// expression: PostgreSQL holds it as JSON (`cloudsync_any`), which compares and
    /// computes otherwise.
    TypelessColumn,
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
    /// A subquery, another statement or a user function (`REGEXP`, `MATCH`) in an
    /// expression: tenant SQL reads nothing but its own row (`guard`).
    Subquery,
    /// A name of SQLite's (`sqlite_…`) or of the sync engine's (`cloudsync…`).
    ReservedName,
    /// A declared type that is not words and at most two numbers in parentheses.
    DeclaredType,
}

impl Reason {
    /// The stable code (`docs/translate-ddl.md`).
    pub fn code(self) -> &'static str {
        match self {
            Reason::TypelessColumn => "typeless-column",
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
            Reason::Subquery => "subquery",
            Reason::ReservedName => "reserved-name",
            Reason::DeclaredType => "declared-type",
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
    Syntax(#[from] crate::DdlError),
    /// The SQL parses but declares nothing to translate.
    #[error("the SQL creates no table")]
    Empty,
    /// Constructs without a faithful translation (all of them, not just the first).
    #[error("{} construct(s) cannot be translated faithfully:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<Refusal>),
}
