//! Internal subtransactions: run a step so that, if the database refuses it, only what
//! the step did is rolled back and the caller goes on — what PL/pgSQL's
//! `BEGIN … EXCEPTION` does, for one row of a payload.
//!
//! **Unsafe.** pgrx 0.18 has no safe wrapper for internal subtransactions, so this is
//! the one module of the crate besides the entry-point glue that calls PostgreSQL's C
//! API directly: `BeginInternalSubTransaction`, a fresh snapshot for the step,
//! `ReleaseCurrentSubTransaction`, `RollbackAndReleaseCurrentSubTransaction`, and
//! restoring the memory context and
//! resource owner afterwards, in the order PL/pgSQL's `exec_stmt_block` uses. Errors
//! PostgreSQL raises inside the step arrive as pgrx's caught errors (already copied
//! out of PostgreSQL's error state and flushed by pgrx).
#![allow(unsafe_code)]

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// Why a step was rolled back: the SQLSTATE (five characters) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE.
    pub sqlstate: String,
    /// The database's message.
    pub message: String,
}

/// How a step ended.
pub enum Step<T, E> {
    /// It succeeded; its work is kept.
    Done(T),
    /// It failed with an error the caller's `refuses` accepted; its work was rolled back.
    Refused(Refusal),
    /// It failed otherwise (its work was rolled back); the caller fails.
    Failed(E),
}

/// Runs `step` in an internal subtransaction. When it returns `Err(e)` and
/// `refuses(&e)` gives a refusal, or PostgreSQL raises an error whose SQLSTATE
/// `refuses_code` accepts, the subtransaction is rolled back and the refusal returned;
/// any other PostgreSQL error is raised again, as it was, after the rollback.
///
/// `step` must not keep SPI results, prepared statements or other PostgreSQL objects it
/// created beyond its return: they belong to the subtransaction.
pub fn attempt<T, E>(
    step: impl FnOnce() -> Result<T, E>,
    refuses: impl Fn(&E) -> Option<Refusal>,
    refuses_code: impl Fn(&str) -> bool,
) -> Step<T, E> {
    // SAFETY: called from a SQL function, inside a transaction: reading the current
    // memory context and resource owner is reading two backend globals.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: inside a transaction (we are in a SQL function call), starting an
    // internal subtransaction is allowed; it switches the memory context, which we
    // switch back so the step runs (and allocates) where the caller does. The step's
    // reads then run on a fresh snapshot, taken after the command counter moved past
    // everything done so far (earlier steps included), as each statement of a PL/pgSQL
    // function gets one: without it, read-only SPI queries would keep reading the
    // calling statement's snapshot and miss what earlier steps wrote.
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome: Result<Result<T, E>, Box<CaughtError>> =
        PgTryBuilder::new(AssertUnwindSafe(|| Ok(step()))).catch_others(|e| Err(Box::new(e))).execute();
    let keep = matches!(outcome, Ok(Ok(_)));
    // SAFETY: the subtransaction begun above is the current one: the step either
    // returned normally (any subtransaction it began itself was closed by the same
    // rules), or PostgreSQL unwound to the `PgTryBuilder` above, which flushed the error
    // state after pgrx copied it out. Closing the subtransaction and restoring the
    // caller's memory context and resource owner is what PL/pgSQL does after a block
    // with an exception handler.
    unsafe {
        if keep {
            // The snapshot pushed above; an abort pops it itself.
            pg_sys::PopActiveSnapshot();
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    match outcome {
        Ok(Ok(v)) => Step::Done(v),
        Ok(Err(e)) => match refuses(&e) {
            Some(r) => Step::Refused(r),
            None => Step::Failed(e),
        },
        Err(caught) => match *caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report)
                if refuses_code(&sqlstate(report.sql_error_code())) =>
            {
                let sqlstate = sqlstate(report.sql_error_code());
                Step::Refused(Refusal { sqlstate, message: report.message().to_string() })
            }
            // Anything else (a Rust panic is a bug) fails the statement as it was raised.
            other => other.rethrow(),
        },
    }
}

/// The five characters of an error code (PostgreSQL packs them six bits each, the
/// first lowest).
pub fn sqlstate(code: pgrx::PgSqlErrorCode) -> String {
    let packed = code as isize;
    (0..5)
        .map(|i| {
            let six = u8::try_from((packed >> (6 * i)) & 0x3f).unwrap_or(0);
            char::from(six + b'0')
        })
        .collect()
}
