//! Writing payloads.

use crate::algo::Algo;
use crate::change::{Change, ChangeError, ChangeRow, Changeset, Origin};
use crate::varint::{put_i64, put_u64};

use super::{CODEC_RAW, CODEC_ZSTD, DEFAULT_FRAME_TARGET, FORMAT_VERSION, MAGIC};

/// Encoder settings.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Cut a frame at the first row boundary after this many uncompressed bytes.
    pub frame_target: usize,
    /// zstd level, or `None` to store frames uncompressed.
    pub compression: Option<i32>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { frame_target: DEFAULT_FRAME_TARGET, compression: Some(3) }
    }
}

/// Builds a payload from changes pushed one at a time (the `cloudsync_payload_encode`
/// aggregate) or from whole changesets.
#[derive(Debug)]
pub struct PayloadEncoder {
    options: EncodeOptions,
    frames: Vec<Vec<u8>>,
    current: Changeset,
    current_estimate: usize,
    changes: u64,
}

impl Default for PayloadEncoder {
    fn default() -> Self {
        Self::new(EncodeOptions::default())
    }
}

impl PayloadEncoder {
    /// A new, empty encoder.
    pub fn new(options: EncodeOptions) -> Self {
        PayloadEncoder { options, frames: Vec::new(), current: Changeset::default(), current_estimate: 0, changes: 0 }
    }

    /// Adds one change. `table_info` gives the algorithm and schema fingerprint of a
    /// table the first time it appears in a frame.
    pub fn push(&mut self, change: Change, table_info: impl FnOnce(&str) -> (Algo, u64)) -> Result<(), ChangeError> {
        let starts_row = self.current.rows.last().is_none_or(|r| {
            r.cl != change.cl || r.pk != change.pk || self.current.tables[r.table].name != change.table
        });
        if starts_row && self.current_estimate >= self.options.frame_target {
            self.flush_frame();
        }
        self.current_estimate += change.pk.len() / 4 + change.value.encoded_len() + 8;
        self.current.push(change, table_info)?;
        self.changes += 1;
        Ok(())
    }

    /// Number of changes pushed so far.
    pub fn change_count(&self) -> u64 {
        self.changes
    }

    /// Roughly how many bytes the payload will take: frames already encoded plus an
    /// estimate of the frame being filled (before compression).
    pub fn size_estimate(&self) -> usize {
        super::HEADER_LEN + self.frames.iter().map(Vec::len).sum::<usize>() + self.current_estimate
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    fn flush_frame(&mut self) {
        if self.current.rows.is_empty() {
            return;
        }
        let cs = std::mem::take(&mut self.current);
        self.current_estimate = 0;
        self.frames.push(encode_frame(&cs, self.options.compression));
    }

    /// The finished payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_frame();
        let mut out = Vec::with_capacity(super::HEADER_LEN + self.frames.iter().map(Vec::len).sum::<usize>());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(0); // flags: none defined in v1
        let count = u32::try_from(self.frames.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        for f in &self.frames {
            out.extend_from_slice(f);
        }
        out
    }

    /// Encodes a whole changeset in one call.
    pub fn encode(changeset: &Changeset, options: EncodeOptions) -> Vec<u8> {
        let mut enc = PayloadEncoder::new(options);
        for change in changeset.changes() {
            let info = changeset.table_info(&change.table);
            // Changes read back from a valid changeset always push cleanly.
            let _ = enc.push(change, |_| info);
        }
        enc.finish()
    }
}

/// One frame: header, then the stored body.
fn encode_frame(cs: &Changeset, compression: Option<i32>) -> Vec<u8> {
    let raw = encode_body(cs);
    let compressed =
        compression.and_then(|level| zstd::bulk::compress(&raw, level).ok()).filter(|c| c.len() < raw.len());
    let (codec, stored) = match &compressed {
        Some(c) => (CODEC_ZSTD, c.as_slice()),
        None => (CODEC_RAW, raw.as_slice()),
    };
    let mut out = Vec::with_capacity(super::FRAME_HEADER_LEN + stored.len());
    out.push(codec);
    out.extend_from_slice(&u32::try_from(stored.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(stored).to_le_bytes());
    out.extend_from_slice(stored);
    out
}

/// Delta-codes origins within one stream.
#[derive(Default)]
struct OriginWriter {
    prev_dbv: u64,
    prev_seq: u64,
}

impl OriginWriter {
    fn put(&mut self, out: &mut Vec<u8>, o: Origin) {
        let dbv_delta = o.at.db_version.wrapping_sub(self.prev_dbv).cast_signed();
        put_i64(out, dbv_delta);
        if dbv_delta == 0 {
            put_i64(out, o.at.seq.wrapping_sub(self.prev_seq).cast_signed());
        } else {
            put_u64(out, o.at.seq);
        }
        put_u64(out, o.site as u64);
        self.prev_dbv = o.at.db_version;
        self.prev_seq = o.at.seq;
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The uncompressed frame body (layout in `docs/payload-format.md`).
pub(super) fn encode_body(cs: &Changeset) -> Vec<u8> {
    let mut out = Vec::new();
    // Dictionaries.
    put_u64(&mut out, cs.sites.len() as u64);
    for s in &cs.sites {
        out.extend_from_slice(s.as_bytes());
    }
    put_u64(&mut out, cs.tables.len() as u64);
    for t in &cs.tables {
        put_bytes(&mut out, t.name.as_bytes());
        out.push(algo_code(t.algo));
        out.extend_from_slice(&t.fingerprint.to_le_bytes());
        put_u64(&mut out, t.columns.len() as u64);
        for c in &t.columns {
            put_bytes(&mut out, c.as_bytes());
        }
    }
    // Streams.
    let mut rows = Vec::new();
    let mut keys = Vec::new();
    let mut cells = Vec::new();
    let mut groups: Vec<((usize, usize), Vec<u8>)> = Vec::new();
    let mut row_origins = OriginWriter::default();
    let mut cell_origins = OriginWriter::default();
    for row in &cs.rows {
        encode_row(row, &mut rows, &mut row_origins);
        put_bytes(&mut keys, &row.pk);
        for c in &row.cells {
            put_u64(&mut cells, c.col as u64);
            put_u64(&mut cells, c.version);
            cell_origins.put(&mut cells, c.origin);
            let key = (row.table, c.col);
            let group = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => &mut groups[i].1,
                None => {
                    groups.push((key, Vec::new()));
                    &mut groups.last_mut().unwrap_or_else(|| unreachable!()).1
                }
            };
            c.value.encode(group);
        }
    }
    put_u64(&mut out, cs.rows.len() as u64);
    put_bytes(&mut out, &rows);
    put_bytes(&mut out, &keys);
    put_bytes(&mut out, &cells);
    put_u64(&mut out, groups.len() as u64);
    for ((table, col), bytes) in &groups {
        put_u64(&mut out, *table as u64);
        put_u64(&mut out, *col as u64);
        put_bytes(&mut out, bytes);
    }
    out
}

fn encode_row(row: &ChangeRow, out: &mut Vec<u8>, origins: &mut OriginWriter) {
    put_u64(out, row.table as u64);
    put_u64(out, row.cl);
    put_u64(out, row.cells.len() as u64);
    match row.event {
        Some(o) => {
            out.push(1);
            origins.put(out, o);
        }
        None => out.push(0),
    }
}

pub(super) fn algo_code(a: Algo) -> u8 {
    match a {
        Algo::Cls => 0,
        Algo::Gos => 1,
        Algo::Aws => 2,
        Algo::Dws => 3,
    }
}
