//! Receiving: downloads applied after the receive checkpoint, the declared schema, the
//! opt-in to the server's schema, and `sync` (send, then receive, with retries).

use super::*;

/// `cloudsync_network_check_changes()`: downloads and applies what the server has that
/// this database did not write; waits up to `wait` for the first chunk.
pub fn check_changes(conn: &Connection, state: &ConnState, wait: Duration) -> Result<Value> {
    let mut report = receive(conn, state, wait)?;
    // A download named tables or columns this database lacks (now, or in an earlier
    // call not caught up since): with the opt-in, take everything the server's schema
    // has and this database lacks, then read again (the schema change resets the
    // receive checkpoint, so what was skipped comes now). Once per call.
    let skipped = report["skipped_schema"].as_array().is_some_and(|a| !a.is_empty());
    if (skipped || setting(conn, SCHEMA_BEHIND)?.is_some()) && setting(conn, SCHEMA_AUTO)?.is_some() {
        let client = Client::new(conn, state, Duration::ZERO)?;
        let applied = apply_server_schema(conn, &client)?;
        if !applied.is_empty() {
            let again = receive(conn, state, Duration::ZERO)?;
            let first = report;
            report = again;
            report["schema_applied"] = json!(applied);
            // What the first pass applied counts too.
            for key in ["changes", "received", "chunks", "bytes"] {
                let sum = first[key].as_u64().unwrap_or(0) + report[key].as_u64().unwrap_or(0);
                report[key] = json!(sum);
            }
        }
    }
    Ok(report)
}

/// `cloudsync_network_set_schema_auto(on)`: whether downloads naming tables or columns
/// this database lacks make it take them from the server's schema.
pub fn set_schema_auto(conn: &Connection, on: bool) -> Result<()> {
    set_setting(conn, SCHEMA_AUTO, on.then_some("1"))
}

/// Creates the tables and adds the columns the server's schema has and this database
/// does not sync, through the same paths an application's own migration takes
/// (`cloudsync_init`, `begin_alter`/`commit_alter`), all or nothing. The server's SQL
/// never runs as given: each statement is parsed and re-emitted by
/// `cloudsync_ddl::guard` (only `CREATE TABLE` and `ADD COLUMN`, only allowed
/// expressions), as on the server. Returns what it applied (`table`, `table.column`).
pub(super) fn apply_server_schema(conn: &Connection, client: &Client) -> Result<Vec<String>> {
    let schema = client.schema()?;
    in_savepoint(conn, "cloudsync_schema_auto", || {
        let mut applied = Vec::new();
        for t in &schema.tables {
            let Some(synced) = SyncTable::load(conn, &t.table)? else {
                // A table: its columns come with it.
                for e in cloudsync_ddl::guard::schema_against(&t.create, &crate::replica::existing_tables(conn)?)? {
                    conn.execute_batch(&e.sql)?;
                }
                crate::lifecycle::init(conn, &t.table, Some(&t.algo), 3)?;
                applied.push(t.table.clone());
                continue;
            };
            let missing: Vec<_> =
                t.columns.iter().filter(|c| !synced.known_columns().any(|k| k.eq_ignore_ascii_case(&c.name))).collect();
            if missing.is_empty() {
                continue;
            }
            crate::lifecycle::begin_alter(conn, &synced.name)?;
            for c in missing {
                let sql = format!("ALTER TABLE {} ADD COLUMN {}", crate::sql::ident(&synced.name), c.definition);
                for e in cloudsync_ddl::guard::schema_against(&sql, &crate::replica::existing_tables(conn)?)? {
                    conn.execute_batch(&e.sql)?;
                }
                applied.push(format!("{}.{}", synced.name, c.name));
            }
            crate::lifecycle::commit_alter(conn, &synced.name)?;
        }
        Ok(applied)
    })
}

/// This database's synced tables and their columns (keys and dropped columns
/// included), as a download declares them ([`header::SCHEMA`]); None when that would
/// be too long to send (the server then sends everything, and what this database
/// lacks is skipped here).
pub(super) fn declared_schema(conn: &Connection) -> Result<Option<String>> {
    let tables =
        SyncTable::names(conn)?.iter().map(|name| SyncTable::require(conn, name)).collect::<Result<Vec<_>>>()?;
    Ok(cloudsync_protocol::sync::declared::encode(tables.iter().map(|t| (t.name.as_str(), t.known_columns()))))
}

