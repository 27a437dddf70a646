//! The sync endpoints' wire contract (`docs/protocol.md`): header names, the payload
//! media type, and the JSON bodies of uploads, signed upload URLs, status and the
//! visibility check.
//!
//! Feed positions travel as text, in the form of `cloudsync_core::feed::Checkpoint`
//! (`<db_version>[.<seq>]`, or `<after>~<base>` partway through a pass), re-exported
//! here as [`Checkpoint`]: parse with `Checkpoint::parse`, write with `to_string`.

use serde::{Deserialize, Serialize};

pub use cloudsync_core::feed::Checkpoint;

use crate::outcome::RefusedRow;

/// The protocol version this crate describes (`GET status` answers it).
pub const VERSION: u32 = 1;

/// Media type of a payload (the binary format of `docs/payload-format.md`).
pub const PAYLOAD_TYPE: &str = "application/vnd.cloudsync.payload";

/// Header names, lower case (HTTP header names are case-insensitive).
pub mod header {
    /// The device's site id (32 hex characters), on every sync request.
    pub const SITE: &str = "x-cloudsync-site";
    /// Device feed position an upload starts after.
    pub const FROM: &str = "x-cloudsync-from";
    /// Device feed position an upload ends at.
    pub const TO: &str = "x-cloudsync-to";
    /// Server feed position a download chunk ends at.
    pub const CURSOR: &str = "x-cloudsync-cursor";
    /// [`MORE_FOLLOWS`] when more changes follow the chunk.
    pub const MORE: &str = "x-cloudsync-more";
    /// Number of changes in the chunk.
    pub const CHANGES: &str = "x-cloudsync-changes";
    /// On a download, the synced tables the device's role may not read at all, which
    /// the download left out: each name percent-encoded (UTF-8), separated by commas.
    /// Absent when there are none.
    pub const UNREADABLE: &str = "x-cloudsync-unreadable";
    /// On a download request, the synced tables and columns the device has
    /// ([`super::declared`]): the server leaves out changes of the others. Absent, the
    /// device gets everything and skips what it lacks.
    pub const SCHEMA: &str = "x-cloudsync-schema";
    /// On a download, the tables and columns (`table.column`) the server left out of the
    /// chunk because the device's [`SCHEMA`] lacks them, each name percent-encoded,
    /// separated by commas. Absent when there are none.
    pub const SKIPPED: &str = "x-cloudsync-skipped";
    /// The value of [`MORE`] when more changes follow.
    pub const MORE_FOLLOWS: &str = "1";
}

/// Lists of names in a header ([`header::UNREADABLE`], [`header::SKIPPED`]): each name
/// percent-encoded (UTF-8), separated by commas.
pub mod names {
    use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

    /// The header value for `names`.
    pub fn encode<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
        names.into_iter().map(|n| utf8_percent_encode(n, NON_ALPHANUMERIC).to_string()).collect::<Vec<_>>().join(",")
    }

    /// The names of a header value, each cut to `max_chars` characters (a header is the
    /// other side's to choose).
    pub fn decode(value: &str, max_chars: usize) -> impl Iterator<Item = String> + '_ {
        value
            .split(',')
            .filter(|n| !n.is_empty())
            .map(move |n| percent_decode_str(n).decode_utf8_lossy().chars().take(max_chars).collect())
    }
}

/// The device's schema as a download declares it in [`header::SCHEMA`]:
/// `table:column,column;table:column`, each name percent-encoded (UTF-8), so names
/// holding `:`, `,` or `;` stay unambiguous.
pub mod declared {
    use std::collections::{BTreeMap, BTreeSet};

    use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

    /// Longest declaration a device sends and a server reads. A device whose schema
    /// takes more sends none (it downloads everything and skips what it lacks).
    pub const MAX_LEN: usize = 16 << 10;

    /// Tables' lowercase names, each with its columns' lowercase names: what
    /// `cloudsync_core::engine::unknown_in` compares a changeset with.
    pub type Declared = BTreeMap<String, BTreeSet<String>>;

    /// A declaration that does not read.
    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum DeclaredError {
        /// Over [`MAX_LEN`].
        #[error("the declared schema takes {0} bytes, over the limit of {MAX_LEN}")]
        TooLong(usize),
        /// A part that is not `table:columns`, or a name that is not UTF-8 once decoded.
        #[error("the declared schema is not `table:column,column;…` with percent-encoded UTF-8 names")]
        Malformed,
    }

