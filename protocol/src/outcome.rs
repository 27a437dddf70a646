//! What applying a payload did — changes applied, rows refused — and the SQLSTATE codes
//! refusals and errors are named by, with the one place they are classified.
//!
//! A database reports what went wrong as a SQLSTATE: PostgreSQL natively, SQLite by
//! naming its constraint codes the same way (the SQLite adapter's `Replica`), so refused
//! rows read alike whatever the backend. What the service does about an error — retry
//! it, refuse one row and apply the rest, or tell the caller — is decided here by the
//! code's class, never by a message.

use serde::{Deserialize, Serialize};

/// A row a database refused to take from a payload (a policy, a constraint, a value
/// its column cannot hold): the rest of the payload was applied without it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedRow {
    /// Table.
    pub table: String,
    /// The row's primary key, shown (`'a1'`, `42`, `'x', 3`).
    pub key: String,
    /// SQLSTATE of the refusal (`42501`: row-level security or privileges; `23xxx`:
    /// a constraint; `22xxx`: a value).
    pub sqlstate: Sqlstate,
    /// The database's message.
    pub message: String,
}

/// What applying a payload did: each row applied whole, or refused whole and left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// Incoming changes that changed the database.
    pub applied: u64,
    /// Rows the database refused (the rest was applied).
    pub refused: Vec<RefusedRow>,
}

/// A five-character SQLSTATE (`42501`, `23505`…); empty when the server gave none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
#[serde(transparent)]
pub struct Sqlstate(String);

impl Sqlstate {
    /// `42501`: privileges or row-level security.
    pub const INSUFFICIENT_PRIVILEGE: &'static str = "42501";
    /// `23000`: an integrity constraint, unspecified.
    pub const INTEGRITY_CONSTRAINT: &'static str = "23000";
    /// `23502`: NOT NULL.
    pub const NOT_NULL: &'static str = "23502";
    /// `23503`: a foreign key.
    pub const FOREIGN_KEY: &'static str = "23503";
    /// `23505`: UNIQUE or PRIMARY KEY.
    pub const UNIQUE: &'static str = "23505";
    /// `23514`: CHECK.
    pub const CHECK: &'static str = "23514";
    /// `22000`: a data exception, unspecified (a value its column cannot hold).
    pub const DATA_EXCEPTION: &'static str = "22000";
    /// `55000`: an object not in the required state (Postgres Sync: a table not synced).
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &'static str = "55000";
    /// `42883`: an undefined function (an extension older than the call).
    pub const UNDEFINED_FUNCTION: &'static str = "42883";
    /// `42P01`: an undefined table.
    pub const UNDEFINED_TABLE: &'static str = "42P01";
    /// `55P03`: a lock not available (a lock timeout).
    pub const LOCK_NOT_AVAILABLE: &'static str = "55P03";
    /// `57014`: a statement cancelled, here by `statement_timeout` (the node's time
    /// budget for one statement).
    pub const QUERY_CANCELED: &'static str = "57014";
    /// `25P03`: the session closed by `idle_in_transaction_session_timeout`.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &'static str = "25P03";

    /// The code as given.
    pub fn new(code: impl Into<String>) -> Sqlstate {
        Sqlstate(code.into())
    }

    /// The code's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its class: the first two characters (`23` for integrity constraints).
    pub fn class(&self) -> &str {
        self.0.get(..2).unwrap_or("")
    }

    /// Whether this is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.0 == code
    }

    /// Whether the database refuses one row for good (a retry would be refused again),
    /// so the row is recorded and the rest of the payload applied: privileges and
    /// row-level security, integrity constraints (class 23), data exceptions (class 22).
    pub fn refuses_row(&self) -> bool {
        self.is(Self::INSUFFICIENT_PRIVILEGE) || matches!(self.class(), "23" | "22")
    }

    /// Whether the same statement may succeed later: connection exceptions (08),
    /// transaction rollbacks — serialization failures, deadlocks (40) —, insufficient
    /// resources (53), operator intervention (57) other than a statement past its time
    /// budget, a lock timeout.
    pub fn is_transient(&self) -> bool {
        (matches!(self.class(), "08" | "40" | "53" | "57") && !self.over_budget()) || self.is(Self::LOCK_NOT_AVAILABLE)
    }

    /// Whether the statement ran past the node's time budget (`statement_timeout`,
    /// `idle_in_transaction_session_timeout`): the same work would again.
    pub fn over_budget(&self) -> bool {
        self.is(Self::QUERY_CANCELED) || self.is(Self::IDLE_IN_TRANSACTION_TIMEOUT)
    }

    /// The API's stable code for a statement refused with this SQLSTATE.
    pub fn api_code(&self) -> &'static str {
        if self.is(Self::INSUFFICIENT_PRIVILEGE) {
            return "permission_denied";
        }
        if self.over_budget() {
            return "time_budget_exceeded";
        }
        match self.class() {
            "23" => "constraint_violation",
            "22" => "invalid_value",
            "42" => "incompatible_payload",
            _ => "internal",
        }
    }
}

impl std::fmt::Display for Sqlstate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Sqlstate {
    fn from(code: &str) -> Sqlstate {
        Sqlstate::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_decide_what_the_service_does() {
        for (code, refuses, transient, api) in [
            ("42501", true, false, "permission_denied"),
            ("23505", true, false, "constraint_violation"),
            ("23514", true, false, "constraint_violation"),
            ("22P02", true, false, "invalid_value"),
            ("42703", false, false, "incompatible_payload"),
            ("40001", false, true, "internal"),
            ("40P01", false, true, "internal"),
            ("08006", false, true, "internal"),
            ("53300", false, true, "internal"),
            ("57P01", false, true, "internal"),
            ("57014", false, false, "time_budget_exceeded"),
            ("25P03", false, false, "time_budget_exceeded"),
            ("55P03", false, true, "internal"),
            ("55000", false, false, "internal"),
            ("XX000", false, false, "internal"),
            ("", false, false, "internal"),
        ] {
            let s = Sqlstate::from(code);
            assert_eq!((s.refuses_row(), s.is_transient(), s.api_code()), (refuses, transient, api), "{code}");
        }
    }

    #[test]
    fn an_outcome_reads_back_as_written() {
        let outcome = ApplyOutcome {
            applied: 3,
            refused: vec![RefusedRow {
                table: "todos".into(),
                key: "'a1'".into(),
                sqlstate: Sqlstate::from(Sqlstate::CHECK),
                message: "new row violates check constraint".into(),
            }],
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["refused"][0]["sqlstate"], "23514", "a SQLSTATE is its text on the wire");
        assert_eq!(serde_json::from_value::<ApplyOutcome>(json).unwrap(), outcome);
    }
}
