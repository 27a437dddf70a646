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
//! One file, over 500 lines: the transport, checkpoints, the sync loops and the
//! visibility check; splitting it into
//! `network/{client,checkpoints,sync,visibility}.rs` is planned (issue "one home for
//! each concept").

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

/// An answer of the server at `url` that breaks the protocol (a proxy's page, a
/// truncated body): `bad_response`, retryable.
fn bad_response(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Network {
        status: None,
        code: "bad_response".into(),
        message: format!("unexpected answer from {}: {why}", cloudsync_protocol::transport::shown(url)),
        retryable: true,
        retry_after: None,
    }
}

/// A request body of the protocol's type `T`.
fn to_body<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Invalid(format!("encoding a request: {e}")))
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

/// One HTTP exchange's outcome.
struct Reply {
    /// What was requested (for messages; a signed URL's query is never shown).
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body, read as the protocol's `T`.
    fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| bad_response(&self.url, e))
    }

    /// Turns an error status into an error carrying the server's message.
    fn check(self) -> Result<Reply> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(b) => (b.error.code, b.error.message),
            // Not the service's error body: a proxy, or not a cloudsync server at all.
            Err(_) => (
                "http_error".to_string(),
                format!(
                    "{} (not a cloudsync error: is this URL a cloudsync service?)",
                    cloudsync_core::value::shown(&String::from_utf8_lossy(&self.body), 200)
                ),
            ),
        };
        Err(Error::Network {
            status: Some(self.status),
            code,
            message: format!("{} answered {}: {message}", cloudsync_protocol::transport::shown(&self.url), self.status),
            retryable: self.status == 408 || self.status == 429 || self.status >= 500,
            retry_after: self.header("retry-after").and_then(|v| v.trim().parse().ok()),
        })
    }
}

/// A configured connection to the service.
struct Client {
    base: String,
    credential: String,
    site: SiteId,
    agent: ureq::Agent,
    /// Deadline of each request of this client.
    timeout: Duration,
}

impl Client {
    fn new(conn: &Connection, state: &ConnState, wait: Duration) -> Result<Client> {
        let base = setting(conn, URL)?.ok_or_else(|| {
            Error::arg("cloudsync_network", "no sync URL: call cloudsync_network_init(sync_url) first")
        })?;
        let credential = state.credential().ok_or_else(|| {
            Error::arg(
                "cloudsync_network",
                "no credential: call cloudsync_network_set_apikey(key) or cloudsync_network_set_token(jwt)",
            )
        })?;
        let site =
            meta::local_site(conn)?.ok_or_else(|| Error::arg("cloudsync_network", "call cloudsync_init first"))?;
        let agent = state
            .agent
            .get_or_init(|| {
                ureq::Agent::config_builder()
                    .timeout_connect(Some(CONNECT_TIMEOUT))
                    .http_status_as_error(false)
                    .user_agent(format!("cloudsync/{}", cloudsync_core::VERSION))
                    .build()
                    .new_agent()
            })
            .clone();
        Ok(Client { base, credential, site, agent, timeout: REQUEST_TIMEOUT + wait })
    }

    fn site_hex(&self) -> String {
        self.site.to_string()
    }

