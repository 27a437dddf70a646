//! The CloudSync control plane.
//!
//! Everything the service knows and does besides speaking HTTP: the control-plane store
//! ([`store::ControlPlane`], on SQLite or PostgreSQL: tenants and databases, API keys
//! ([`keys`]), identity settings and JWT verification ([`identity`]), devices and usage
//! ([`devices`]), secrets at rest ([`secrets`]), pagination ([`page`]), deletion with
//! data ([`deletion`])) and its durable apply queue ([`jobs`]), the payload stores
//! ([`payloads`]), the tenant databases ([`backends::Backends`], each a
//! [`backends::TenantDb`]: SQLite files ([`backends::sqlite`], each connection in the
//! [`sandbox`]) or tenants' PostgreSQL ([`backends::postgres`]), used as each device's
//! [`actor::Actor`]), the apply
//! workers ([`worker`]) and in-process change notifications ([`notify`]). Every
//! connection to a tenant-supplied host goes through the [`egress`] policy.
//!
//! It is not the HTTP layer (`cloudsync-api`) and owns no configuration parsing
//! (`cloudsync` binary). Operators' aggregates are in [`overview`], admin dashboard
//! sessions in [`sessions`]. State that must survive a crash lives in the control-plane
//! store, the payload store and the tenant databases, never only in memory.

pub mod actor;
pub mod backends;
pub mod deletion;
pub mod devices;
pub mod egress;
pub mod error;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod keys;
pub mod model;
pub mod notify;
pub mod overview;
pub mod page;
pub mod payloads;
pub mod sandbox;
pub mod secrets;
pub mod sessions;
pub mod store;
pub mod worker;

pub use error::{Error, Result};
