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
    /// A request to the sync service failed: no HTTP answer (the transport's code:
    /// `server_unreachable`, `dns_failed`, `tls_failed`…), an error status (the
    /// server's code), or an answer that breaks the protocol (`bad_response`).
    #[error("{message}")]
    Network {
        /// HTTP status, when the server answered.
        status: Option<u16>,
        /// The stable code.
        code: String,
        /// What failed, where, and the likely cause.
        message: String,
        /// Whether retrying later may succeed.
        retryable: bool,
        /// How long the server asked to wait first (`Retry-After`, seconds).
        retry_after: Option<u64>,
    },
    /// A credential refused when set, for its shape (empty, copied with spaces, an
    /// admin token, a JWT given as a key…): it never reaches the server.
    #[error("{function}: {source}")]
    Credential {
        /// Function name.
        function: &'static str,
        /// What is wrong with it.
        source: cloudsync_protocol::credentials::CredentialError,
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

    /// The stable code of this error, which every SQL error the extension raises
    /// starts with (`cloudsync: <code>: …`); the list is in `docs/sql-api.md#errors`.
    pub fn code(&self) -> &str {
        match self {
            Error::Sqlite(_) => "sqlite_error",
            Error::Decode(_) => "invalid_payload",
            Error::Incompatible(i) => i.code(),
            Error::Apply(_) => "cannot_apply",
            Error::Corrupt(_) => "corrupt_metadata",
            Error::NotSynced(_) => "not_synced",
            Error::Unsupported { .. } => "unsupported_table",
            Error::Invalid(_) => "invalid_input",
            Error::Schema(_) => "schema_refused",
            Error::Argument { .. } => "invalid_argument",
            Error::Network { code, .. } => code,
            Error::Credential { .. } => "invalid_credential",
            Error::Io { .. } => "io_error",
        }
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
/// is `cloudsync: <code>: <display text>`, so applications can branch on the code.
pub fn to_sql(e: Error) -> rusqlite::Error {
    match e {
        // Keep SQLite's own error codes (SQLITE_BUSY, constraint violations…) intact so
        // callers can react to them.
        Error::Sqlite(inner @ rusqlite::Error::SqliteFailure(..)) => inner,
        other => rusqlite::Error::UserFunctionError(format!("cloudsync: {}: {other}", other.code()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_errors_start_with_their_code_once() {
        let e = Error::Network {
            status: None,
            code: "server_unreachable".into(),
            message: "cannot connect to 127.0.0.1:9 (http://127.0.0.1:9/v1/sync/d): connection refused".into(),
            retryable: true,
            retry_after: None,
        };
        let msg = to_sql(e).to_string();
        assert!(msg.starts_with("cloudsync: server_unreachable: cannot connect to 127.0.0.1:9"), "{msg}");
        assert_eq!(msg.matches("network").count(), 0, "{msg}");
        let msg = to_sql(Error::NotSynced("t".into())).to_string();
        assert!(msg.starts_with("cloudsync: not_synced: table 't'"), "{msg}");
    }
}
