//! The sync protocol's shared types, in one place for every party that speaks it: the
//! service (`api`), the SQLite extension's network layer, Postgres Sync and the CLI.
//!
//! Only data and its serde form live here — no I/O, no engine. A change to a type here
//! is a change to the wire contract (`docs/protocol.md`); every party sees it at compile
//! time instead of in an end-to-end test.
//!
//! With the `transport` feature, [`transport`] tells a user what a request that got no
//! HTTP answer means (for the clients: the extension and the CLI).
//!
//! With the `openapi` feature the types also describe themselves for the service's
//! OpenAPI document.

pub mod credentials;
pub mod error;
pub mod outcome;
pub mod sync;
pub mod tables;
#[cfg(feature = "transport")]
pub mod transport;

pub use error::{ErrorBody, ErrorDetail};
pub use outcome::{ApplyOutcome, RefusedRow, Sqlstate};
pub use tables::{Provisioned, Provisioning, TableInfo, Tables};