    /// The header value declaring `tables` (each with its columns), or None when it
    /// would be longer than [`MAX_LEN`].
    pub fn encode<'a, C>(tables: impl IntoIterator<Item = (&'a str, C)>) -> Option<String>
    where
        C: IntoIterator<Item = &'a str>,
    {
        let esc = |n: &str| utf8_percent_encode(n, NON_ALPHANUMERIC).to_string();
        let text = tables
            .into_iter()
            .map(|(t, cols)| format!("{}:{}", esc(t), cols.into_iter().map(esc).collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join(";");
        (text.len() <= MAX_LEN).then_some(text)
    }

    /// Reads a declaration; names come back lower case.
    pub fn parse(value: &str) -> Result<Declared, DeclaredError> {
        if value.len() > MAX_LEN {
            return Err(DeclaredError::TooLong(value.len()));
        }
        let name = |n: &str| {
            let n = percent_decode_str(n).decode_utf8().map_err(|_| DeclaredError::Malformed)?;
            if n.is_empty() {
                return Err(DeclaredError::Malformed);
            }
            Ok(n.to_lowercase())
        };
        let mut out = Declared::new();
        for part in value.split(';').filter(|p| !p.is_empty()) {
            let (table, columns) = part.split_once(':').ok_or(DeclaredError::Malformed)?;
            let columns = columns.split(',').filter(|c| !c.is_empty()).map(name).collect::<Result<_, _>>()?;
            out.insert(name(table)?, columns);
        }
        Ok(out)
    }
}

/// The answer to an accepted upload (`202`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    /// The apply job.
    pub job: i64,
    /// The device feed position now durably accepted.
    pub accepted: String,
    /// Changes in the payload.
    pub changes: u64,
}

/// What a device is about to upload through a signed URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The payload's size in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// A signed upload URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadTicket {
    /// Pass back as `object` in the upload call ([`UploadRef`]).
    pub object: String,
    /// `PUT` the payload here.
    pub upload_url: String,
    /// Seconds the URL stays valid.
    pub expires_in: u64,
}

/// An upload by reference: a payload already put at a signed upload URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadRef {
    /// The `object` of the [`UploadTicket`].
    pub object: String,
}

/// What the server knows of a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStatus {
    /// Protocol version ([`VERSION`]).
    pub protocol: u32,
    /// The central database's version.
    pub server_db_version: u64,
    /// The central database's schema version (`docs/schema-changes.md`); 0 from a
    /// server that keeps none.
    #[serde(default)]
    pub schema_version: i64,
    /// The device's uploads.
    pub device: DeviceStatus,
}

/// What the server knows of one device's uploads. Fields a server does not send read
/// as empty, so a device reads the status of an older server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DeviceStatus {
    /// Highest device position accepted (its job is durably queued).
    pub accepted: Option<String>,
    /// Highest device position applied, with every earlier upload finished.
    pub confirmed: Option<String>,
    /// Uploads waiting or being applied.
    pub pending: i64,
    /// Uploads that failed for good and wait for an operator (retry or discard): their
    /// changes are not applied. The device counts them as unsent.
    pub dead: i64,
    /// Uploads that failed (retrying or dead), most recent first.
    pub failures: Vec<Failure>,
    /// Rows of applied uploads that the central database refused (row-level
    /// security, constraints), most recent first (of the last 20 such uploads).
    pub refused: Vec<Refusal>,
    /// Applying downloads fails on the device, as it last reported (`PUT
    /// {sync_url}/receive`); absent while they apply.
    pub receive: Option<ReceiveFailing>,
}

/// The central database's synced tables as SQLite DDL (`GET {sync_url}/schema`), for a
/// device that applies the server's schema changes itself
/// (`cloudsync_network_set_schema_auto(1)`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSchema {
    /// The synced tables.
    pub tables: Vec<SchemaTable>,
}

/// One synced table as SQLite DDL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaTable {
    /// Table name.
    pub table: String,
    /// Sync algorithm.
    pub algo: String,
    /// `CREATE TABLE` creating it on a device.
    pub create: String,
    /// Each column, for `ALTER TABLE … ADD COLUMN` on a device that has the table.
    pub columns: Vec<SchemaColumn>,
}

/// One column of a [`SchemaTable`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaColumn {
    /// Column name.
    pub name: String,
    /// Its definition (`"color" TEXT DEFAULT 'red'`), as `ADD COLUMN` takes it.
    pub definition: String,
}

/// A device's report of its receiving: `failure` while applying downloads fails on it
/// (its own database refuses what the server sends), None once one applies again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReceiveReport {
    /// Why applying fails; None: it applies again.
    pub failure: Option<ReceiveFailure>,
}

