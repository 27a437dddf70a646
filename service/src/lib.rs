//! The CloudSync service's domain: everything it knows and does besides speaking HTTP.
//!
//! The domain types with their validation ([`model`], no storage); the control plane
//! ([`control::ControlPlane`], on SQLite or PostgreSQL, one file per resource: tenants,
//! databases, API keys ([`control::keys`]), identity settings and JWT verification
//! ([`control::identity`]), devices and usage ([`control::devices`]), the durable apply
//! queue ([`control::jobs`])); secrets at rest ([`secrets`]), pagination ([`page`]),
//! deletion with data ([`deletion`]); the payload stores
//! ([`payloads`]), the tenant databases ([`backends::Backends`], each a
//! [`backends::TenantDb`]: SQLite files ([`backends::sqlite`], each connection in the
//! [`sandbox`]) or tenants' PostgreSQL ([`backends::postgres`]), used as each device's
//! [`actor::Actor`]), the apply
//! workers ([`worker`]) and in-process change notifications ([`notify`]). What spans the
//! control plane and the tenant databases for every front end is in [`ops`]. Every
//! connection to a tenant-supplied host goes through the [`egress`] policy.
//!
//! It is not the HTTP layer (`cloudsync-api`) and owns no configuration parsing
//! (`cloudsync` binary). Operators' aggregates are in [`control::overview`], admin
//! dashboard sessions in [`control::sessions`]. State that must survive a crash lives in the control-plane
//! store, the payload store and the tenant databases, never only in memory.

pub mod actor;
pub mod backends;
pub mod control;
pub mod deletion;
pub mod egress;
pub mod error;
pub mod fair;
pub mod ids;
pub mod model;
pub mod notify;
pub mod ops;
pub mod page;
pub mod payloads;
pub mod sandbox;
pub mod secrets;
pub mod worker;

pub use error::{Error, Result};
