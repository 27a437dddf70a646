//! Differential test: the same random program runs on SQLite replicas and on the
//! core's in-memory reference replicas; payloads travel with random delays, loss and
//! duplication. SQLite replicas must converge, and to exactly the rows the reference
//! model ends with.

mod common;

use cloudsync_core::memory::MemReplica;
use cloudsync_core::payload::{decode, EncodeOptions, PayloadEncoder};
use cloudsync_core::value::encode_key;
use cloudsync_core::{Algo, Cursor, SiteId, Value};
use proptest::prelude::*;
use rusqlite::Connection;

#[derive(Clone, Debug)]
enum Step {
    Insert { r: usize, key: i64, a: i64, b: i64 },
    Update { r: usize, key: i64, col: usize, v: i64 },
    Delete { r: usize, key: i64 },
    Send { from: usize, to: usize },
    Deliver { pick: usize, dup: bool },
    Lose { pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let r = 0usize..3;
    let key = 0i64..4;
    let v = 0i64..3;
    prop_oneof![
        3 => (r.clone(), key.clone(), v.clone(), v.clone()).prop_map(|(r, key, a, b)| Step::Insert { r, key, a, b }),
        3 => (r.clone(), key.clone(), 0usize..2, v).prop_map(|(r, key, col, v)| Step::Update { r, key, col, v }),
        2 => (r.clone(), key).prop_map(|(r, key)| Step::Delete { r, key }),
        2 => (r.clone(), r).prop_map(|(from, to)| Step::Send { from, to }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, dup)| Step::Deliver { pick, dup }),
        1 => any::<usize>().prop_map(|pick| Step::Lose { pick }),
    ]
}

const COLS: [&str; 2] = ["a", "b"];

fn site(i: usize) -> SiteId {
    SiteId([u8::try_from(i + 1).unwrap(); 16])
}

fn sqlite_replica(i: usize, algo: Algo) -> Connection {
    let c = common::db();
    c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, a INTEGER, b INTEGER)").unwrap();
    c.query_row("SELECT cloudsync_init('t', ?1)", [algo.name()], |_| Ok(())).unwrap();
    // Fixed site ids, so that tie-breaks match the reference replicas.
    c.execute("UPDATE cloudsync_sites SET site_id = ?1 WHERE ord = 0", [site(i).as_bytes().as_slice()]).unwrap();
    c
}

fn key(k: i64) -> String {
    format!("k{k}")
}

/// A payload pair in flight: (from, to, sqlite payload and its max db_version, the
/// reference replica's payload and its cursor).
type InFlight = (usize, usize, Option<(Vec<u8>, i64)>, Vec<u8>, Option<Cursor>);

struct World {
    sql: Vec<Connection>,
    mem: Vec<MemReplica>,
    /// `seen[to][from]`: db_version of `from` that `to` has received.
    seen: Vec<Vec<i64>>,
    mem_seen: Vec<Vec<Cursor>>,
    /// In flight.
    net: Vec<InFlight>,
}