/// One receive pass of [`check_changes`].
pub(super) fn receive(conn: &Connection, state: &ConnState, wait: Duration) -> Result<Value> {
    let client = Client::new(conn, state, wait)?;
    let declared = declared_schema(conn)?;
    let mut received = checkpoint(conn, RECEIVED)?;
    let (mut applied, mut incoming, mut bytes, mut chunks) = (0u64, 0u64, 0usize, 0u64);
    let mut tables = serde_json::Map::new();
    let mut unknown = std::collections::BTreeSet::new();
    let mut unreadable = std::collections::BTreeSet::new();
    let mut complete = true;
    let mut first = true;
    loop {
        let reply = client.download(received, if first { wait } else { Duration::ZERO }, declared.as_deref())?;
        first = false;
        let names = |h: &str| -> Vec<String> {
            reply.header(h).map(|v| cloudsync_protocol::sync::names::decode(v, 128).collect()).unwrap_or_default()
        };
        unreadable.extend(names(header::UNREADABLE));
        // What the server left out because this database lacks it: skipped as if it
        // had come, so the next local schema change reads it again.
        let left_out = names(header::SKIPPED);
        let next = reply.header(header::CURSOR).map(parse_checkpoint).transpose()?.unwrap_or(received);
        if reply.status == 204 {
            if next != received {
                set_setting(conn, RECEIVED, Some(&next.to_string()))?;
                received = next;
            }
            break;
        }
        let more = reply.header(header::MORE) == Some(header::MORE_FOLLOWS);
        bytes += reply.body.len();
        chunks += 1;
        let report = in_savepoint(conn, "cloudsync_receive", || {
            let report = apply::apply_download(conn, state, &reply.body)?;
            if !report.unknown.is_empty() || !left_out.is_empty() {
                set_setting(conn, SCHEMA_BEHIND, Some("1"))?;
            }
            set_setting(conn, RECEIVED, Some(&next.to_string()))?;
            Ok(report)
        });
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                // This database refuses what the server sent: the server shows it on
                // the device's status and page (best effort: the error is raised here
                // whatever the report's fate).
                let failure = ReceiveFailure { code: receive_failure_code(&e), message: e.to_string() };
                if client.report_receive(Some(failure)).is_ok() {
                    set_setting(conn, RECEIVE_FAILING, Some("1"))?;
                }
                return Err(e);
            }
        };
        unknown.extend(report.unknown.iter().cloned());
        unknown.extend(left_out);
        received = next;
        applied += report.applied;
        incoming += report.received;
        for (t, n) in report.tables {
            let prev = tables.get(&t).and_then(Value::as_u64).unwrap_or(0);
            tables.insert(t, json!(prev + n));
        }
        if !more {
            break;
        }
        if chunks >= 10_000 {
            complete = false;
            break;
        }
    }
    // Applying works again: clear what this device reported failing.
    if setting(conn, RECEIVE_FAILING)?.is_some() && client.report_receive(None).is_ok() {
        set_setting(conn, RECEIVE_FAILING, None)?;
    }
    Ok(json!({
        "changes": applied,
        "received": incoming,
        "chunks": chunks,
        "bytes": bytes,
        "tables": tables,
        // Tables and columns (`table.column`) the server has and this database does
        // not: their changes wait until its schema has them.
        "skipped_schema": unknown,
        // Synced tables this device's role may not read on the server (no SELECT
        // privilege): nothing of them is received until an operator grants it.
        "unreadable_tables": unreadable,
        "received_cursor": received.to_string(),
        "complete": complete,
    }))
}

/// The stable code a device reports for a download its database refuses: the
/// SQLSTATE of a constraint (`23503`…), the code of a payload that does not fit this
/// database, `invalid_payload`, or `local_error`.
pub(super) fn receive_failure_code(e: &Error) -> String {
    match e {
        Error::Incompatible(i) => i.code().to_string(),
        Error::Decode(_) => "invalid_payload".to_string(),
        other => crate::replica::sqlstate_of(other).map_or_else(|| "local_error".to_string(), |s| s.to_string()),
    }
}

/// Longest `Retry-After` a sync waits out before retrying; a longer one fails the call.
pub(super) const MAX_RETRY_AFTER_SECS: u64 = 30;

/// `cloudsync_network_sync(wait_ms, max_retries)`: send, then receive (waiting up to
/// `wait_ms` for changes), retrying transient failures with backoff.
pub fn sync(conn: &Connection, state: &ConnState, wait: Duration, max_retries: u32) -> Result<Value> {
    let retrying = |what: &dyn Fn() -> Result<Value>| -> Result<Value> {
        let mut attempt = 0;
        loop {
            match what() {
                // A server asking for more than a call may wait (a quota that refills
                // tomorrow) gets its answer back at once: waiting would not change it.
                Err(Error::Network { retryable: true, retry_after, .. })
                    if attempt < max_retries && retry_after.is_none_or(|s| s <= MAX_RETRY_AFTER_SECS) =>
                {
                    // The server's Retry-After when it gave one, exponential backoff
                    // otherwise.
                    let backoff = Duration::from_millis(100u64 << attempt.min(6));
                    let asked = retry_after.map(Duration::from_secs);
                    std::thread::sleep(asked.map_or(backoff, |a| a.max(backoff)));
                    attempt += 1;
                }
                other => return other,
            }
        }
    };
    let send = retrying(&|| send_changes(conn, state))?;
    let receive = retrying(&|| check_changes(conn, state, wait))?;
    Ok(json!({ "send": send, "receive": receive }))
}
