//! The engine-agnostic core of cloudsync.
//!
//! This crate is the CRDT engine that SQLite Sync, Postgres Sync and the CloudSync
//! service share: value and key codecs ([`value`]), per-row clocks ([`clock`]), the
//! rules for local writes ([`local`]) and for merging remote changes ([`merge`]), the
//! merge driver written against a small storage trait ([`engine::Store`]), change
//! records and changesets ([`change`]), payload format v1 ([`payload`]), schema
//! fingerprints ([`schema`]) and the paged feed reader whose cursor never passes over a
//! change ([`feed`]).
//!
//! It is **not** a database adapter: it does no I/O, knows nothing of SQLite,
//! PostgreSQL, HTTP or async, and never panics on input. [`memory::MemReplica`] is an
//! in-memory store used to test the engine and to serve as a reference model.

pub mod algo;
pub mod change;
pub mod clock;
pub mod engine;
pub mod error;
pub mod feed;
pub mod ids;
pub mod local;
pub mod memory;
pub mod merge;
pub mod payload;
pub mod schema;
pub mod settings;
pub mod value;
pub mod varint;

pub use algo::Algo;
pub use change::{Change, Changeset};
pub use clock::RowClock;
pub use error::DecodeError;
pub use ids::{ColId, Cursor, SiteId, SiteOrd, Stamp, LOCAL_SITE};
pub use value::Value;

/// The library version, as reported by `cloudsync_version()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
