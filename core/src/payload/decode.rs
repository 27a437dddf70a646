//! Reading payloads: every byte is checked before anything is returned.

use crate::algo::Algo;
use crate::change::{ChangeCell, ChangeRow, Changeset, Origin, TableDesc};
use crate::error::DecodeError;
use crate::ids::{Cursor, SiteId};
use crate::value::Value;
use crate::varint::{get_count, get_i64, get_len, get_u64, take};

use super::{CODEC_RAW, CODEC_ZSTD, FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, MAGIC, MAX_FRAME_RAW};

/// The fixed header of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u8,
    /// Number of frames that follow.
    pub frames: u32,
}

/// Reads and checks the 14-byte header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated("payload header"));
    }
    let stored_crc = u32::from_le_bytes(le4(&bytes[10..14]));
    if crc32fast::hash(&bytes[..10]) != stored_crc {
        return Err(DecodeError::Checksum("payload header"));
    }
    let version = bytes[4];
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    if bytes[5] != 0 {
        return Err(DecodeError::Invalid { what: "payload header", why: "unknown flags set" });
    }
    Ok(Header { version, frames: u32::from_le_bytes(le4(&bytes[6..10])) })
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

/// Decodes a whole payload into one changeset (frames concatenated, dictionaries
/// merged). Fails without partial results on any defect.
pub fn decode(bytes: &[u8]) -> Result<Changeset, DecodeError> {
    decode_limited(bytes, u64::MAX)
}

static DECODES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many payloads this process has started to decode ([`decode`] and
/// [`decode_limited`] calls). Decoding is the costliest step of an apply after the
/// writes: a host shows with it that each payload it applies is decoded once.
pub fn decode_count() -> u64 {
    DECODES.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`decode`], refusing a payload whose frames declare more than `max_raw` bytes once
/// decompressed, in all. The frame headers are summed before any frame is
/// decompressed: what a decoder may have to hold is bounded by the caller, not by the
/// sender, and a refused payload costs one pass over its headers.
pub fn decode_limited(bytes: &[u8], max_raw: u64) -> Result<Changeset, DecodeError> {
    DECODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let header = decode_header(bytes)?;
    check_declared(&bytes[HEADER_LEN..], header.frames, max_raw)?;
    let mut input = &bytes[HEADER_LEN..];
    let mut out = Changeset::default();
    for frame in 0..header.frames as usize {
        let raw = read_frame(&mut input, frame)?;
        let cs = decode_body(&raw)?;
        append(&mut out, cs);
    }
    if !input.is_empty() {
        return Err(DecodeError::TrailingBytes(input.len(), "last frame"));
    }
    Ok(out)
}

/// Sums the uncompressed sizes the frame headers declare, refusing at the first frame
/// that takes the total over `max_raw`. Structural defects (a truncated frame) are left
/// to the decoding pass, which reports them precisely.
fn check_declared(mut input: &[u8], frames: u32, max_raw: u64) -> Result<(), DecodeError> {
    let mut total = 0u64;
    for frame in 0..frames as usize {
        let Some(head) = input.get(..FRAME_HEADER_LEN) else { return Ok(()) };
        let head = FrameHead::parse(head);
        total = total.saturating_add(u64::from(head.raw_len));
        if total > max_raw {
            return Err(DecodeError::FrameTooLarge {
                frame,
                what: "uncompressed size of the payload so far",
                size: total,
                limit: max_raw,
            });
        }
        let stored = usize::try_from(head.stored_len).unwrap_or(usize::MAX);
        let Some(rest) = input.get(FRAME_HEADER_LEN.saturating_add(stored)..) else { return Ok(()) };
        input = rest;
    }
    Ok(())
}

/// A frame's header: codec, stored (compressed) length, declared uncompressed length,
/// CRC-32 of the stored bytes.
struct FrameHead {
    codec: u8,
    stored_len: u32,
    raw_len: u32,
    crc: u32,
}

impl FrameHead {
    /// Reads the `FRAME_HEADER_LEN` bytes of a frame header.
    fn parse(head: &[u8]) -> FrameHead {
        FrameHead {
            codec: head[0],
            stored_len: u32::from_le_bytes(le4(&head[1..5])),
            raw_len: u32::from_le_bytes(le4(&head[5..9])),
            crc: u32::from_le_bytes(le4(&head[9..13])),
        }
    }
}

fn read_frame(input: &mut &[u8], frame: usize) -> Result<Vec<u8>, DecodeError> {
    let FrameHead { codec, stored_len, raw_len, crc } =
        FrameHead::parse(take(input, FRAME_HEADER_LEN, "frame header")?);
    if raw_len > MAX_FRAME_RAW {
        return Err(DecodeError::FrameTooLarge {
            frame,
            what: "uncompressed size",
            size: u64::from(raw_len),
            limit: u64::from(MAX_FRAME_RAW),
        });
    }
    let stored_len = usize::try_from(stored_len).map_err(|_| DecodeError::Truncated("frame body"))?;
    let stored = take(input, stored_len, "frame body")?;
    if crc32fast::hash(stored) != crc {
        return Err(DecodeError::Checksum("frame"));
    }
    let raw_len = usize::try_from(raw_len).map_err(|_| DecodeError::Truncated("frame body"))?;
    match codec {
        CODEC_RAW => {
            if stored.len() != raw_len {
                return Err(DecodeError::Invalid { what: "raw frame", why: "stored and raw sizes differ" });
            }
            Ok(stored.to_vec())
        }
        CODEC_ZSTD => {
            // Decompressed in one pass into a buffer of exactly the declared size (the
            // declared sizes were checked against the limits before): no window buffer,
            // no growth, and a frame holding more than it declares is an error, not an
            // allocation. Pages the output never reaches are never made resident.
            let mut raw = Vec::with_capacity(raw_len);
            zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(stored, &mut raw))
                .map_err(|e| DecodeError::Decompress(format!("frame {frame}: {e}")))?;
            if raw.len() != raw_len {
                return Err(DecodeError::Decompress(format!(
                    "frame {frame} decompressed to {} bytes, header says {raw_len}",
                    raw.len()
                )));
            }
            Ok(raw)
        }
        other => Err(DecodeError::BadCodec(other)),
    }
}