impl World {
    fn new(algo: Algo) -> Self {
        let mem = (0..3)
            .map(|i| {
                let mut m = MemReplica::new(site(i));
                m.create_table("t", algo, &COLS);
                m
            })
            .collect();
        World {
            sql: (0..3).map(|i| sqlite_replica(i, algo)).collect(),
            mem,
            seen: vec![vec![0; 3]; 3],
            mem_seen: vec![vec![Cursor::ZERO; 3]; 3],
            net: Vec::new(),
        }
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Insert { r, key: k, a, b } => {
                let ok_mem =
                    self.mem[r].insert("t", Value::text(key(k)), vec![Value::Integer(a), Value::Integer(b)]).is_ok();
                let ok_sql =
                    self.sql[r].execute("INSERT INTO t VALUES (?1, ?2, ?3)", rusqlite::params![key(k), a, b]).is_ok();
                assert_eq!(ok_mem, ok_sql, "insert acceptance differs");
            }
            Step::Update { r, key: k, col, v } => {
                let ok_mem = self.mem[r].update("t", Value::text(key(k)), COLS[col], Value::Integer(v)).is_ok();
                let n = self.sql[r]
                    .execute(&format!("UPDATE t SET {} = ?2 WHERE k = ?1", COLS[col]), rusqlite::params![key(k), v]);
                let ok_sql = matches!(n, Ok(1));
                assert_eq!(ok_mem, ok_sql, "update acceptance differs");
            }
            Step::Delete { r, key: k } => {
                let ok_mem = self.mem[r].delete("t", Value::text(key(k))).is_ok();
                let ok_sql = matches!(self.sql[r].execute("DELETE FROM t WHERE k = ?1", [key(k)]), Ok(1));
                assert_eq!(ok_mem, ok_sql, "delete acceptance differs");
            }
            Step::Send { from, to } if from != to => {
                let since = self.seen[to][from];
                let sql_payload = common::payload(&self.sql[from], since).map(|p| {
                    let max: i64 = self.sql[from]
                        .query_row(
                            "SELECT max(db_version) FROM cloudsync_changes WHERE db_version > ?1",
                            [since],
                            |r| r.get(0),
                        )
                        .unwrap();
                    (p, max)
                });
                let cs = self.mem[from].changes_since(self.mem_seen[to][from]);
                let mem_payload = PayloadEncoder::encode(&cs, EncodeOptions::default());
                self.net.push((from, to, sql_payload, mem_payload, cs.max_cursor()));
            }
            Step::Send { .. } => {}
            Step::Deliver { pick, dup } => {
                if !self.net.is_empty() {
                    let i = pick % self.net.len();
                    self.deliver(i, if dup { 2 } else { 1 });
                }
            }
            Step::Lose { pick } => {
                if !self.net.is_empty() {
                    let n = self.net.len();
                    self.net.remove(pick % n);
                }
            }
        }
    }

    fn deliver(&mut self, i: usize, times: usize) {
        let (from, to, sql_payload, mem_payload, cursor) = self.net.remove(i);
        for _ in 0..times {
            if let Some((p, _)) = &sql_payload {
                common::apply(&self.sql[to], p).unwrap();
            }
            self.mem[to].apply(&decode(&mem_payload).unwrap()).unwrap();
        }
        if let Some((_, max)) = sql_payload {
            self.seen[to][from] = self.seen[to][from].max(max);
        }
        if let Some(c) = cursor {
            self.mem_seen[to][from] = self.mem_seen[to][from].max(c);
        }
    }

    fn settle(&mut self) {
        while !self.net.is_empty() {
            self.deliver(0, 1);
        }
        for _ in 0..3 {
            for from in 0..3 {
                for to in 0..3 {
                    if from != to {
                        self.run(&Step::Send { from, to });
                        self.deliver(self.net.len() - 1, 1);
                    }
                }
            }
        }
    }
}

fn sql_rows(c: &Connection) -> Vec<(Vec<u8>, Vec<Value>)> {
    let mut s = c.prepare("SELECT k, a, b FROM t ORDER BY k").unwrap();
    s.query_map([], |r| {
        let k: String = r.get(0)?;
        let v = |i: usize| -> rusqlite::Result<Value> {
            Ok(match r.get::<_, Option<i64>>(i)? {
                Some(x) => Value::Integer(x),
                None => Value::Null,
            })
        };
        Ok((encode_key(&[Value::text(k)]), vec![v(1)?, v(2)?]))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn check(algo: Algo, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::new(algo);
    for s in steps {
        w.run(s);
    }
    w.settle();
    let expected: Vec<(Vec<u8>, Vec<Value>)> = w.mem[0].rows("t").into_iter().collect();
    for (i, c) in w.sql.iter().enumerate() {
        prop_assert_eq!(&sql_rows(c), &expected, "sqlite replica {} differs from the reference", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cls_matches_reference(steps in prop::collection::vec(step(), 1..60)) {
        check(Algo::Cls, &steps)?;
    }

    #[test]
    fn aws_matches_reference(steps in prop::collection::vec(step(), 1..60)) {
        check(Algo::Aws, &steps)?;
    }

    #[test]
    fn dws_matches_reference(steps in prop::collection::vec(step(), 1..60)) {
        check(Algo::Dws, &steps)?;
    }

    #[test]
    fn gos_matches_reference(steps in prop::collection::vec(step(), 1..60)) {
        check(Algo::Gos, &steps)?;
    }
}
