//! The shapes of the credentials a device presents, checked where they are set so a
//! mistake fails at once with what to do instead of later as a `401`.
//!
//! API keys are `csk_` followed by URL-safe base64 (the service issues them:
//! `service/src/control/keys.rs`); the operator's admin token starts with `csa_`; device
//! tokens are JWTs (three base64url segments). Nothing here says whether a credential is
//! valid: only the server knows that.

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "csk_";
/// The prefix of a generated admin token.
pub const ADMIN_TOKEN_PREFIX: &str = "csa_";
/// Longest credential accepted (a JWT with many claims stays far below).
pub const MAX_CREDENTIAL_LEN: usize = 16 << 10;

/// Why a credential was refused when set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Nothing was given.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// Longer than [`MAX_CREDENTIAL_LEN`].
    #[error("the {0} is longer than {MAX_CREDENTIAL_LEN} bytes")]
    TooLong(&'static str),
    /// Characters no credential has (spaces, line breaks, quotes…), often from copying.
    #[error("the {0} holds characters no {0} has (spaces, line breaks or quotes, often from copying); pass it exactly as issued")]
    BadCharacters(&'static str),
    /// The operator's admin token, which must never be on a device.
    #[error("this is the operator's admin token, not a sync key: create one with `cloudsync key create --tenant T --name N --scope sync` (csk_…)")]
    AdminToken,
    /// A JWT given as an API key.
    #[error("this looks like a JWT: pass it to cloudsync_network_set_token")]
    JwtAsKey,
    /// An API key given as a JWT.
    #[error("this is an API key: pass it to cloudsync_network_set_apikey")]
    KeyAsJwt,
    /// Not of the form the credential has.
    #[error("{0}")]
    Malformed(&'static str),
}

fn common(s: &str, what: &'static str) -> Result<(), CredentialError> {
    if s.is_empty() {
        return Err(CredentialError::Empty(what));
    }
    if s.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::TooLong(what));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'') {
        return Err(CredentialError::BadCharacters(what));
    }
    Ok(())
}

fn base64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the shape of an API key.
pub fn check_api_key(key: &str) -> Result<(), CredentialError> {
    common(key, "API key")?;
    if key.starts_with(ADMIN_TOKEN_PREFIX) {
        return Err(CredentialError::AdminToken);
    }
    if looks_like_jwt(key) {
        return Err(CredentialError::JwtAsKey);
    }
    match key.strip_prefix(API_KEY_PREFIX) {
        Some(rest) if base64url(rest) => Ok(()),
        _ => Err(CredentialError::Malformed(
            "an API key is csk_ followed by letters, digits, '-' and '_', as shown once when it was created",
        )),
    }
}

/// Checks the shape of a device token (a JWT in compact form).
pub fn check_jwt(token: &str) -> Result<(), CredentialError> {
    common(token, "token")?;
    if token.starts_with(API_KEY_PREFIX) {
        return Err(CredentialError::KeyAsJwt);
    }
    if token.starts_with(ADMIN_TOKEN_PREFIX) {
        return Err(CredentialError::AdminToken);
    }
    if looks_like_jwt(token) {
        Ok(())
    } else {
        Err(CredentialError::Malformed(
            "a token is a JWT: three base64url parts separated by '.' (header.payload.signature)",
        ))
    }
}

fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && base64url(parts[0])
        && base64url(parts[1])
        && parts[2].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys() {
        assert_eq!(check_api_key("csk_AbC-_09"), Ok(()));
        assert_eq!(check_api_key(""), Err(CredentialError::Empty("API key")));
        assert_eq!(check_api_key("csk_abc\n"), Err(CredentialError::BadCharacters("API key")));
        assert_eq!(check_api_key(" csk_abc"), Err(CredentialError::BadCharacters("API key")));
        assert_eq!(check_api_key("csa_abc"), Err(CredentialError::AdminToken));
        assert_eq!(check_api_key("eyJh.eyJz.c2ln"), Err(CredentialError::JwtAsKey));
        assert!(matches!(check_api_key("abc"), Err(CredentialError::Malformed(_))));
        assert!(matches!(check_api_key("csk_"), Err(CredentialError::Malformed(_))));
        assert!(matches!(check_api_key("csk_a+b"), Err(CredentialError::Malformed(_))));
        assert_eq!(check_api_key(&"csk_a".repeat(5000)), Err(CredentialError::TooLong("API key")));
    }

    #[test]
    fn tokens() {
        assert_eq!(check_jwt("eyJh.eyJz.c2ln"), Ok(()));
        // An unsecured JWT has an empty signature.
        assert_eq!(check_jwt("eyJh.eyJz."), Ok(()));
        assert_eq!(check_jwt(""), Err(CredentialError::Empty("token")));
        assert_eq!(check_jwt("csk_abc"), Err(CredentialError::KeyAsJwt));
        assert!(matches!(check_jwt("a.b"), Err(CredentialError::Malformed(_))));
        assert!(matches!(check_jwt("a..c"), Err(CredentialError::Malformed(_))));
        assert_eq!(check_jwt("Bearer eyJh.eyJz.c2ln"), Err(CredentialError::BadCharacters("token")));
    }
}