/// Appends a frame's changeset, re-indexing its dictionaries into `out`'s.
fn append(out: &mut Changeset, cs: Changeset) {
    let site_map: Vec<usize> = cs
        .sites
        .iter()
        .map(|s| match out.sites.iter().position(|x| x == s) {
            Some(i) => i,
            None => {
                out.sites.push(*s);
                out.sites.len() - 1
            }
        })
        .collect();
    let mut table_map = Vec::with_capacity(cs.tables.len());
    let mut col_maps = Vec::with_capacity(cs.tables.len());
    for t in cs.tables {
        let idx = match out.tables.iter().position(|x| x.name == t.name) {
            Some(i) => i,
            None => {
                out.tables.push(TableDesc { columns: Vec::new(), ..t.clone() });
                out.tables.len() - 1
            }
        };
        let cols = &mut out.tables[idx].columns;
        let map: Vec<usize> = t
            .columns
            .iter()
            .map(|c| match cols.iter().position(|x| x == c) {
                Some(i) => i,
                None => {
                    cols.push(c.clone());
                    cols.len() - 1
                }
            })
            .collect();
        table_map.push(idx);
        col_maps.push(map);
    }
    let remap = |o: Origin| Origin { at: o.at, site: site_map[o.site] };
    for mut row in cs.rows {
        let cmap = &col_maps[row.table];
        row.table = table_map[row.table];
        row.event = row.event.map(remap);
        for c in &mut row.cells {
            c.col = cmap[c.col];
            c.origin = remap(c.origin);
        }
        out.rows.push(row);
    }
}

fn get_str(input: &mut &[u8], what: &'static str) -> Result<String, DecodeError> {
    let len = get_count(input, what)?;
    let bytes = take(input, len, what)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8(what))
}

fn get_bytes<'a>(input: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], DecodeError> {
    let len = get_count(input, what)?;
    take(input, len, what)
}

fn index(input: &mut &[u8], what: &'static str, len: usize) -> Result<usize, DecodeError> {
    let v = get_u64(input)?;
    match usize::try_from(v) {
        Ok(i) if i < len => Ok(i),
        _ => Err(DecodeError::BadIndex { what, index: v, len }),
    }
}

fn algo_from_code(code: u8) -> Result<Algo, DecodeError> {
    Ok(match code {
        0 => Algo::Cls,
        1 => Algo::Gos,
        2 => Algo::Aws,
        3 => Algo::Dws,
        _ => return Err(DecodeError::Invalid { what: "table dictionary", why: "unknown algorithm code" }),
    })
}

/// Inverse of the encoder's origin delta coding.
#[derive(Default)]
struct OriginReader {
    prev_dbv: u64,
    prev_seq: u64,
}

impl OriginReader {
    fn get(&mut self, input: &mut &[u8], sites: usize) -> Result<Origin, DecodeError> {
        let dbv_delta = get_i64(input)?;
        let db_version = self.prev_dbv.wrapping_add(dbv_delta.cast_unsigned());
        let seq =
            if dbv_delta == 0 { self.prev_seq.wrapping_add(get_i64(input)?.cast_unsigned()) } else { get_u64(input)? };
        let site = index(input, "site", sites)?;
        self.prev_dbv = db_version;
        self.prev_seq = seq;
        Ok(Origin { at: Cursor::new(db_version, seq), site })
    }
}

/// Parses one uncompressed frame body, without the frame header and its checksum.
/// For tools and fuzzing: payloads are read with [`decode`].
pub fn decode_frame_body(raw: &[u8]) -> Result<Changeset, DecodeError> {
    decode_body(raw)
}

