//! The network layer: syncing a database with a CloudSync service over HTTP(S).
//!
//! Protocol v1 is specified in `docs/protocol.md`. What persists, in
//! `cloudsync_settings`: the sync URL, the **send checkpoint** (position in this
//! database's feed up to which the server has durably accepted our changes) and the
//! **receive checkpoint** (position in the server's feed up to which we have applied its
//! changes). The credential (API key or JWT) is a secret and stays in memory, per
//! connection.
//!
//! Only changes written by this database are uploaded (a device speaks for itself;
//! the server relays everyone's changes). Every request has a deadline; transport and
//! authentication failures raise SQL errors carrying the server's message; failures of
//! the server's apply jobs come back in the JSON results (`last_failure`).
//!
//! | module | concern |
//! |---|---|
//! | (this) | the settings it keeps (URL, checkpoints, flags), `init`, `reset`, `logout`, `status`, unsent changes |
//! | `client` | one configured connection: requests, deadlines, answers and failures |
//! | `send` | uploads after the send checkpoint; the server's word on them remembered |
//! | `receive` | downloads after the receive checkpoint, the declared schema, the schema opt-in, `sync` |
//! | `visibility` | rows the user may no longer read centrally |

mod client;
mod receive;
mod send;
mod visibility;

use client::Client;
pub use receive::{check_changes, set_schema_auto, sync};
use send::remember;
pub use send::send_changes;
pub use visibility::check_visibility;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cloudsync_core::feed::Checkpoint;
use cloudsync_core::SiteId;
use cloudsync_protocol::sync::{
    header, Accepted, DeviceSchema, Invisible, NewUpload, ReceiveFailure, ReceiveReport, SyncStatus, UploadRef,
    UploadTicket, VisibilityCheck, PAYLOAD_TYPE,
};
use cloudsync_protocol::ErrorBody;
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::apply;
use crate::changes::{FeedQuery, FeedReader, SiteFilter};
use crate::meta::table::SyncTable;
use crate::sql::in_savepoint;
use crate::state::ConnState;
use crate::{fold, meta, payload, triggers, Error, Result};

/// Payloads up to this size travel inside the upload request; larger ones through a
/// signed URL of the payload store.
pub const INLINE_LIMIT: usize = 512 << 10;
/// Uncompressed size of one upload.
pub const CHUNK_BYTES: usize = 8 << 20;
/// Deadline of a request (a long-poll adds its wait).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const URL: &str = "network_url";
const SENT: &str = "network_sent";
const RECEIVED: &str = "network_received";
/// Set when a download skipped tables or columns this database did not have: the
/// next local schema change reads everything again ([`local_schema_changed`]).
const SCHEMA_BEHIND: &str = "network_schema_behind";
/// How many of this device's uploads the server last said failed for good (dead,
/// waiting for an operator): while any is, this device has changes not applied.
const DEAD_UPLOADS: &str = "network_dead_uploads";
/// Set (to 1) when the application asked to apply the server's schema changes here.
const SCHEMA_AUTO: &str = "network_schema_auto";
/// Set while this device last told the server applying downloads fails here.
const RECEIVE_FAILING: &str = "network_receive_failing";

fn setting(conn: &Connection, key: &str) -> Result<Option<String>> {
    if !meta::exists(conn)? {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT value FROM cloudsync_settings WHERE key = ?1", [key], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

fn set_setting(conn: &Connection, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO cloudsync_settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, v],
        )?,
        None => conn.execute("DELETE FROM cloudsync_settings WHERE key = ?1", [key])?,
    };
    Ok(())
}

fn parse_checkpoint(s: &str) -> Result<Checkpoint> {
    Checkpoint::parse(s).ok_or_else(|| Error::Corrupt(format!("network checkpoint '{s}'")))
}

fn checkpoint(conn: &Connection, key: &str) -> Result<Checkpoint> {
    setting(conn, key)?.map_or(Ok(Checkpoint::ZERO), |s| parse_checkpoint(&s))
}

