//! Secrets at rest: tenants' JWT signing secrets are sealed with ChaCha20-Poly1305
//! under the node's secrets key before they reach the control-plane store.
//!
//! Sealed form: `0x01 ‖ nonce (12 bytes) ‖ ciphertext+tag`. The tenant id is the
//! associated data, so a sealed secret copied to another tenant's row does not open.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::{Error, Result};

const VERSION: u8 = 1;

/// The key that seals secrets (every node of a deployment needs the same one).
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A key from its text form: 32 bytes, base64url without padding.
    pub fn from_text(text: &str) -> Result<SecretBox> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::Invalid("the secrets key must be 32 bytes in unpadded base64url".into()))?;
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }

    /// A new random key, in its text form.
    pub fn generate_text() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    }

    /// Seals `plain`, bound to `context` (the owning tenant's id).
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: context.as_bytes() })
            .map_err(|_| Error::Invalid("cannot seal the secret".into()))?;
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SecretBox::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>> {
        let unreadable = || {
            Error::Invalid(
                "a stored secret cannot be opened with this node's secrets key (was the key changed?)".into(),
            )
        };
        if sealed.len() < 13 || sealed[0] != VERSION {
            return Err(unreadable());
        }
        self.cipher
            .decrypt(Nonce::from_slice(&sealed[1..13]), Payload { msg: &sealed[13..], aad: context.as_bytes() })
            .map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_key_and_context() {
        let a = SecretBox::from_text(&SecretBox::generate_text()).unwrap();
        let b = SecretBox::from_text(&SecretBox::generate_text()).unwrap();
        let sealed = a.seal(b"hunter2", "tenant-1").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(a.open(&sealed, "tenant-1").unwrap(), b"hunter2");
        assert!(a.open(&sealed, "tenant-2").is_err());
        assert!(b.open(&sealed, "tenant-1").is_err());
        assert!(SecretBox::from_text("short").is_err());
    }
}
