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

impl Actor {
    /// The actor as an apply job keeps it: only the claims `policies` (a SQLite
    /// backend's write policies) can read — `auth_claim('path')` with a literal path —
    /// besides the user and the role. A policy that names a claim any other way keeps
    /// every claim. (A PostgreSQL backend's row-level security may read any claim of
    /// `request.jwt.claims`: its jobs keep them all.)
    pub fn for_job<'a>(&self, policies: impl IntoIterator<Item = &'a str>) -> Actor {
        let mut paths = Vec::new();
        for policy in policies {
            match claim_paths(policy) {
                Some(found) => paths.extend(found),
                None => return self.clone(),
            }
        }
        let mut kept = serde_json::Map::new();
        for key in ["sub", "role"] {
            if let Some(v) = self.claims.get(key) {
                kept.insert(key.into(), v.clone());
            }
        }
        for path in paths {
            if let Some(v) = claim(&self.claims, &path) {
                let mut at = &mut kept;
                let parts: Vec<&str> = path.split('.').collect();
                for (i, part) in parts.iter().enumerate() {
                    if i + 1 == parts.len() {
                        at.insert((*part).to_string(), v.clone());
                    } else {
                        let next = at
                            .entry((*part).to_string())
                            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                        if !next.is_object() {
                            *next = serde_json::Value::Object(serde_json::Map::new());
                        }
                        at = next.as_object_mut().unwrap_or_else(|| unreachable!("made an object just above"));
                    }
                }
            }
        }
        Actor { role: self.role.clone(), user_id: self.user_id.clone(), claims: serde_json::Value::Object(kept) }
    }
}

/// The literal paths of every `auth_claim('…')` in `policy`; None when a call's
/// argument is not one string literal (the paths cannot be known).
fn claim_paths(policy: &str) -> Option<Vec<String>> {
    let lower = policy.to_ascii_lowercase();
    let mut paths = Vec::new();
    let mut rest = 0;
    while let Some(found) = lower[rest..].find("auth_claim") {
        let after = rest + found + "auth_claim".len();
        let args = policy[after..].trim_start();
        let args = args.strip_prefix('(')?.trim_start();
        let body = args.strip_prefix('\'')?;
        // A literal ends at a quote not doubled.
        let mut text = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            if c == '\'' {
                if body[i + 1..].starts_with('\'') {
                    text.push('\'');
                    chars.next();
                    continue;
                }
                break i + 1;
            }
            text.push(c);
        };
        if !body[end..].trim_start().starts_with(')') {
            return None;
        }
        paths.push(text);
        rest = policy.len() - body[end..].len();
    }
    Some(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_keeps_only_the_claims_its_policies_read() {
        let actor = Actor {
            role: "authenticated".into(),
            user_id: Some("u1".into()),
            claims: json!({ "sub": "u1", "role": "authenticated", "email": "u1@example.com",
                "app_metadata": { "team": "red", "plan": "pro" }, "exp": 1, "phone": "+1555" }),
        };
        let kept = actor.for_job(["owner = auth_uid() AND team = AUTH_CLAIM ( 'app_metadata.team' )", "1"]);
        assert_eq!(kept.claims, json!({ "sub": "u1", "role": "authenticated", "app_metadata": { "team": "red" } }));
        assert_eq!((kept.role.as_str(), kept.user_id.as_deref()), ("authenticated", Some("u1")));
        // No policy: the user and the role only.
        assert_eq!(actor.for_job([]).claims, json!({ "sub": "u1", "role": "authenticated" }));
        // A path that is not a literal: everything kept.
        assert_eq!(actor.for_job(["auth_claim(body) = 'x'"]).claims, actor.claims);
        assert_eq!(actor.for_job(["auth_claim('a' || 'b') = 'x'"]).claims, actor.claims);
        // Quotes doubled inside the literal; a missing claim adds nothing.
        assert_eq!(
            actor.for_job(["auth_claim('it''s') IS NULL AND auth_claim('email') <> ''"]).claims,
            json!({ "sub": "u1", "role": "authenticated", "email": "u1@example.com" })
        );
    }
}
