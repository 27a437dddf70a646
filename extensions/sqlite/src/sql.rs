//! The audited SQL-building helpers: identifier quoting, value conversion, and
//! savepoints.
//!
//! Every identifier that reaches SQL text goes through [`ident`]; every value is
//! bound as a parameter through [`Bind`]. Nothing else in this crate formats
//! user-supplied names into SQL.

use cloudsync_core::Value;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;

/// Quotes an identifier for SQLite: wrapped in double quotes, inner quotes doubled.
/// Correct for any string, including ones with quotes, spaces, NULs excluded (SQLite
/// identifiers cannot contain NUL; callers validate that).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Binds a core [`Value`] without copying (text is bound as the exact bytes stored).
pub struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Reads a SQLite value into a core [`Value`].
pub fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(t.to_vec()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Converts a SQLite integer to a non-negative version number.
pub fn u64_of(v: i64, what: &'static str) -> crate::Result<u64> {
    u64::try_from(v).map_err(|_| crate::Error::Corrupt(format!("negative {what} {v}")))
}

/// Converts a version number to a SQLite integer.
pub fn i64_of(v: u64) -> crate::Result<i64> {
    i64::try_from(v).map_err(|_| crate::Error::Apply(format!("version {v} exceeds SQLite's integer range")))
}

/// A clock as stored in a `<table>_cloudsync` row; one that does not decode is corrupt
/// metadata, not a bad payload.
pub fn stored_clock(cl: u64, at: cloudsync_core::Cursor, blob: &[u8]) -> crate::Result<cloudsync_core::RowClock> {
    cloudsync_core::RowClock::decode(cl, at, blob).map_err(|e| crate::Error::Corrupt(format!("stored clock: {e}")))
}

/// Runs `f` inside a savepoint: released on success, rolled back on error.
///
/// Inside a statement that is itself writing (an `INSERT INTO cloudsync_changes`, a
/// trigger), SQLite refuses new savepoints; there the enclosing statement is already
/// atomic (it rolls back whole on error), so `f` runs in it directly.
pub fn in_savepoint<T>(
    conn: &rusqlite::Connection,
    name: &str,
    f: impl FnOnce() -> crate::Result<T>,
) -> crate::Result<T> {
    if let Err(e) = conn.execute_batch(&format!("SAVEPOINT {name}")) {
        // Opening a savepoint takes no lock (the transaction starts lazily), so
        // SQLITE_BUSY here has one cause: a writing statement in progress.
        let in_statement =
            matches!(&e, rusqlite::Error::SqliteFailure(err, _) if err.code == rusqlite::ErrorCode::DatabaseBusy);
        if in_statement {
            return f();
        }
        return Err(e.into());
    }
    let result = f().and_then(|v| {
        // Releasing the outermost savepoint commits, and a commit can still fail (a
        // deferred foreign-key violation): that must roll back too.
        conn.execute_batch(&format!("RELEASE {name}"))?;
        Ok(v)
    });
    if result.is_err() {
        // The original error matters more than a failure to roll back.
        let _ = conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("t"), "\"t\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
