//! Postgres Sync: the cloudsync CRDT engine inside PostgreSQL.
//!
//! `CREATE EXTENSION cloudsync` turns a PostgreSQL database into a replica that merges
//! payloads from SQLite devices and tracks changes made directly in PostgreSQL, with
//! the same SQL API as the SQLite extension. Every merge decision and codec comes from
//! `cloudsync-core`; this crate is the PostgreSQL adapter: catalog reading and type
//! mapping ([`types`], [`table`]), change capture ([`triggers`], [`fold`]), the feed
//! ([`feed`]), the merge store ([`store`]) and the SQL functions ([`api`]).
//!
//! See `docs/postgres.md` for the user's guide.

mod api;
mod batch;
mod error;
mod feed;
mod fold;
mod lifecycle;
mod meta;
mod role;
mod sql;
mod store;
mod subxact;
mod table;
mod triggers;
mod types;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

// The extension's entry point: the module magic block PostgreSQL checks when it loads
// the library. The macro expands to the `PG_MODULE_MAGIC` data and `_PG_init`-free
// glue; the only other `unsafe` code of this crate is `subxact` (internal
// subtransactions, which pgrx does not wrap), each call with its SAFETY comment.
::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off set-up when the test cluster starts.
    pub fn setup(_options: Vec<&str>) {}

    /// postgresql.conf settings the tests need.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
