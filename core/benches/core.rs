//! Micro-benchmarks of the core's hot paths: payload encode/decode, merging a
//! changeset into a replica, clock blobs. Run with `cargo bench -p cloudsync-core`
//! (or `cargo xtask bench core`); they guard against regressions, the workload
//! ratios against plain SQLite live in `cargo xtask bench sqlite`.
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use cloudsync_core::clock::{CellClock, RowClock};
use cloudsync_core::memory::MemReplica;
use cloudsync_core::payload::{decode, EncodeOptions, PayloadEncoder};
use cloudsync_core::{Algo, Changeset, Cursor, SiteId, Stamp, Value};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ROWS: i64 = 10_000;

fn replica_with_rows() -> MemReplica {
    let mut r = MemReplica::new(SiteId([1; 16]));
    r.create_table("t", Algo::Cls, &["a", "b", "c", "d"]);
    for i in 0..ROWS {
        let key = Value::text(format!("{i:08x}-0000-4000-8000-{i:012x}"));
        let values = vec![
            Value::Integer(i * 7919),
            Value::text(format!("text value number {i}")),
            Value::Real(f64::from(u32::try_from(i).unwrap_or(0)) / 3.0),
            Value::Blob(i.to_le_bytes().repeat(2)),
        ];
        r.insert("t", key, values).expect("insert");
    }
    r
}

fn payloads(c: &mut Criterion) {
    let cs = replica_with_rows().changes_since(Cursor::ZERO);
    let changes = cs.change_count() as u64;
    let bytes = PayloadEncoder::encode(&cs, EncodeOptions::default());
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(changes));
    g.bench_function("encode 40k changes (zstd 3)", |b| {
        b.iter(|| PayloadEncoder::encode(black_box(&cs), EncodeOptions::default()))
    });
    g.bench_function("encode 40k changes (raw)", |b| {
        b.iter(|| {
            PayloadEncoder::encode(black_box(&cs), EncodeOptions { compression: None, ..EncodeOptions::default() })
        })
    });
    g.bench_function("decode 40k changes (zstd 3)", |b| b.iter(|| decode(black_box(&bytes)).expect("decode")));
    g.finish();
}

fn merges(c: &mut Criterion) {
    let source = replica_with_rows();
    let cs: Changeset = source.changes_since(Cursor::ZERO);
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(cs.change_count() as u64));
    g.bench_function("apply 40k changes into an empty replica", |b| {
        b.iter_batched(
            || {
                let mut r = MemReplica::new(SiteId([2; 16]));
                r.create_table("t", Algo::Cls, &["a", "b", "c", "d"]);
                r
            },
            |mut r| r.apply(black_box(&cs)).expect("apply"),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("re-apply 40k known changes (all stale)", |b| {
        let mut r = source.clone();
        b.iter(|| r.apply(black_box(&cs)).expect("apply"))
    });
    g.finish();
}

fn clocks(c: &mut Criterion) {
    let stamp = Stamp::local(70_000, 12_345);
    let clock =
        RowClock { cl: 1, row_stamp: stamp, cells: (0..4).map(|col| CellClock { col, version: 1, stamp }).collect() };
    let blob = clock.encode();
    c.bench_function("clock encode (4 cells)", |b| b.iter(|| black_box(&clock).encode()));
    c.bench_function("clock decode (4 cells)", |b| {
        b.iter(|| RowClock::decode(1, Cursor::new(70_000, 12_345), black_box(&blob)).expect("decode"))
    });
}

criterion_group!(benches, payloads, merges, clocks);
criterion_main!(benches);
