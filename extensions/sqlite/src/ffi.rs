//! The only `unsafe` of the SQLite adapter: borrowing the connection a SQL function
//! or virtual table is running on.
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
