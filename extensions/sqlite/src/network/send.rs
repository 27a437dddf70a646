//! Sending: this device's changes after the send checkpoint, in chunks, and what the
//! server says of them (dead uploads, refused rows) remembered locally.

use super::*;

/// What the server said of this device, as a send reports it.
pub(super) struct ServerView {
    /// The device part of its status (or the error of asking).
    pub(super) device: Value,
    /// Its most recent failure.
    pub(super) last_failure: Value,
    /// The uploads that failed for good (dead), as far as its list goes, newest first.
    pub(super) dead: Vec<Value>,
}

/// Asks the server for this device's status, and remembers how many of its uploads are
/// dead ([`has_unsent_changes`] counts them as unsent).
pub(super) fn server_view(conn: &Connection, client: &Client) -> Result<ServerView> {
    Ok(match client.status() {
        Ok(s) => {
            remember(conn, &s)?;
            let last_failure = s.device.failures.first().map_or(Value::Null, |f| json!(f));
            let dead = s.device.failures.iter().filter(|f| f.state == DEAD).map(|f| json!(f)).collect();
            ServerView { device: json!(s.device), last_failure, dead }
        }
        Err(e) => ServerView {
            device: json!({ "error": e.to_string(), "code": e.code() }),
            last_failure: Value::Null,
            dead: Vec::new(),
        },
    })
}

/// A job's state when it failed for good.
pub(super) const DEAD: &str = "dead";

/// Remembers what the server said of this device's uploads: how many are dead
/// ([`has_unsent_changes`] counts them as unsent) and which rows it refused
/// ([`remember_refused`]).
pub(super) fn remember(conn: &Connection, s: &SyncStatus) -> Result<()> {
    let dead = (s.device.dead > 0).then(|| s.device.dead.to_string());
    set_setting(conn, DEAD_UPLOADS, dead.as_deref())?;
    remember_refused(conn, s)
}

/// Rewrites `cloudsync_refused(tbl, key, code, message, refused_at, job)` from the
/// server's list of refused rows (its last 20 uploads with refusals), the newest
/// refusal of each row, less the rows applied since: a row this device changed after
/// the refused upload, in a change the server confirms applying (not refused again,
/// or the newer refusal is listed instead). A row changed since but not yet confirmed
/// stays listed until it is.
pub(super) fn remember_refused(conn: &Connection, s: &SyncStatus) -> Result<()> {
    let mut newest: HashMap<(String, String), &cloudsync_protocol::sync::Refusal> = HashMap::new();
    for r in &s.device.refused {
        let slot = newest.entry((r.row.table.clone(), r.row.key.clone())).or_insert(r);
        if r.job > slot.job {
            *slot = r;
        }
    }
    let confirmed = s.device.confirmed.as_deref().map(parse_checkpoint).transpose()?;
    // The latest position of this device's own change to each row, from the oldest
    // refused upload's end on (only needed when something was refused).
    let since = newest.values().filter_map(|r| parse_checkpoint(&r.upto).ok()).map(|c| c.after).min();
    let mut latest: HashMap<(String, String), cloudsync_core::Cursor> = HashMap::new();
    if let (Some(since), Some(site)) = (since, meta::local_site(conn)?) {
        fold::fold_all(conn)?;
        let from = Checkpoint::complete(since);
        let mut reader =
            FeedReader::new(conn, FeedQuery { from, sites: SiteFilter::Only(site), ..FeedQuery::default() })?;
        while let Some(c) = reader.next(conn)? {
            let at = latest.entry((c.table, cloudsync_core::value::show_key(&c.pk))).or_insert(c.at);
            *at = (*at).max(c.at);
        }
    }
    in_savepoint(conn, "cloudsync_refused", || {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS cloudsync_refused (tbl TEXT NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL, \
             message TEXT NOT NULL, refused_at INTEGER NOT NULL, job INTEGER NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID;
             DELETE FROM cloudsync_refused;",
        )?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO cloudsync_refused (tbl, key, code, message, refused_at, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for ((table, key), r) in &newest {
            let upto = parse_checkpoint(&r.upto).ok().map(|c| c.after);
            let applied_since = match (latest.get(&(table.clone(), key.clone())), upto, confirmed) {
                // A dead upload counts as confirmed (finished) but applied nothing.
                (Some(at), Some(upto), Some(confirmed)) => *at > upto && *at <= confirmed.after && s.device.dead == 0,
                _ => false,
            };
            if !applied_since {
                insert.execute(rusqlite::params![
                    table,
                    key,
                    r.row.sqlstate.as_str(),
                    r.row.message,
                    r.refused_at,
                    r.job
                ])?;
            }
        }
        Ok(())
    })
}

/// The code of an upload the server refused because it names tables or columns the
/// central database does not have yet.
pub(super) const SCHEMA_MISMATCH: &str = "schema_mismatch";

/// `cloudsync_network_send_changes()`: uploads this database's changes since the send
/// checkpoint, in chunks; the checkpoint moves as each chunk is accepted. A chunk the
/// server refuses for naming tables or columns it does not have yet is held: it and
/// everything after it stay unsent (the status is `held`, with the server's reason),
/// and are sent by a later call once the server's schema has them.
pub fn send_changes(conn: &Connection, state: &ConnState) -> Result<Value> {
    let client = Client::new(conn, state, Duration::ZERO)?;
    let mut sent = checkpoint(conn, SENT)?;
    let (mut changes, mut bytes, mut chunks) = (0u64, 0usize, 0u64);
    let mut held = None;
    loop {
        let query = FeedQuery { from: sent, sites: SiteFilter::Only(client.site), ..FeedQuery::default() };
        let chunk = payload::encode_chunk(conn, query, CHUNK_BYTES)?;
        let Some(p) = chunk.payload else {
            if chunk.next != sent {
                // Only others' changes since the checkpoint: nothing of ours to send.
                set_setting(conn, SENT, Some(&chunk.next.to_string()))?;
                sent = chunk.next;
            }
            break;
        };
        let len = p.len();
        match client.upload(p, sent, chunk.next) {
            Ok(_) => {}
            Err(Error::Network { code, message, .. }) if code == SCHEMA_MISMATCH => {
                held = Some(json!({ "code": code, "message": message, "retryable": true }));
                break;
            }
            Err(e) => return Err(e),
        }
        bytes += len;
        set_setting(conn, SENT, Some(&chunk.next.to_string()))?;
        sent = chunk.next;
        changes += chunk.changes;
        chunks += 1;
        if !chunk.more {
            break;
        }
    }
    let server = server_view(conn, &client)?;
    // Never "sent" while something of this device's did not apply.
    let status = match (&held, dead_uploads(conn)?, chunks) {
        (Some(_), _, _) => "held",
        (None, true, _) => "failed",
        (None, false, 0) => "nothing_to_send",
        (None, false, _) => "sent",
    };
    Ok(json!({
        "status": status,
        "held": held,
        // Uploads that failed for good: not applied until an operator retries them
        // (`retryable: false`: sending them again would fail the same way).
        "failed": server.dead,
        "changes": changes,
        "chunks": chunks,
        "bytes": bytes,
        "local_version": meta::db_version(conn)?,
        "sent": sent.to_string(),
        "server": server.device,
        "last_failure": server.last_failure,
    }))
}