    /// The outcome of a request to `url`: its answer, or why there was none
    /// ([`cloudsync_protocol::transport`]).
    fn finish(url: &str, resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
        let mut resp = resp.map_err(|e| {
            let (kind, message) = cloudsync_protocol::transport::describe(&e, url);
            Error::Network {
                status: None,
                code: kind.code().into(),
                message,
                retryable: kind.retryable(),
                retry_after: None,
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| bad_response(url, format!("reading the answer failed: {e}")))?;
        Ok(Reply { url: url.to_string(), status, headers, body })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.credential)
    }

    /// A request with this client's deadline; `authed` adds the credential and the
    /// device's site id.
    fn request<B>(&self, builder: ureq::RequestBuilder<B>, authed: bool) -> ureq::RequestBuilder<B> {
        let builder = builder.config().timeout_global(Some(self.timeout)).build();
        if authed {
            builder.header("Authorization", &self.auth()).header(header::SITE, &self.site_hex())
        } else {
            builder
        }
    }

    /// `POST {sync_url}/changes` with the positions the upload covers.
    fn post_changes(&self, content_type: &str, body: &[u8], from: Checkpoint, to: Checkpoint) -> Result<Reply> {
        let url = format!("{}/changes", self.base);
        Self::finish(
            &url,
            self.request(self.agent.post(&url), true)
                .header("Content-Type", content_type)
                .header(header::FROM, &from.to_string())
                .header(header::TO, &to.to_string())
                .send(body),
        )
    }

    /// Uploads one chunk; `Ok` only once the server has durably accepted it up to `to`.
    fn upload(&self, bytes: Vec<u8>, from: Checkpoint, to: Checkpoint) -> Result<Accepted> {
        let reply = if bytes.len() <= INLINE_LIMIT {
            self.post_changes(PAYLOAD_TYPE, &bytes, from, to)?
        } else {
            // Large payload: a signed URL of the payload store, then a reference.
            let slot = {
                use sha2::Digest;
                // The URL is issued for exactly these bytes: their size and hash.
                let announce = NewUpload {
                    bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                };
                let announce = to_body(&announce)?;
                let url = format!("{}/uploads", self.base);
                Self::finish(
                    &url,
                    self.request(self.agent.post(&url), true)
                        .header("Content-Type", "application/json")
                        .send(&announce[..]),
                )?
            }
            .check()?
            .json::<UploadTicket>()?;
            Self::finish(
                &slot.upload_url,
                self.request(self.agent.put(&slot.upload_url), false)
                    .header("Content-Type", "application/octet-stream")
                    .send(&bytes[..]),
            )?
            .check()?;
            let reference = to_body(&UploadRef { object: slot.object })?;
            self.post_changes("application/json", &reference, from, to)?
        };
        let accepted: Accepted = reply.check()?.json()?;
        // The send checkpoint moves to what the server says it accepted: anything
        // else is not taken as sent.
        if Checkpoint::parse(&accepted.accepted) != Some(to) {
            let shown = cloudsync_core::value::shown(&accepted.accepted, 40);
            return Err(bad_response(
                &format!("{}/changes", self.base),
                format_args!("the server accepted the upload up to '{shown}', not '{to}': not counted as sent"),
            ));
        }
        Ok(accepted)
    }

    /// `GET {sync_url}/changes`: the next chunk after `after`, with only the tables and
    /// columns `declared` names when it is given ([`header::SCHEMA`]).
    fn download(&self, after: Checkpoint, wait: Duration, declared: Option<&str>) -> Result<Reply> {
        let url = format!("{}/changes?site={}&after={after}&wait_ms={}", self.base, self.site_hex(), wait.as_millis());
        let mut req = self.request(self.agent.get(&url), true);
        if let Some(d) = declared {
            req = req.header(header::SCHEMA, d);
        }
        Self::finish(&url, req.call())?.check()
    }

    /// `POST {sync_url}/visibility`: which of `keys` of `table` name no central row this
    /// device's identity may read.
    fn invisible(&self, table: &str, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let body = VisibilityCheck { table: table.to_string(), keys: keys.iter().map(hex::encode).collect() };
        let body = to_body(&body)?;
        let url = format!("{}/visibility", self.base);
        let answer: Invisible = Self::finish(
            &url,
            self.request(self.agent.post(&url), true).header("Content-Type", "application/json").send(&body[..]),
        )?
        .check()?
        .json()?;
        answer
            .hidden
            .iter()
            .map(|h| hex::decode(h).map_err(|_| bad_response(&url, "a hidden key is not hex")))
            .collect()
    }

    /// `GET {sync_url}/schema`: the central synced tables as SQLite DDL.
    fn schema(&self) -> Result<DeviceSchema> {
        let url = format!("{}/schema?site={}", self.base, self.site_hex());
        Self::finish(&url, self.request(self.agent.get(&url), true).call())?.check()?.json()
    }

    /// `PUT {sync_url}/receive`: tells the server applying downloads fails here
    /// (`failure`), or applies again.
    fn report_receive(&self, failure: Option<ReceiveFailure>) -> Result<()> {
        let body = to_body(&ReceiveReport { failure })?;
        let url = format!("{}/receive", self.base);
        Self::finish(
            &url,
            self.request(self.agent.put(&url), true).header("Content-Type", "application/json").send(&body[..]),
        )?
        .check()?;
        Ok(())
    }

    fn status(&self) -> Result<SyncStatus> {
        let url = format!("{}/status?site={}", self.base, self.site_hex());
        Self::finish(&url, self.request(self.agent.get(&url), true).call())?.check()?.json()
    }
}

/// What the server said of this device, as a send reports it.
struct ServerView {
    /// The device part of its status (or the error of asking).
    device: Value,
    /// Its most recent failure.
    last_failure: Value,
    /// The uploads that failed for good (dead), as far as its list goes, newest first.
    dead: Vec<Value>,
}

/// Asks the server for this device's status, and remembers how many of its uploads are
/// dead ([`has_unsent_changes`] counts them as unsent).
fn server_view(conn: &Connection, client: &Client) -> Result<ServerView> {
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
const DEAD: &str = "dead";

/// Remembers what the server said of this device's uploads: how many are dead
/// ([`has_unsent_changes`] counts them as unsent) and which rows it refused
/// ([`remember_refused`]).
fn remember(conn: &Connection, s: &SyncStatus) -> Result<()> {
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
fn remember_refused(conn: &Connection, s: &SyncStatus) -> Result<()> {
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
const SCHEMA_MISMATCH: &str = "schema_mismatch";

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
fn apply_server_schema(conn: &Connection, client: &Client) -> Result<Vec<String>> {
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
fn declared_schema(conn: &Connection) -> Result<Option<String>> {
    let tables =
        SyncTable::names(conn)?.iter().map(|name| SyncTable::require(conn, name)).collect::<Result<Vec<_>>>()?;
    Ok(cloudsync_protocol::sync::declared::encode(tables.iter().map(|t| (t.name.as_str(), t.known_columns()))))
}

/// One receive pass of [`check_changes`].
fn receive(conn: &Connection, state: &ConnState, wait: Duration) -> Result<Value> {
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
fn receive_failure_code(e: &Error) -> String {
    match e {
        Error::Incompatible(i) => i.code().to_string(),
        Error::Decode(_) => "invalid_payload".to_string(),
        other => crate::replica::sqlstate_of(other).map_or_else(|| "local_error".to_string(), |s| s.to_string()),
    }
}

/// Longest `Retry-After` a sync waits out before retrying; a longer one fails the call.
const MAX_RETRY_AFTER_SECS: u64 = 30;

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

/// Keys per visibility request.
const VISIBILITY_BATCH: usize = 500;

/// `cloudsync_network_check_visibility()`: asks the server which of this database's
/// rows (live, in synced tables) its user may not read centrally (row-level security or
/// row policies, or no such row there), and records them in `cloudsync_hidden(tbl, pk)`
/// — replacing what an earlier check recorded. Rows with local changes the server has
/// not yet applied (unsent, or waiting in its queue) are not asked about: their central
/// copy is not yet theirs. A row the server refused is flagged. The server only answers
/// about the keys sent, and a hidden row and a missing one alike, so nothing about
/// other users' rows is learned.
pub fn check_visibility(conn: &Connection, state: &ConnState) -> Result<Value> {
    let client = Client::new(conn, state, Duration::ZERO)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cloudsync_hidden (tbl TEXT NOT NULL, pk BLOB NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID",
    )?;
    // Clocks are read below: local writes not yet folded would make new rows missing
    // from the check and deleted ones still in it.
    fold::fold_all(conn)?;
    let pending = unconfirmed_keys(conn, &client)?;
    let (mut checked, mut hidden, mut unconfirmed) = (0u64, 0u64, 0u64);
    let mut tables = serde_json::Map::new();
    for name in SyncTable::names(conn)? {
        let Some(t) = SyncTable::load(conn, &name)? else { continue };
        let mut waiting = 0u64;
        let keys: Vec<Vec<u8>> = {
            let cols = t.meta_keys().join(", ");
            let mut stmt = conn.prepare(&format!("SELECT {cols} FROM {} WHERE cl % 2 = 1", t.meta()))?;
            let n = t.meta_keys().len();
            let rows = stmt.query_map([], |r| {
                let key =
                    (0..n).map(|i| r.get_ref(i).map(crate::sql::value_of)).collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(cloudsync_core::value::encode_key(&key))
            })?;
            let all: Vec<Vec<u8>> = rows.collect::<rusqlite::Result<_>>()?;
            let mine = pending.get(&t.name);
            all.into_iter()
                .filter(|pk| {
                    let unconfirmed = mine.is_some_and(|m| m.contains(pk));
                    waiting += u64::from(unconfirmed);
                    !unconfirmed
                })
                .collect()
        };
        let mut found = Vec::new();
        for batch in keys.chunks(VISIBILITY_BATCH) {
            found.extend(client.invisible(&t.name, batch)?);
        }
        in_savepoint(conn, "cloudsync_visibility", || {
            conn.execute("DELETE FROM cloudsync_hidden WHERE tbl = ?1", [&t.name])?;
            let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO cloudsync_hidden (tbl, pk) VALUES (?1, ?2)")?;
            for pk in &found {
                insert.execute(rusqlite::params![t.name, pk])?;
            }
            Ok(())
        })?;
        checked += keys.len() as u64;
        hidden += found.len() as u64;
        unconfirmed += waiting;
        tables.insert(t.name.clone(), json!({ "checked": keys.len(), "hidden": found.len(), "unconfirmed": waiting }));
    }
    Ok(json!({ "checked": checked, "hidden": hidden, "unconfirmed": unconfirmed, "tables": tables }))
}

/// The rows (encoded keys, by table) this device changed after the last position the
/// server confirmed applying (its own uploads, every earlier one finished).
fn unconfirmed_keys(conn: &Connection, client: &Client) -> Result<HashMap<String, HashSet<Vec<u8>>>> {
    let confirmed = client.status()?.device.confirmed.as_deref().map(parse_checkpoint).transpose()?;
    let query = FeedQuery {
        from: confirmed.unwrap_or(Checkpoint::ZERO),
        sites: SiteFilter::Only(client.site),
        ..FeedQuery::default()
    };
    let mut reader = FeedReader::new(conn, query)?;
    let mut keys: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    while let Some(c) = reader.next(conn)? {
        keys.entry(c.table).or_default().insert(c.pk);
    }
    Ok(keys)
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