/// Parses one uncompressed frame body.
pub(super) fn decode_body(raw: &[u8]) -> Result<Changeset, DecodeError> {
    let mut input = raw;
    let n_sites = get_count(&mut input, "site count")?;
    let mut sites = Vec::with_capacity(n_sites);
    for _ in 0..n_sites {
        sites.push(SiteId::from_slice(take(&mut input, 16, "site id")?)?);
    }
    let n_tables = get_count(&mut input, "table count")?;
    let mut tables: Vec<TableDesc> = Vec::with_capacity(n_tables);
    for _ in 0..n_tables {
        let name = get_str(&mut input, "table name")?;
        if name.is_empty() || tables.iter().any(|t| t.name == name) {
            return Err(DecodeError::Invalid { what: "table dictionary", why: "empty or duplicate table name" });
        }
        let algo = algo_from_code(take(&mut input, 1, "table algorithm")?[0])?;
        let mut fp = [0u8; 8];
        fp.copy_from_slice(take(&mut input, 8, "table fingerprint")?);
        let n_cols = get_count(&mut input, "column count")?;
        let mut columns: Vec<String> = Vec::with_capacity(n_cols);
        for _ in 0..n_cols {
            let c = get_str(&mut input, "column name")?;
            if c.is_empty() || columns.contains(&c) {
                return Err(DecodeError::Invalid { what: "column dictionary", why: "empty or duplicate column name" });
            }
            columns.push(c);
        }
        tables.push(TableDesc { name, algo, fingerprint: u64::from_le_bytes(fp), columns });
    }

    let n_rows = get_count(&mut input, "row count")?;
    let mut row_stream = get_bytes(&mut input, "row stream")?;
    let mut key_stream = get_bytes(&mut input, "key stream")?;
    let mut cell_stream = get_bytes(&mut input, "cell stream")?;
    let n_groups = get_count(&mut input, "value group count")?;
    let mut groups: Vec<((usize, usize), &[u8])> = Vec::with_capacity(n_groups);
    for _ in 0..n_groups {
        let t = index(&mut input, "value group table", tables.len())?;
        let c = index(&mut input, "value group column", tables[t].columns.len())?;
        if groups.iter().any(|(k, _)| *k == (t, c)) {
            return Err(DecodeError::Invalid { what: "value groups", why: "duplicate group" });
        }
        groups.push(((t, c), get_bytes(&mut input, "value group")?));
    }
    if !input.is_empty() {
        return Err(DecodeError::TrailingBytes(input.len(), "frame body"));
    }

    let mut rows = Vec::with_capacity(n_rows);
    let mut row_origins = OriginReader::default();
    let mut cell_origins = OriginReader::default();
    for _ in 0..n_rows {
        let table = index(&mut row_stream, "row table", tables.len())?;
        let cl = get_u64(&mut row_stream)?;
        let n_cells = get_len(&mut row_stream, "cell count", cell_stream.len())?;
        let event = match take(&mut row_stream, 1, "row event flag")?[0] {
            0 => None,
            1 => Some(row_origins.get(&mut row_stream, sites.len())?),
            _ => return Err(DecodeError::Invalid { what: "row", why: "bad row event flag" }),
        };
        if cl == 0 {
            return Err(DecodeError::Invalid { what: "row", why: "causal length 0" });
        }
        if n_cells > 0 && cl % 2 == 0 {
            return Err(DecodeError::Invalid { what: "row", why: "cells in a deleted row" });
        }
        if n_cells == 0 && event.is_none() {
            return Err(DecodeError::Invalid { what: "row", why: "neither row event nor cells" });
        }
        let pk = get_bytes(&mut key_stream, "primary key")?.to_vec();
        if pk.is_empty() {
            return Err(DecodeError::Invalid { what: "row", why: "empty primary key" });
        }
        let mut cells: Vec<ChangeCell> = Vec::with_capacity(n_cells);
        for _ in 0..n_cells {
            let col = index(&mut cell_stream, "cell column", tables[table].columns.len())?;
            if cells.iter().any(|c| c.col == col) {
                return Err(DecodeError::Invalid { what: "row", why: "duplicate column in one row" });
            }
            let version = get_u64(&mut cell_stream)?;
            let origin = cell_origins.get(&mut cell_stream, sites.len())?;
            let group = groups
                .iter_mut()
                .find(|(k, _)| *k == (table, col))
                .ok_or(DecodeError::Invalid { what: "row", why: "cell without value group" })?;
            let value = Value::decode(&mut group.1)?;
            cells.push(ChangeCell { col, version, value, origin });
        }
        rows.push(ChangeRow { table, pk, cl, event, cells });
    }
    for (what, rest) in [("row stream", row_stream), ("key stream", key_stream), ("cell stream", cell_stream)] {
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len(), what));
        }
    }
    if let Some((_, rest)) = groups.iter().find(|(_, rest)| !rest.is_empty()) {
        return Err(DecodeError::TrailingBytes(rest.len(), "value group"));
    }
    Ok(Changeset { sites, tables, rows })
}
