//! Errors of the SQLite adapter, and their single mapping to SQL errors.

use cloudsync_core::engine::ApplyError;
use cloudsync_core::DecodeError;

/// Everything that can go wrong in a `cloudsync_*` call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite itself failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A payload, key or clock that does not decode.
    #[error("invalid payload: {0}")]
    Decode(#[from] DecodeError),
    /// A payload that decodes but does not fit this database (its tables, columns,
    /// algorithms, keys or values); nothing was written.
    #[error(transparent)]
    Incompatible(#[from] cloudsync_core::engine::Incompatible),
    /// Something that cannot be done with this database's state now (a table being
    /// altered, an encoder or integer limit).
    #[error("{0}")]
    Apply(String),
    /// This database's own metadata does not read back as written (a stored clock,
    /// log entry, setting, site ordinal or column id): the database's fault, never the
    /// payload's or the caller's.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The table is not synced.
    #[error("table '{0}' is not synced (call cloudsync_init('{0}') first)")]
    NotSynced(String),
    /// The table cannot be synced as it is.
    #[error("cannot sync table '{table}': {why}")]
    Unsupported {
        /// Table.
        table: String,
        /// What must change, in words a developer can act on.
        why: String,
    },
    /// A request of the host that is invalid as given (a row policy that does not
    /// compile, provisioning SQL that creates no table).
    #[error("{0}")]
    Invalid(String),
    /// Schema SQL the guard refuses (`cloudsync_ddl::guard`): it does not parse as
    /// `CREATE TABLE`/`CREATE INDEX`, or holds constructs refused for every backend.
    #[error(transparent)]
    Schema(#[from] cloudsync_ddl::TranslateError),
    /// A bad argument to a SQL function.
    #[error("{function}: {why}")]
    Argument {
        /// Function name.
        function: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A request to the sync service failed (transport, HTTP status or protocol).
    #[error("network: {}{code}: {message}", status.map(|s| format!("{s} ")).unwrap_or_default())]
    Network {
        /// HTTP status, when the server answered.
        status: Option<u16>,
        /// The server's stable error code (or `network` for transport failures).
        code: String,
        /// The server's message.
        message: String,
        /// Whether retrying later may succeed.
        retryable: bool,
        /// How long the server asked to wait first (`Retry-After`, seconds).
        retry_after: Option<u64>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A bad argument.
    pub fn arg(function: &'static str, why: impl Into<String>) -> Self {
        Error::Argument { function, why: why.into() }
    }
}

impl From<ApplyError<Error>> for Error {
    fn from(e: ApplyError<Error>) -> Self {
        match e {
            ApplyError::Store(inner) => inner,
            ApplyError::Incompatible(i) => Error::Incompatible(i),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one place where adapter errors become SQL errors: the message of the SQL error
/// is the error's display text, prefixed with `cloudsync: `.
pub fn to_sql(e: Error) -> rusqlite::Error {
    match e {
        // Keep SQLite's own error codes (SQLITE_BUSY, constraint violations…) intact so
        // callers can react to them.
        Error::Sqlite(inner @ rusqlite::Error::SqliteFailure(..)) => inner,
        other => rusqlite::Error::UserFunctionError(format!("cloudsync: {other}").into()),
    }
}
