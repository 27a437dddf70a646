//! API keys: generated from 32 random bytes, shown once, stored as a SHA-256 digest.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes cloudsync keys recognisable (and greppable in leaked logs).
pub const PREFIX: &str = "csk_";

/// A new secret key.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest stored for a key. Keys have 256 bits of entropy, so a plain (unsalted)
/// SHA-256 is enough to make the stored value useless to an attacker while letting
/// authentication look keys up by digest.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything in its tenant.
    Admin,
    /// Upload and download changes.
    Sync,
    /// Provision tables.
    Schema,
}

impl Scope {
    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "admin" => Some(Scope::Admin),
            "sync" => Some(Scope::Sync),
            "schema" => Some(Scope::Schema),
            _ => None,
        }
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Sync => "sync",
            Scope::Schema => "schema",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_digests_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() > 40);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }
}
