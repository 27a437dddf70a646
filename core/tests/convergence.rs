//! N replicas, random local operations, random delivery (reordered, duplicated, lost
//! and retried): every replica ends identical, and identical to a reference model that
//! knows nothing of delivery — the join of every row state any replica ever produced.

use std::collections::BTreeMap;

use cloudsync_core::memory::MemReplica;
use cloudsync_core::payload::{decode, EncodeOptions, PayloadEncoder};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Algo, Changeset, Cursor, SiteId, Value};
use proptest::prelude::*;

const TABLE: &str = "t";
const COLS: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum Step {
    Insert {
        r: usize,
        key: i64,
        a: i64,
        b: i64,
    },
    Update {
        r: usize,
        key: i64,
        col: usize,
        v: i64,
    },
    Delete {
        r: usize,
        key: i64,
    },
    /// `from` snapshots its changes for `to` into the network (not yet delivered).
    Send {
        from: usize,
        to: usize,
    },
    /// One in-flight payload for `to` (chosen by `pick`) arrives; `dup` delivers it twice.
    Deliver {
        to: usize,
        pick: usize,
        dup: bool,
    },
    /// One in-flight payload is lost.
    Lose {
        pick: usize,
    },
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    let r = 0..n;
    let key = 0i64..4;
    let v = 0i64..3;
    prop_oneof![
        (r.clone(), key.clone(), v.clone(), v.clone()).prop_map(|(r, key, a, b)| Step::Insert { r, key, a, b }),
        (r.clone(), key.clone(), 0usize..2, v).prop_map(|(r, key, col, v)| Step::Update { r, key, col, v }),
        (r.clone(), key).prop_map(|(r, key)| Step::Delete { r, key }),
        (r.clone(), r.clone()).prop_map(|(from, to)| Step::Send { from, to }),
        (r, any::<usize>(), any::<bool>()).prop_map(|(to, pick, dup)| Step::Deliver { to, pick, dup }),
        any::<usize>().prop_map(|pick| Step::Lose { pick }),
    ]
}

/// A row state as the model sees it: causal length and, per column, the winning
/// `(version, value, site)` of that life.
type ModelRow = (u64, BTreeMap<usize, (u64, Value, SiteId)>);

fn join(a: &ModelRow, b: &ModelRow) -> ModelRow {
    match a.0.cmp(&b.0) {
        std::cmp::Ordering::Greater => a.clone(),
        std::cmp::Ordering::Less => b.clone(),
        std::cmp::Ordering::Equal => {
            let mut cells = a.1.clone();
            for (col, cell) in &b.1 {
                let keep = cells.get(col).is_some_and(|mine| (mine.0, &mine.1, mine.2) >= (cell.0, &cell.1, cell.2));
                if !keep {
                    cells.insert(*col, cell.clone());
                }
            }
            (a.0, cells)
        }
    }
}

/// Snapshot of one row of a replica, as a model row.
fn observe(rep: &MemReplica, key: i64) -> Option<ModelRow> {
    let clock = rep.clock(TABLE, &Value::Integer(key))?;
    let values = rep.rows(TABLE).get(&encode_key(&[Value::Integer(key)])).cloned();
    let mut cells = BTreeMap::new();
    for c in &clock.cells {
        let col = c.col as usize;
        let v = values.as_ref().map_or(Value::Null, |row| row[col].clone());
        // Local writes are stamped with site 0 = this replica.
        let site = if c.stamp.site == 0 { rep.site() } else { SiteId([0; 16]) };
        cells.insert(col, (c.version, v, site));
    }
    Some((clock.cl, cells))
}

struct Net {
    replicas: Vec<MemReplica>,
    /// `cursor[to][from]`: what `to` has durably received from `from`.
    cursor: Vec<Vec<Cursor>>,
    in_flight: Vec<(usize, usize, Vec<u8>, Option<Cursor>)>,
    produced: BTreeMap<i64, ModelRow>,
}

