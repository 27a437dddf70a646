//! Payloads built from the feed, and file-based exchange.

use std::io::Write;

use cloudsync_core::engine::ApplyReport;
use cloudsync_core::feed::{Checkpoint, Chunk};
use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
use cloudsync_core::{Algo, Cursor};
use rusqlite::Connection;

use crate::changes::{FeedQuery, FeedReader};
use crate::meta::table::SyncTable;
use crate::state::ConnState;
use crate::{apply, fold, settings, Error, Result};

/// Encoder settings from `cloudsync_set`.
pub fn encode_options(conn: &Connection) -> Result<EncodeOptions> {
    use cloudsync_core::settings::{encode_options, COMPRESSION, FRAME_SIZE};
    Ok(encode_options(settings::global_int(conn, FRAME_SIZE)?, settings::global_int(conn, COMPRESSION)?))
}

/// Folds pending local writes, then encodes every change matching `query`. Returns
/// the payload (None when there is nothing to send), the number of changes and where
/// to resume from.
pub fn encode(conn: &Connection, query: FeedQuery) -> Result<(Option<Vec<u8>>, u64, Checkpoint)> {
    let chunk = encode_chunk(conn, query, usize::MAX)?;
    Ok((chunk.payload, chunk.changes, chunk.next))
}

/// Like [`encode`], but stops at the first row boundary after about `max_bytes`
/// (uncompressed estimate), so that large feeds travel as several resumable chunks.
/// A row is never split: a single row larger than `max_bytes` makes a chunk of its own.
///
/// The rows and the resume point are read in one transaction (one snapshot), after
/// pending local writes are folded; the resume point covers exactly the changes in the
/// chunk (`cloudsync_core::feed`, ARCHITECTURE.md "a cursor is a promise").
pub fn encode_chunk(conn: &Connection, query: FeedQuery, max_bytes: usize) -> Result<Chunk> {
    fold::fold_all(conn)?;
    crate::sql::in_savepoint(conn, "cloudsync_feed", || read_chunk(conn, query, max_bytes))
}

fn read_chunk(conn: &Connection, query: FeedQuery, max_bytes: usize) -> Result<Chunk> {
    let mut reader = FeedReader::new(conn, query)?;
    let mut encoder = PayloadEncoder::new(encode_options(conn)?);
    let mut tables: Vec<(String, Algo, u64)> = Vec::new();
    let mut more = false;
    while let Some(change) = reader.next(conn)? {
        if !tables.iter().any(|(n, _, _)| *n == change.table) {
            let t = SyncTable::require(conn, &change.table)?;
            tables.push((t.name.clone(), t.algo, t.fingerprint));
        }
        let info = tables.iter().find(|(n, _, _)| *n == change.table).map_or((Algo::Cls, 0), |(_, a, f)| (*a, *f));
        encoder.push(change, |_| info).map_err(|e| Error::Apply(e.to_string()))?;
        if reader.at_row_boundary() && encoder.size_estimate() >= max_bytes {
            more = reader.next(conn)?.is_some();
            break;
        }
    }
    let next = if more { reader.checkpoint_before_current() } else { reader.checkpoint(conn)? };
    let changes = encoder.change_count();
    let payload = (!encoder.is_empty()).then(|| encoder.finish());
    Ok(Chunk { payload, changes, next, more })
}

/// `cloudsync_payload_save(path, since)`: writes every change after `since` (all
/// changes by default, from every site) to `path`, atomically. Returns the number of
/// changes written; with none, no file is written.
pub fn save(conn: &Connection, path: &str, since: u64) -> Result<u64> {
    let from = Checkpoint::complete(if since == 0 { Cursor::ZERO } else { Cursor::through(since) });
    let (payload, n, _) = encode(conn, FeedQuery { from, ..FeedQuery::default() })?;
    let Some(bytes) = payload else { return Ok(0) };
    let io = |source| Error::Io { path: path.to_string(), source };
    let tmp = format!("{path}.tmp-{}", std::process::id());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(n)
}

/// `cloudsync_payload_load(path)`: applies a payload file.
pub fn load(conn: &Connection, state: &ConnState, path: &str) -> Result<ApplyReport> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_string(), source })?;
    apply::apply_payload(conn, state, &bytes)
}
