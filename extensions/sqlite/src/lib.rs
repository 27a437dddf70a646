//! SQLite Sync: the cloudsync CRDT engine inside SQLite.
//!
//! This crate turns ordinary SQLite tables into conflict-free replicated tables and
//! exposes everything as SQL functions (`cloudsync_*`) and the `cloudsync_changes`
//! virtual table. It is used three ways: compiled into the loadable extension
//! `libcloudsync.so` by the `cloudsync-loadable` crate; as a Rust library registering
//! the same functions on a `rusqlite::Connection` ([`register`]); and by a host that
//! drives a database from Rust — the service's central copies — through one facade,
//! [`Replica`]. Its modules are private: the SQL functions, [`Replica`] and
//! [`Error`] are the whole API.
//!
//! **Layout.** Local writes are recorded by plain-SQL triggers ([`triggers`]) into a
//! per-table log, folded into one clock row per key ([`fold`]) before anything reads
//! or merges clocks; the feed of changes is read from the clocks ([`changes`]);
//! remote changes are merged by the core through [`store::SqliteStore`] ([`apply`]).
//! Every merge decision and codec lives in `cloudsync-core`; this crate only moves
//! data between SQLite and the core.
//!
//! **Unsafe.** This is one of the two extension crates allowed `unsafe`: borrowing
//! the connection a SQL function or virtual table runs on ([`ffi`]) and the virtual
//! table trait implementations rusqlite requires ([`vtab`]). Nothing else.

mod apply;
mod changes;
pub mod error;
mod ffi;
mod filter;
mod fold;
mod functions;
mod lifecycle;
mod meta;
#[cfg(feature = "network")]
mod network;
mod payload;
pub mod replica;
mod schema;
mod settings;
mod sql;
mod state;
mod store;
mod triggers;
mod vtab;

use std::sync::Arc;

pub use error::{Error, Result};
pub use replica::{Policies, Replica};
pub use state::ConnState;

/// Registers the `cloudsync_*` functions and the `cloudsync_changes` virtual table on
/// a connection, and returns the connection's state (pass it to [`apply::apply`] when
/// merging from Rust). Re-registering replaces the functions.
pub fn register(conn: &rusqlite::Connection) -> Result<Arc<state::ConnState>> {
    let state = Arc::new(state::ConnState::default());
    functions::register(conn, Arc::clone(&state))?;
    vtab::register(conn, Arc::clone(&state))?;
    Ok(state)
}

/// Registers only what the engine's own schema objects call (`cloudsync_is_merging`
/// in guard triggers, `cloudsync_version`, `cloudsync_uuid`), all innocuous: for a host
/// that drives the engine from Rust and must not offer SQL a way to files or the network
/// (the service's tenant databases). No virtual table, no `cloudsync_payload_save`.
pub fn register_engine(conn: &rusqlite::Connection) -> Result<Arc<state::ConnState>> {
    let state = Arc::new(state::ConnState::default());
    functions::register_engine(conn, Arc::clone(&state))?;
    Ok(state)
}
