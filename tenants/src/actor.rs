//! Who a device's sync request or apply job acts for, and what a database refused of
//! its changes.
//!
//! The actor is resolved when a request is authenticated (its role checked against the
//! database's [`crate::model::RoleSettings`]) and stored with each apply job, so the
//! job is applied under the identity that uploaded it, on whichever node runs it.

use serde::{Deserialize, Serialize};

use cloudsync_core::Value;

/// The identity a device acts with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// The role: on PostgreSQL backends the database role changes run as
    /// (`SET LOCAL ROLE`), on SQLite backends `auth_role()`.
    pub role: String,
    /// The user id (the JWT's user claim), if any.
    pub user_id: Option<String>,
    /// What `request.jwt.claims` (and `auth_claim()`) holds: the token's verified
    /// claims, or `{"role": …, "key_id": …}` for a device using an API key.
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
}

/// A row a database refused to take from a payload (a policy, a constraint, a value
/// its column cannot hold): the rest of the payload was applied without it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefusedRow {
    /// Table.
    pub table: String,
    /// The row's primary key, shown (`'a1'`, `42`, `'x', 3`).
    pub key: String,
    /// SQLSTATE of the refusal (`42501`: row-level security or privileges; `23xxx`:
    /// a constraint; `22xxx`: a value).
    pub sqlstate: crate::sqlstate::Sqlstate,
    /// The database's message.
    pub message: String,
}

/// What applying a payload did: changes applied, rows refused.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Changes that changed the database.
    pub applied: i64,
    /// Rows the database refused (the rest was applied).
    pub refused: Vec<RefusedRow>,
}

/// A primary key (the payload's encoding) as people read it.
pub fn show_key(mut pk: &[u8]) -> String {
    let mut parts = Vec::new();
    while !pk.is_empty() {
        match Value::decode(&mut pk) {
            Ok(v) => parts.push(show_value(&v)),
            Err(_) => {
                parts.push(format!("x'{}'", hex::encode(pk)));
                break;
            }
        }
    }
    parts.join(", ")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
        Value::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// The value at a dot-separated `path` of JSON claims (`email`,
/// `app_metadata.tenant`), as `auth_claim()` returns it to SQL.
pub fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsync_core::value::encode_key;

    #[test]
    fn keys_are_shown_readably() {
        let pk = encode_key(&[Value::text("a'1"), Value::Integer(7), Value::Blob(vec![0, 255])]);
        assert_eq!(show_key(&pk), "'a''1', 7, x'00ff'");
    }
}