/// `cloudsync_network_init(sync_url)`.
pub fn init(conn: &Connection, url: &str) -> Result<()> {
    let url = url.trim().trim_end_matches('/');
    let ok_scheme = url.starts_with("http://") || url.starts_with("https://");
    if !ok_scheme || !url.contains("/v1/sync/") {
        return Err(Error::arg(
            "cloudsync_network_init",
            format!("'{url}' is not a sync URL (expected http(s)://host/v1/sync/<database id>, as returned when the database was created)"),
        ));
    }
    if SyncTable::names(conn)?.is_empty() {
        return Err(Error::arg("cloudsync_network_init", "no table is synced yet: call cloudsync_init(table) first"));
    }
    let previous = setting(conn, URL)?;
    in_savepoint(conn, "cloudsync_network", || {
        if previous.as_deref() != Some(url) {
            // A different server: its feed positions and its word on this device's
            // uploads mean nothing here.
            for key in [SENT, RECEIVED, SCHEMA_BEHIND, DEAD_UPLOADS, RECEIVE_FAILING] {
                set_setting(conn, key, None)?;
            }
        }
        set_setting(conn, URL, Some(url))
    })
}

/// Whether the server last said some of this device's uploads failed for good.
fn dead_uploads(conn: &Connection) -> Result<bool> {
    Ok(setting(conn, DEAD_UPLOADS)?.is_some())
}

/// `cloudsync_network_has_unsent_changes()`: changes after the send position (unsent,
/// or held), or uploads the server last said failed for good.
pub fn has_unsent_changes(conn: &Connection) -> Result<bool> {
    if dead_uploads(conn)? {
        return Ok(true);
    }
    let Some(site) = meta::local_site(conn)? else { return Ok(false) };
    fold::fold_all(conn)?;
    in_savepoint(conn, "cloudsync_feed", || {
        let query = FeedQuery { from: checkpoint(conn, SENT)?, sites: SiteFilter::Only(site), ..FeedQuery::default() };
        Ok(FeedReader::new(conn, query)?.next(conn)?.is_some())
    })
}

/// After a local schema change (a table synced, an alter committed): when a download
/// skipped tables or columns this database did not have, the receive checkpoint is
/// forgotten, so the next download reads everything again and brings what the new
/// schema has (merges make the rest harmless).
pub fn local_schema_changed(conn: &Connection) -> Result<()> {
    if setting(conn, SCHEMA_BEHIND)?.is_some() {
        set_setting(conn, RECEIVED, None)?;
        set_setting(conn, SCHEMA_BEHIND, None)?;
    }
    Ok(())
}

/// `cloudsync_network_reset_sync_version()`: forget both checkpoints (everything is
/// sent and received again; merges make that harmless).
pub fn reset(conn: &Connection) -> Result<()> {
    set_setting(conn, SENT, None)?;
    set_setting(conn, RECEIVED, None)
}

/// `cloudsync_network_logout([force])`: forgets the credential and the server, deletes
/// every synced row locally (not as deletions to send), and gives the database a new
/// site id, so that whoever logs in next is a new device that receives everything —
/// including what this device wrote before. Refused while local changes are unsent,
/// unless `force`.
pub fn logout(conn: &Connection, state: &ConnState, force: bool) -> Result<()> {
    if !force && has_unsent_changes(conn)? {
        return Err(Error::arg(
            "cloudsync_network_logout",
            "local changes have not been sent and would be lost; send them first, or call cloudsync_network_logout(1)",
        ));
    }
    in_savepoint(conn, "cloudsync_logout", || {
        for name in SyncTable::names(conn)? {
            let t = SyncTable::require(conn, &name)?;
            triggers::drop_triggers(conn, &t)?;
            conn.execute_batch(&format!(
                "DELETE FROM {}; DELETE FROM {}; DELETE FROM {};",
                t.quoted(),
                t.meta(),
                t.log()
            ))?;
            triggers::create_triggers(conn, &t)?;
        }
        for key in [URL, SENT, RECEIVED, SCHEMA_BEHIND, DEAD_UPLOADS, RECEIVE_FAILING] {
            set_setting(conn, key, None)?;
        }
        // A new identity: the server never sends a device its own changes back.
        conn.execute(
            "UPDATE cloudsync_sites SET site_id = ?1 WHERE ord = 0",
            [SiteId::generate().as_bytes().as_slice()],
        )?;
        crate::meta::cache::invalidate();
        Ok(())
    })?;
    state.set_credential(None);
    Ok(())
}

/// `cloudsync_network_status()`: the server's view of this device.
pub fn status(conn: &Connection, state: &ConnState) -> Result<Value> {
    let client = Client::new(conn, state, Duration::ZERO)?;
    let s = client.status()?;
    remember(conn, &s)?;
    let mut v = json!(s);
    v["sent"] = json!(checkpoint(conn, SENT)?.to_string());
    v["received"] = json!(checkpoint(conn, RECEIVED)?.to_string());
    Ok(v)
}
