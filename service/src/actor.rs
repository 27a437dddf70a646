//! Who a device's sync request or apply job acts for.
//!
//! The actor is resolved when a request is authenticated (its role checked against the
//! database's [`crate::model::RoleSettings`]) and stored with each apply job, so the
//! job is applied under the identity that uploaded it, on whichever node runs it.

use serde::{Deserialize, Serialize};

/// The identity a device acts with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// The role: on PostgreSQL backends the database role changes run as
    /// (`SET LOCAL ROLE`), on SQLite backends `auth_role()`.
    pub role: String,
    /// The user id (the JWT's user claim), if any.
    pub user_id: Option<String>,
    /// What `request.jwt.claims` (and `auth_claim()`) holds: the token's verified
    /// claims, or `{"role": …, "key_id": …}` for a device using an API key.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub claims: serde_json::Value,
}

/// The value at a dot-separated `path` of JSON claims (`email`,
/// `app_metadata.tenant`), as `auth_claim()` returns it to SQL.
pub fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}
