//! Errors of the control plane.

use crate::egress::EgressError;

/// Everything that can go wrong in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane database failed.
    #[error("control-plane store: {0}")]
    Store(#[from] sqlx::Error),
    /// A migration failed.
    #[error("control-plane migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Something that does not exist (or that the caller may not see).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for ("tenant", "database", …).
        what: &'static str,
    },
    /// A request that conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// A request that is invalid as given.
    #[error("{0}")]
    Invalid(String),
    /// A request the caller may not make (a role outside the allow-list…).
    #[error("{0}")]
    Forbidden(String),
    /// A tenant's PostgreSQL backend refused or failed a statement.
    #[error("database: {message} (SQLSTATE {sqlstate})")]
    Postgres {
        /// SQLSTATE (empty when the server gave none).
        sqlstate: cloudsync_protocol::Sqlstate,
        /// The server's message.
        message: String,
    },
    /// A tenant's PostgreSQL backend cannot be reached.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// A tenant-supplied host the egress policy refuses, or that does not resolve.
    #[error(transparent)]
    Egress(#[from] crate::egress::EgressError),
    /// A tenant database failed.
    #[error("database: {0}")]
    Backend(cloudsync_sqlite::Error),
    /// SQLite itself failed in a tenant database.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Schema SQL a tenant may not run: it does not parse as `CREATE TABLE`/`CREATE
    /// INDEX`, or holds constructs refused for every backend (`ddl::guard`) or without
    /// a faithful PostgreSQL translation.
    #[error("{0}")]
    Schema(#[from] cloudsync_ddl::TranslateError),
    /// A payload that cannot be applied.
    #[error("payload: {0}")]
    Payload(#[from] cloudsync_core::DecodeError),
    /// The payload store failed.
    #[error("payload store: {0}")]
    PayloadStore(String),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The tenant reached one of its quotas (`control::quotas`): nothing was kept.
    #[error("this tenant reached its quota of {limit} {}; an operator can raise it", .quota.unit())]
    OverQuota {
        /// Which.
        quota: crate::control::quotas::Quota,
        /// The limit.
        limit: u32,
    },
    /// A tenant database reached its size quota: nothing of the write was kept.
    #[error("the database reached its size limit of {limit_bytes} bytes ({used_bytes} in use): nothing of this write was kept")]
    StorageQuota {
        /// The quota.
        limit_bytes: u64,
        /// The file's size when the write failed.
        used_bytes: u64,
    },
    /// An operation on a tenant database ran past its time budget and was stopped.
    #[error("the operation ran past its time budget of {} s and was stopped: nothing of it was kept", .0.as_secs())]
    TimeBudget(std::time::Duration),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// The SQLite adapter's errors, mapped once: a request it refuses as given (schema SQL
/// the guard refuses, a policy that does not compile) is the caller's, reported as for
/// every backend; anything else is the database's.
impl From<cloudsync_sqlite::Error> for Error {
    fn from(e: cloudsync_sqlite::Error) -> Self {
        match e {
            cloudsync_sqlite::Error::Schema(t) => Error::Schema(t),
            cloudsync_sqlite::Error::Invalid(why) => Error::Invalid(why),
            other => Error::Backend(other),
        }
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed (the queue's retry rule).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Store(_)
            | Error::PayloadStore(_)
            | Error::Io { .. }
            | Error::Task(_)
            | Error::Unreachable(_)
            | Error::Egress(EgressError::Unresolved { .. }) => true,
            // Connection, serialization/deadlock, resources, operator intervention,
            // lock timeouts: the same statement may succeed later.
            Error::Postgres { sqlstate, .. } => sqlstate.is_transient(),
            // The database's own metadata does not read back: the server's fault, which
            // an operator can repair; never the device's.
            Error::Backend(cloudsync_sqlite::Error::Corrupt(_)) => true,
            Error::Sqlite(e) => is_transient(e),
            Error::Backend(cloudsync_sqlite::Error::Sqlite(e)) => is_transient(e),
            _ => false,
        }
    }

    /// The store that failed, when this is a failure of one (not the caller's mistake):
    /// `control`, `payload` or `backend`. Counted by the `store_errors` metric.
    pub fn failed_store(&self) -> Option<&'static str> {
        match self {
            Error::Store(_) | Error::Migrate(_) => Some("control"),
            Error::PayloadStore(_) => Some("payload"),
            Error::Io { .. } | Error::Unreachable(_) | Error::Egress(EgressError::Unresolved { .. }) => Some("backend"),
            Error::Postgres { .. } if self.retryable() => Some("backend"),
            Error::Backend(cloudsync_sqlite::Error::Corrupt(_)) => Some("backend"),
            Error::Sqlite(_) | Error::Backend(cloudsync_sqlite::Error::Sqlite(_))
                if self.retryable() || self.code() == "internal" =>
            {
                Some("backend")
            }
            _ => None,
        }
    }

    /// The store that is unavailable for now, when this error is an outage that a retry
    /// may outlast rather than the caller's mistake or a bug: `control`, `payload` or
    /// `backend`. Answered `503` with `Retry-After`.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Error::Store(e) if transient_sqlx(e) => Some("control"),
            Error::PayloadStore(_) => Some("payload"),
            Error::Unreachable(_) | Error::Io { .. } | Error::Egress(EgressError::Unresolved { .. }) => Some("backend"),
            Error::Postgres { .. } | Error::Sqlite(_) | Error::Backend(cloudsync_sqlite::Error::Sqlite(_))
                if self.retryable() =>
            {
                Some("backend")
            }
            _ => None,
        }
    }

    /// What a tenant or a device may be told: the message without anything of the node
    /// (paths, hosts) — a generic sentence for outages and internal failures, the error
    /// itself with path-like words replaced otherwise. The full error goes to the log.
    pub fn public_message(&self) -> String {
        match (self.unavailable(), self.code()) {
            (Some("control"), _) => "the control-plane store is unavailable for now; retry later".into(),
            (Some("payload"), _) => "the payload store is unavailable for now; retry later".into(),
            (Some(_), _) => "the database is unavailable for now; retry later".into(),
            (None, "internal") => "internal error".into(),
            (None, _) => redact_paths(&self.to_string()),
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self.unavailable() {
            Some("control") => return "control_plane_unavailable",
            Some("payload") => return "payload_store_unavailable",
            Some(_) => return "database_unavailable",
            None => {}
        }
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Invalid(_) => "invalid_request",
            Error::Forbidden(_) => "forbidden",
            Error::Egress(_) => "egress_refused",
            Error::StorageQuota { .. } => "storage_quota_exceeded",
            Error::OverQuota { quota, .. } => quota.code(),
            Error::TimeBudget(_) => "time_budget_exceeded",
            Error::Postgres { sqlstate, .. } => sqlstate.api_code(),
            Error::Schema(cloudsync_ddl::TranslateError::Refused(_)) => "refused_sql",
            Error::Schema(_) => "invalid_sql",
            Error::Payload(_) => "invalid_payload",
            Error::Backend(cloudsync_sqlite::Error::Decode(_)) => "invalid_payload",
            Error::Backend(cloudsync_sqlite::Error::Incompatible(i)) => i.code(),
            Error::Backend(cloudsync_sqlite::Error::Apply(_) | cloudsync_sqlite::Error::NotSynced(_)) => {
                "incompatible_payload"
            }
            Error::Backend(cloudsync_sqlite::Error::Unsupported { .. } | cloudsync_sqlite::Error::Argument { .. }) => {
                "invalid_schema"
            }
            Error::Backend(cloudsync_sqlite::Error::Sqlite(e)) | Error::Sqlite(e) => sqlite_code(e),
            _ => "internal",
        }
    }
}

