//! The only `unsafe` of the SQLite adapter: borrowing the connection a SQL function
//! or virtual table is running on, and reading one connection status rusqlite does
//! not wrap.
//!
//! rusqlite marks these accessors `unsafe` because nothing stops the borrowed handle
//! from being sent to another thread. Here it never leaves the call that borrowed it.
#![allow(unsafe_code)]

use rusqlite::functions::Context;
use rusqlite::vtab::VTabConnection;
use rusqlite::Connection;

use crate::Result;

/// Runs `f` with the connection that is executing the SQL function call `ctx`.
pub fn with_conn<T>(ctx: &Context<'_>, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // SAFETY: the handle is the one SQLite passed for this call, on this thread; the
    // returned reference borrows `ctx`, so it cannot outlive the call, and `f` only
    // uses it synchronously on this thread. SQLite allows SQL functions to run
    // statements on their own connection.
    let conn = unsafe { ctx.get_connection() }?;
    f(&conn)
}

/// A non-owning connection over the handle a virtual table was connected on.
pub fn vtab_conn(db: &mut VTabConnection) -> Result<Connection> {
    // SAFETY: the handle belongs to the connection that owns the virtual table; the
    // returned `Connection` does not close it on drop (`from_handle` is non-owning),
    // and the virtual table and its cursors only use it from SQLite callbacks, which
    // run on the connection's thread while the connection is open.
    let conn = unsafe { Connection::from_handle(db.handle()) }?;
    Ok(conn)
}

/// Whether the connection's open transaction holds foreign-key violations unresolved
/// (`SQLITE_DBSTATUS_DEFERRED_FKS`: false if and only if every constraint, deferred or
/// not, is satisfied): what its commit would refuse. Savepoints restore the count
/// behind it when rolled back to.
pub fn unresolved_foreign_keys(conn: &Connection) -> Result<bool> {
    let (mut current, mut highwater) = (0, 0);
    // SAFETY: `handle` is the open connection `conn` borrows, used on this thread for
    // the duration of the call; `sqlite3_db_status` only writes the two integers it is
    // given pointers to, which live on this stack frame.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_DEFERRED_FKS,
            &mut current,
            &mut highwater,
            0,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), None).into());
    }
    Ok(current != 0)
}
