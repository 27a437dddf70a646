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
    /// The choice that creates the table without this construct, when there is one
    /// ([`Omit`]): the user may pass it to proceed knowingly.
    pub omit: Option<Omit>,
}

/// A construct of one column (or of the table, `column: None`) the user chose to leave
/// out of the PostgreSQL schema because it has no faithful translation: the table is
/// created without it, and a note says so. Written `table.column:kind` or
/// `table:kind` (the table's own constraints), names compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Omit {
    /// The table.
    pub table: String,
    /// The column; None for the table's own constraints (`CHECK`, `PRIMARY KEY`, `UNIQUE`).
    pub column: Option<String>,
    /// What to leave out.
    pub kind: OmitKind,
}

/// What an [`Omit`] leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OmitKind {
    /// The `CHECK`s that do not translate: devices still check them, PostgreSQL does not.
    Check,
    /// A `DEFAULT` that does not translate: rows inserted in PostgreSQL without the
    /// column get NULL (devices send every column of the rows they insert).
    Default,
    /// A collation PostgreSQL has no equivalent of: PostgreSQL compares the column
    /// byte by byte.
    Collate,
    /// An `ON CONFLICT` clause: the constraint stays and PostgreSQL refuses what
    /// conflicts (the row is refused) instead of resolving it.
    OnConflict,
}

impl OmitKind {
    /// The kind as written in an [`Omit`].
    pub fn code(self) -> &'static str {
        match self {
            OmitKind::Check => "check",
            OmitKind::Default => "default",
            OmitKind::Collate => "collate",
            OmitKind::OnConflict => "on-conflict",
        }
    }
}

impl fmt::Display for Omit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "{}.{c}:{}", self.table, self.kind.code()),
            None => write!(f, "{}:{}", self.table, self.kind.code()),
        }
    }
}

/// An [`Omit`] that does not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("omit \"{0}\": expected `table.column:kind` or `table:kind`, kind one of check, default, collate, on-conflict")]
pub struct OmitError(pub String);

impl std::str::FromStr for Omit {
    type Err = OmitError;

    /// `table.column:kind` or `table:kind`: the kind after the last `:`, the column
    /// after the first `.` (a table whose name holds a `.` or `:` is named through the
    /// API's structured form).
    fn from_str(s: &str) -> Result<Omit, OmitError> {
        let bad = || OmitError(s.chars().take(200).collect());
        let (target, kind) = s.rsplit_once(':').ok_or_else(bad)?;
        let kind = match kind.trim() {
            "check" => OmitKind::Check,
            "default" => OmitKind::Default,
            "collate" => OmitKind::Collate,
            "on-conflict" => OmitKind::OnConflict,
            _ => return Err(bad()),
        };
        let (table, column) = match target.split_once('.') {
            Some((t, c)) => (t.trim(), Some(c.trim())),
            None => (target.trim(), None),
        };
        if table.is_empty() || column.is_some_and(str::is_empty) {
            return Err(bad());
        }
        Ok(Omit { table: table.to_string(), column: column.map(str::to_string), kind })
    }
}

impl Omit {
    /// Whether this names `table` and `column` (case-insensitively) and `kind`.
    pub fn names(&self, table: &str, column: Option<&str>, kind: OmitKind) -> bool {
        self.kind == kind
            && self.table.eq_ignore_ascii_case(table)
            && match (&self.column, column) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] table \"{}\"", self.reason.code(), self.table)?;
        if let Some(c) = &self.column {
            write!(f, ", column \"{c}\"")?;
        }
        write!(f, ": {}: {}", self.construct, self.detail)?;
        if let Some(o) = &self.omit {
            write!(f, " (or create it without this: omit \"{o}\")")?;
        }
        Ok(())
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