/// `text` with every word that looks like a file path (`/a/b`, `C:\\x`, `~/x`) replaced by
/// `<path>`.
pub fn redact_paths(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let core = word.trim_matches(|c: char| c.is_whitespace() || "'\"`(),;:".contains(c));
            let pathlike = (core.starts_with('/') && core[1..].contains('/'))
                || core.starts_with("~/")
                || core.get(1..3).is_some_and(|s| s == ":\\");
            if pathlike {
                word.replace(core, "<path>")
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// The caller's SQLite mistakes get their own codes; anything else (corruption,
/// permissions, I/O) is the service's problem.
fn sqlite_code(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::ConstraintViolation => "constraint_violation",
            // The sandbox's progress handler: the operation ran past its time budget.
            C::OperationInterrupted => "time_budget_exceeded",
            // The sandbox's authorizer refused something.
            C::AuthorizationForStatementDenied => "refused_sql",
            C::Unknown | C::TypeMismatch | C::TooBig | C::ParameterOutOfRange => "invalid_sql",
            _ => "internal",
        },
        rusqlite::Error::SqlInputError { .. } => "invalid_sql",
        _ => "internal",
    }
}

/// Connection-level failures of the control-plane store, and the SQLSTATEs and SQLite
/// codes that mean "busy" or "down" (not a wrong query).
fn transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            if c.len() == 5 {
                // A PostgreSQL SQLSTATE (always five characters).
                ["08", "40", "53", "57"].iter().any(|class| c.starts_with(class))
            } else {
                // A SQLite result code (at most four digits): SQLITE_BUSY, SQLITE_LOCKED,
                // SQLITE_IOERR, SQLITE_FULL and their extended codes (the primary code
                // is the low byte).
                c.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13))
            }
        }),
        _ => false,
    }
}

fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::OutOfMemory)
    )
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_redacted() {
        assert_eq!(
            super::redact_paths("payload store: /var/lib/cs/payloads/db/x: Not a directory (os error 20)"),
            "payload store: <path>: Not a directory (os error 20)"
        );
        assert_eq!(super::redact_paths("no such column: a/b"), "no such column: a/b");
        assert_eq!(super::redact_paths("'/etc/passwd' and ~/x"), "'<path>' and <path>");
    }

    #[test]
    fn whose_fault_an_error_is_decides_retry_and_code() {
        use super::Error;
        use cloudsync_protocol::Sqlstate;
        // Corrupt metadata is the server's: retried, opaque, never the device's payload.
        let corrupt = Error::Backend(cloudsync_sqlite::Error::Corrupt("stored clock: truncated".into()));
        assert_eq!((corrupt.retryable(), corrupt.code(), corrupt.failed_store()), (true, "internal", Some("backend")));
        assert_eq!(corrupt.public_message(), "internal error");
        // A payload that does not fit is the device's: not retried, said as it is.
        let bad = Error::Backend(cloudsync_sqlite::Error::NotSynced("t".into()));
        assert_eq!((bad.retryable(), bad.code()), (false, "incompatible_payload"));
        // PostgreSQL: by SQLSTATE class.
        let pg = |code: &str| Error::Postgres { sqlstate: Sqlstate::from(code), message: "m".into() };
        assert_eq!((pg("40001").retryable(), pg("40001").code()), (true, "database_unavailable"));
        assert_eq!((pg("23505").retryable(), pg("23505").code()), (false, "constraint_violation"));
        assert_eq!((pg("42501").retryable(), pg("42501").code()), (false, "permission_denied"));
        // Budgets and quotas are the tenant's: never retried, said with their own code.
        assert_eq!((pg("57014").retryable(), pg("57014").code()), (false, "time_budget_exceeded"));
        assert_eq!((pg("25P03").retryable(), pg("25P03").code()), (false, "time_budget_exceeded"));
        let late = Error::TimeBudget(std::time::Duration::from_secs(360));
        assert_eq!((late.retryable(), late.code(), late.failed_store()), (false, "time_budget_exceeded", None));
        let full = Error::StorageQuota { limit_bytes: 1 << 20, used_bytes: 1 << 20 };
        assert_eq!((full.retryable(), full.code(), full.failed_store()), (false, "storage_quota_exceeded", None));
        assert!(!full.public_message().contains('/'));
    }
}
