//! Identifiers shared by every crate: site ids, column ids, stamps.

use std::fmt;

use crate::error::DecodeError;

/// A replica's identity: 16 bytes, generated once as a UUIDv7 when a database is
/// first initialised, and compared bytewise in tie-breaks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub [u8; 16]);

impl SiteId {
    /// A new random (time-ordered) site id.
    pub fn generate() -> Self {
        SiteId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Parses a 16-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        let arr: [u8; 16] =
            bytes.try_into().map_err(|_| DecodeError::Invalid { what: "site id", why: "must be exactly 16 bytes" })?;
        Ok(SiteId(arr))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({self})")
    }
}

/// A local, compact handle for a site id: `0` is always this replica, other sites get
/// ordinals on first sight. Ordinals never leave the replica that assigned them.
pub type SiteOrd = u32;

/// The ordinal of the local site.
pub const LOCAL_SITE: SiteOrd = 0;

/// A stable per-table column id. Assigned once when a column is first synced and never
/// reused, so clocks survive `ALTER TABLE` (added and dropped columns).
pub type ColId = u32;

/// A position in this replica's change feed: `(db_version, seq)`.
///
/// `db_version` is the replica's logical clock, one value per local transaction that
/// recorded changes (Lamport-merged with incoming versions); `seq` orders the changes
/// recorded within one `db_version`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The local db_version.
    pub db_version: u64,
    /// Position within that db_version.
    pub seq: u64,
}

impl Cursor {
    /// The beginning of the feed: every change is after it.
    pub const ZERO: Cursor = Cursor { db_version: 0, seq: 0 };

    /// Builds a cursor.
    pub fn new(db_version: u64, seq: u64) -> Self {
        Cursor { db_version, seq }
    }
}

/// When and from where this replica recorded a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Position in the local feed.
    pub at: Cursor,
    /// The site that originally wrote the change (kept across relays).
    pub site: SiteOrd,
}

impl Stamp {
    /// A stamp for a change written by this replica.
    pub fn local(db_version: u64, seq: u64) -> Self {
        Stamp { at: Cursor::new(db_version, seq), site: crate::LOCAL_SITE }
    }
}