/// Why applying a download fails on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReceiveFailure {
    /// Stable code: a SQLSTATE for a constraint (`23503`), a payload code
    /// (`unknown_table`…), or `local_error` (at most 64 characters kept).
    pub code: String,
    /// The device's message (at most 500 characters kept).
    pub message: String,
}

/// Receiving failing on a device, as the server shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiveFailing {
    /// Stable code, as the device reported it.
    pub code: String,
    /// The device's message.
    pub message: String,
    /// Since when (Unix ms): the first report of this run of failures.
    pub since: i64,
}

/// A failed upload as a device sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    /// The job.
    pub job: i64,
    /// Stable error code.
    pub code: String,
    /// Message.
    pub message: String,
    /// Whether the server is still retrying it.
    pub retryable: bool,
    /// When it last failed (Unix ms).
    pub failed_at: i64,
    /// The job's state: `pending` (to be retried), `dead` (failed for good until an
    /// operator retries it: its changes are not applied) or `discarded` (dropped by an
    /// operator). Empty from servers that do not say.
    #[serde(default)]
    pub state: String,
}

/// A row the central database refused, as a device sees it: final, the server will
/// not retry it (`docs/rls.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refusal {
    /// The job that carried it.
    pub job: i64,
    /// The row.
    #[serde(flatten)]
    pub row: RefusedRow,
    /// Always false: the same change would be refused again.
    pub retryable: bool,
    /// When the job was applied (Unix ms).
    pub refused_at: i64,
    /// The device feed position the job's upload ended at: a later change of the row
    /// (after it) that the server confirms applying clears the refusal on the device
    /// (`cloudsync_refused`). Empty from servers that do not say.
    #[serde(default)]
    pub upto: String,
}

/// Most keys one visibility check may ask about.
pub const MAX_VISIBILITY_KEYS: usize = 1000;

/// Body of a visibility check: keys of rows the device holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VisibilityCheck {
    /// Synced table.
    pub table: String,
    /// Primary keys in the payload encoding, hex (at most [`MAX_VISIBILITY_KEYS`]).
    pub keys: Vec<String>,
}

/// Those of the keys asked about that are not visible to the device's user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invisible {
    /// Keys (hex) that name no central row this device's user may read (a hidden row
    /// and a missing one alike).
    pub hidden: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_back_flat() {
        let r = Refusal {
            job: 7,
            row: RefusedRow {
                table: "t".into(),
                key: "'a'".into(),
                sqlstate: crate::Sqlstate::new("42501"),
                message: "no".into(),
            },
            retryable: false,
            refused_at: 1,
            upto: "12".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""table":"t""#) && !text.contains(r#""row""#), "{text}");
        assert_eq!(serde_json::from_str::<Refusal>(&text).unwrap(), r);
    }

    #[test]
    fn a_declared_schema_reads_back_whatever_its_names_hold() {
        let tables = [("Notes", vec!["id", "Title"]), ("odd:;,%names", vec!["a,b", "ü"]), ("empty", vec![])];
        let text = declared::encode(tables.iter().map(|(t, c)| (*t, c.iter().copied()))).unwrap();
        let back = declared::parse(&text).unwrap();
        assert_eq!(back["notes"], ["id", "title"].into_iter().map(String::from).collect());
        assert_eq!(back["odd:;,%names"], ["a,b", "ü"].into_iter().map(String::from).collect());
        assert!(back["empty"].is_empty());
        assert_eq!(back.len(), 3);
        assert_eq!(declared::parse(""), Ok(declared::Declared::new()));
        for bad in ["notes", "notes:%FF", ":a", "notes:a;%"] {
            assert_eq!(declared::parse(bad), Err(declared::DeclaredError::Malformed), "{bad}");
        }
        let long = "t:".to_string() + &"a,".repeat(declared::MAX_LEN);
        assert!(matches!(declared::parse(&long), Err(declared::DeclaredError::TooLong(_))));
        let many: Vec<String> = (0..5000).map(|i| format!("column{i}")).collect();
        assert_eq!(declared::encode([("t", many.iter().map(String::as_str))]), None);
    }

    #[test]
    fn names_in_a_header_read_back() {
        let text = names::encode(["a,b", "notes.color", ""]);
        assert_eq!(names::decode(&text, 128).collect::<Vec<_>>(), ["a,b", "notes.color"]);
        assert_eq!(names::decode("abcdef", 3).collect::<Vec<_>>(), ["abc"]);
    }

    #[test]
    fn a_status_without_the_newer_fields_still_reads() {
        let s: SyncStatus =
            serde_json::from_str(r#"{"protocol":1,"server_db_version":3,"device":{"pending":2}}"#).unwrap();
        assert_eq!((s.device.pending, s.device.failures.len()), (2, 0));
    }
}
