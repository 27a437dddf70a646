//! Identifiers: newtypes with parse constructors, so a path segment or a JSON field is
//! validated once, where it enters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id (a UUIDv7 in its hyphenated text form).")]
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().hyphenated().to_string())
            }

            /// Parses an id, refusing anything that is not a UUID.
            pub fn parse(s: &str) -> Result<Self> {
                uuid::Uuid::parse_str(s)
                    .map(|u| $name(u.hyphenated().to_string()))
                    .map_err(|_| Error::NotFound { what: $what })
            }

            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(TenantId, "tenant");
uuid_id!(DatabaseId, "database");
uuid_id!(ApiKeyId, "API key");

/// A device's site id, as 32 lowercase hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteHex(pub cloudsync_core::SiteId);

impl SiteHex {
    /// Parses 32 hex characters.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            let shown = cloudsync_core::value::shown(s, 40);
            Error::Invalid(format!("site id '{shown}' is not 32 hex characters"))
        };
        let bytes = hex::decode(s).map_err(|_| bad())?;
        cloudsync_core::SiteId::from_slice(&bytes).map(SiteHex).map_err(|_| bad())
    }
}

impl fmt::Display for SiteHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