impl Net {
    fn new(n: usize, algo: Algo) -> Self {
        let replicas = (0..n)
            .map(|i| {
                // Distinct site ids with a fixed order, so ties are reproducible.
                let mut r = MemReplica::new(SiteId([u8::try_from(i + 1).unwrap(); 16]));
                r.create_table(TABLE, algo, &COLS);
                r
            })
            .collect();
        Net { replicas, cursor: vec![vec![Cursor::ZERO; n]; n], in_flight: Vec::new(), produced: BTreeMap::new() }
    }

    fn record(&mut self, r: usize, key: i64) {
        if let Some(state) = observe(&self.replicas[r], key) {
            let joined = match self.produced.get(&key) {
                Some(prev) => join(prev, &state),
                None => state,
            };
            self.produced.insert(key, joined);
        }
    }

    fn send(&mut self, from: usize, to: usize) {
        let cs = self.replicas[from].changes_since(self.cursor[to][from]);
        let max = cs.max_cursor();
        let bytes = PayloadEncoder::encode(&cs, EncodeOptions { frame_target: 96, ..Default::default() });
        self.in_flight.push((from, to, bytes, max));
    }

    fn deliver(&mut self, i: usize, times: usize) {
        let (from, to, bytes, max) = self.in_flight.remove(i);
        let cs: Changeset = decode(&bytes).expect("payload decodes");
        for _ in 0..times {
            self.replicas[to].apply(&cs).expect("apply succeeds");
        }
        if let Some(max) = max {
            let c = &mut self.cursor[to][from];
            *c = (*c).max(max);
        }
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Insert { r, key, a, b } => {
                if self.replicas[r]
                    .insert(TABLE, Value::Integer(key), vec![Value::Integer(a), Value::Integer(b)])
                    .is_ok()
                {
                    self.record(r, key);
                }
            }
            Step::Update { r, key, col, v } => {
                if self.replicas[r].update(TABLE, Value::Integer(key), COLS[col], Value::Integer(v)).is_ok() {
                    self.record(r, key);
                }
            }
            Step::Delete { r, key } => {
                if self.replicas[r].delete(TABLE, Value::Integer(key)).is_ok() {
                    self.record(r, key);
                }
            }
            Step::Send { from, to } if from != to => self.send(from, to),
            Step::Send { .. } => {}
            Step::Deliver { to, pick, dup } => {
                let mine: Vec<usize> = (0..self.in_flight.len()).filter(|&i| self.in_flight[i].1 == to).collect();
                if !mine.is_empty() {
                    self.deliver(mine[pick % mine.len()], if dup { 2 } else { 1 });
                }
            }
            Step::Lose { pick } => {
                if !self.in_flight.is_empty() {
                    let n = self.in_flight.len();
                    self.in_flight.remove(pick % n);
                }
            }
        }
    }

    /// Delivers what is in flight, then syncs every pair until nothing changes.
    fn settle(&mut self) {
        while !self.in_flight.is_empty() {
            self.deliver(0, 1);
        }
        let n = self.replicas.len();
        for _round in 0..2 * n {
            for from in 0..n {
                for to in 0..n {
                    if from != to {
                        self.send(from, to);
                        self.deliver(self.in_flight.len() - 1, 1);
                    }
                }
            }
        }
    }

    fn expected_rows(&self) -> BTreeMap<Vec<u8>, Vec<Value>> {
        self.produced
            .iter()
            .filter(|(_, (cl, _))| cl % 2 == 1)
            .map(|(key, (_, cells))| {
                let values = (0..COLS.len()).map(|c| cells.get(&c).map_or(Value::Null, |x| x.1.clone())).collect();
                (encode_key(&[Value::Integer(*key)]), values)
            })
            .collect()
    }
}

