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

    /// The position after every change of `db_version` (and before the next version).
    pub fn through(db_version: u64) -> Self {
        Cursor { db_version, seq: u64::MAX }
    }

    /// Parses the text form of the sync protocol: `<db_version>.<seq>`, or
    /// `<db_version>` alone for [`Cursor::through`] that version (`0`: the beginning).
    pub fn parse(s: &str) -> Option<Cursor> {
        let digits =
            |t: &str| (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten();
        match s.split_once('.') {
            Some((d, q)) => Some(Cursor::new(digits(d)?, digits(q)?)),
            None => Some(Cursor::through(digits(s)?)),
        }
    }
}

/// The text form [`Cursor::parse`] reads: `<db_version>` for a whole version,
/// `<db_version>.<seq>` within one.
impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.seq == u64::MAX {
            write!(f, "{}", self.db_version)
        } else {
            write!(f, "{}.{}", self.db_version, self.seq)
        }
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

#[cfg(test)]
mod cursor_text {
    use super::Cursor;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        for c in [Cursor::ZERO, Cursor::new(7, 3), Cursor::through(7), Cursor::new(u64::MAX, u64::MAX - 1)] {
            assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        }
        assert_eq!(Cursor::through(12).to_string(), "12");
        assert_eq!(Cursor::parse("0"), Some(Cursor::through(0)));
        for bad in ["", ".", "1.", ".1", "-1", "+1", "1.2.3", " 1", "1e3", "18446744073709551616", "x"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
