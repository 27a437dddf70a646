//! The extension's errors and their SQLSTATEs.
//!
//! Every SQL function returns `Result<_, Error>` internally; [`report`] turns an error
//! into a PostgreSQL `ERROR` with the SQLSTATE of its variant, once, at the SQL edge.

use cloudsync_core::engine::ApplyError;
use cloudsync_core::DecodeError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Why a value cannot be stored in a column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// Wrong storage class.
    #[error("expected {0}")]
    Class(&'static str),
    /// Text that does not parse.
    #[error("not {0}")]
    Syntax(&'static str),
    /// Out of the column type's range.
    #[error("out of range for the column type")]
    OutOfRange,
    /// Longer than `varchar(n)`.
    #[error("longer than {0} characters")]
    TooLong(usize),
    /// More fractional digits than the numeric scale.
    #[error("more than {0} fractional digits (it would be rounded)")]
    Scale(usize),
    /// Text that is not UTF-8.
    #[error("text is not valid UTF-8")]
    Utf8,
}

/// An error of the PostgreSQL extension.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A table that is not synced.
    #[error("table {0} is not synced (run cloudsync_init on it first)")]
    NotSynced(String),
    /// A table that does not exist.
    #[error("table {0} does not exist")]
    NoSuchTable(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// Something the extension does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A state in which the operation cannot run (an alter in progress…).
    #[error("{0}")]
    State(String),
    /// A value that the column cannot hold exactly.
    #[error("cannot store {value} in column \"{column}\" of table {table} ({sql_type}): {problem}")]
    Value {
        /// Table (as the user knows it: schema-qualified).
        table: String,
        /// Column.
        column: String,
        /// Column type.
        sql_type: String,
        /// The value, shortened.
        value: String,
        /// What is wrong.
        problem: ValueProblem,
    },
    /// A payload that does not decode.
    #[error("invalid payload: {0}")]
    Payload(#[from] DecodeError),
    /// A payload whose primary key does not fit the table's key columns.
    #[error("invalid payload: {0}")]
    BadKey(String),
    /// A payload naming a table this database does not sync.
    #[error("{0}")]
    UnknownTable(String),
    /// A payload naming a column this database does not have.
    #[error("{0}")]
    UnknownColumn(String),
    /// A payload that does not fit this database's schema otherwise.
    #[error("{0}")]
    Schema(String),
    /// Metadata that does not decode (written by something else than this extension).
    #[error("corrupt cloudsync metadata: {0}")]
    Corrupt(String),
    /// A row the impersonated role cannot see (row-level security) would be changed.
    #[error("row ({key}) of table {table} is not visible to role {role} (row-level security): the change is refused")]
    Hidden {
        /// Table.
        table: String,
        /// The row's key, shown.
        key: String,
        /// The role.
        role: String,
    },
    /// A payload uploaded by one site that holds changes another wrote: a device speaks
    /// only for itself.
    #[error("{0}")]
    ForeignSite(String),
    /// SQLite DDL that does not translate (`cloudsync_translate_ddl`).
    #[error("{0}")]
    Translate(#[from] cloudsync_ddl::TranslateError),
    /// SPI failed.
    #[error("SPI error: {0}")]
    Spi(#[from] pgrx::spi::SpiError),
}

/// The extension's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SQLSTATE this error is reported with.
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode as C;
        match self {
            Error::NotSynced(_) | Error::State(_) => C::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::NoSuchTable(_) | Error::UnknownTable(_) => C::ERRCODE_UNDEFINED_TABLE,
            Error::UnknownColumn(_) => C::ERRCODE_UNDEFINED_COLUMN,
            Error::Invalid(_) => C::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Unsupported(_) => C::ERRCODE_FEATURE_NOT_SUPPORTED,
            Error::Value { problem, .. } => match problem {
                ValueProblem::Class(_) => C::ERRCODE_DATATYPE_MISMATCH,
                ValueProblem::Syntax(_) => C::ERRCODE_INVALID_TEXT_REPRESENTATION,
                ValueProblem::OutOfRange | ValueProblem::Scale(_) => C::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                ValueProblem::TooLong(_) => C::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
                ValueProblem::Utf8 => C::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            },
            Error::Payload(_) | Error::BadKey(_) => C::ERRCODE_INVALID_BINARY_REPRESENTATION,
            Error::Schema(_) => C::ERRCODE_INVALID_SCHEMA_DEFINITION,
            Error::Corrupt(_) => C::ERRCODE_DATA_CORRUPTED,
            Error::Hidden { .. } | Error::ForeignSite(_) => C::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Error::Translate(t) => match t {
                cloudsync_ddl::TranslateError::Syntax(_) => C::ERRCODE_SYNTAX_ERROR,
                cloudsync_ddl::TranslateError::Empty => C::ERRCODE_INVALID_PARAMETER_VALUE,
                cloudsync_ddl::TranslateError::Refused(_) => C::ERRCODE_FEATURE_NOT_SUPPORTED,
            },
            Error::Spi(_) => C::ERRCODE_INTERNAL_ERROR,
        }
    }
}

impl From<ApplyError<Error>> for Error {
    fn from(e: ApplyError<Error>) -> Self {
        use cloudsync_core::engine::Incompatible as I;
        match e {
            ApplyError::Store(e) => e,
            ApplyError::Incompatible(i) => match i {
                bad @ (I::BadKey { .. } | I::BadValue { .. }) => Error::BadKey(bad.to_string()),
                t @ I::UnknownTable(_) => Error::UnknownTable(t.to_string()),
                c @ I::UnknownColumn { .. } => Error::UnknownColumn(c.to_string()),
                other @ I::AlgoMismatch { .. } => Error::Schema(other.to_string()),
                foreign @ I::ForeignSite { .. } => Error::ForeignSite(foreign.to_string()),
            },
        }
    }
}

/// Unwraps `r`, or raises its error as a PostgreSQL `ERROR` (the SQL edge).
pub fn report<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            ErrorReport::new(e.sqlstate(), e.to_string(), "cloudsync").report(PgLogLevel::ERROR);
            unreachable!("an ERROR report does not return")
        }
    }
}