fn check(algo: Algo, n: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut net = Net::new(n, algo);
    for s in steps {
        net.run(s);
    }
    net.settle();
    let first = net.replicas[0].rows(TABLE);
    for (i, r) in net.replicas.iter().enumerate().skip(1) {
        prop_assert_eq!(&r.rows(TABLE), &first, "replica {} differs from replica 0", i);
    }
    prop_assert_eq!(&first, &net.expected_rows(), "replicas differ from the reference model");
    // Idempotence: a full resend changes nothing anywhere.
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let cs = net.replicas[from].changes_since(Cursor::ZERO);
                let report = net.replicas[to].apply(&cs).unwrap();
                prop_assert_eq!(report.applied, 0, "resend from {} to {} changed state", from, to);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn cls_converges(n in 2usize..5, steps in prop::collection::vec(step(4), 1..80)) {
        let steps: Vec<Step> = steps.into_iter().map(|s| clamp(s, n)).collect();
        check(Algo::Cls, n, &steps)?;
    }

    #[test]
    fn aws_converges(n in 2usize..5, steps in prop::collection::vec(step(4), 1..80)) {
        let steps: Vec<Step> = steps.into_iter().map(|s| clamp(s, n)).collect();
        check(Algo::Aws, n, &steps)?;
    }

    #[test]
    fn dws_converges(n in 2usize..5, steps in prop::collection::vec(step(4), 1..80)) {
        let steps: Vec<Step> = steps.into_iter().map(|s| clamp(s, n)).collect();
        check(Algo::Dws, n, &steps)?;
    }

    #[test]
    fn gos_converges(n in 2usize..5, steps in prop::collection::vec(step(4), 1..80)) {
        let steps: Vec<Step> = steps.into_iter().map(|s| clamp(s, n)).collect();
        check(Algo::Gos, n, &steps)?;
    }
}

fn clamp(s: Step, n: usize) -> Step {
    match s {
        Step::Insert { r, key, a, b } => Step::Insert { r: r % n, key, a, b },
        Step::Update { r, key, col, v } => Step::Update { r: r % n, key, col, v },
        Step::Delete { r, key } => Step::Delete { r: r % n, key },
        Step::Send { from, to } => Step::Send { from: from % n, to: to % n },
        Step::Deliver { to, pick, dup } => Step::Deliver { to: to % n, pick, dup },
        Step::Lose { pick } => Step::Lose { pick },
    }
}

/// Semantics pinned by example (the reference document's scenarios).
#[test]
fn delete_beats_concurrent_update_under_cls_but_not_aws() {
    for (algo, survives) in [(Algo::Cls, false), (Algo::Aws, true)] {
        let mut net = Net::new(2, algo);
        net.run(&Step::Insert { r: 0, key: 1, a: 1, b: 1 });
        net.settle();
        net.run(&Step::Update { r: 0, key: 1, col: 0, v: 2 });
        net.run(&Step::Delete { r: 1, key: 1 });
        net.settle();
        assert_eq!(net.replicas[0].rows(TABLE).len(), usize::from(survives), "{algo}");
        assert_eq!(net.replicas[1].rows(TABLE), net.replicas[0].rows(TABLE));
    }
}

#[test]
fn reinsert_after_delete_resurrects_and_delete_wins_forever_under_dws() {
    for (algo, alive) in [(Algo::Cls, true), (Algo::Dws, false)] {
        let mut net = Net::new(2, algo);
        net.run(&Step::Insert { r: 0, key: 1, a: 1, b: 1 });
        net.settle();
        net.run(&Step::Delete { r: 1, key: 1 });
        net.settle();
        net.run(&Step::Insert { r: 0, key: 1, a: 5, b: 5 });
        net.settle();
        let rows = net.replicas[1].rows(TABLE);
        assert_eq!(rows.len(), usize::from(alive), "{algo}");
        assert_eq!(net.replicas[0].rows(TABLE), rows);
    }
}

#[test]
fn concurrent_edits_to_different_columns_both_survive() {
    let mut net = Net::new(3, Algo::Cls);
    net.run(&Step::Insert { r: 0, key: 1, a: 0, b: 0 });
    net.settle();
    net.run(&Step::Update { r: 1, key: 1, col: 0, v: 1 });
    net.run(&Step::Update { r: 2, key: 1, col: 1, v: 2 });
    net.settle();
    for r in &net.replicas {
        assert_eq!(r.rows(TABLE).values().next().unwrap(), &vec![Value::Integer(1), Value::Integer(2)]);
    }
}
