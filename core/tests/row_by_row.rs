//! Applying a payload row by row (what a receiver does once a row of it is refused):
//! rows whose parent comes later in the payload are tried again once it applied, a
//! row refused for good does not stop the others, and a hostile chain costs a bounded
//! number of passes.

use std::collections::{BTreeMap, BTreeSet};

use cloudsync_core::engine::{apply_row_by_row, RowAttempt, ROW_PASSES};
use cloudsync_core::memory::MemReplica;
use cloudsync_core::{Algo, Changeset, Cursor, SiteId, Value};

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The key of the single row of `row`, as the payload encodes it.
fn key_of(row: &Changeset) -> Vec<u8> {
    assert_eq!(row.rows.len(), 1);
    row.rows[0].pk.clone()
}

fn encoded(s: &str) -> Vec<u8> {
    cloudsync_core::value::encode_key(&[text(s)])
}

/// Runs `apply_row_by_row` with a receiver whose only rule is "a row's parent (from
/// `parents`) must exist", and which refuses for good the keys in `bad`.
fn run(cs: &Changeset, parents: &BTreeMap<Vec<u8>, Vec<u8>>, bad: &BTreeSet<Vec<u8>>) -> (u64, Vec<Vec<u8>>, usize) {
    let mut present: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut attempts = 0;
    let (applied, refused) = apply_row_by_row(cs, |row| -> Result<RowAttempt<&'static str>, ()> {
        attempts += 1;
        let key = key_of(row);
        if bad.contains(&key) {
            return Ok(RowAttempt::Refused { refusal: "check", retry: false });
        }
        if parents.get(&key).is_some_and(|p| !present.contains(p)) {
            return Ok(RowAttempt::Refused { refusal: "foreign key", retry: true });
        }
        present.insert(key);
        Ok(RowAttempt::Applied(1))
    })
    .unwrap();
    (applied, refused.iter().map(|(row, _)| key_of(row)).collect(), attempts)
}

#[test]
fn children_before_their_parents_apply_on_a_later_pass() {
    let mut a = MemReplica::new(SiteId([1; 16]));
    a.create_table("items", Algo::Cls, &["list"]);
    a.create_table("lists", Algo::Cls, &["name"]);
    // The items are written (and listed) before the list they belong to.
    a.insert("items", text("i1"), vec![text("l1")]).unwrap();
    a.insert("items", text("i2"), vec![text("gone")]).unwrap();
    a.insert("items", text("i3"), vec![text("l1")]).unwrap();
    a.insert("lists", text("l1"), vec![text("groceries")]).unwrap();
    a.insert("lists", text("bad"), vec![text("x")]).unwrap();
    let cs = a.changes_since(Cursor::ZERO);
    let parents = BTreeMap::from([
        (encoded("i1"), encoded("l1")),
        (encoded("i2"), encoded("gone")),
        (encoded("i3"), encoded("l1")),
    ]);
    let bad = BTreeSet::from([encoded("bad")]);
    let (applied, refused, attempts) = run(&cs, &parents, &bad);
    assert_eq!(applied, 3, "i1, i3 and l1");
    // Refused for good: the item whose list is nowhere, and the bad row; in payload order.
    assert_eq!(refused, vec![encoded("i2"), encoded("bad")]);
    // Pass 1 tries all five, pass 2 the three items, pass 3 the one still waiting (and
    // stops: nothing applied).
    assert_eq!(attempts, 5 + 3 + 1);
}

#[test]
fn a_reversed_chain_costs_at_most_the_bounded_passes() {
    let mut a = MemReplica::new(SiteId([1; 16]));
    a.create_table("nodes", Algo::Cls, &["parent"]);
    let n = 20;
    // node k's parent is node k+1: the payload lists every child before its parent.
    let mut parents = BTreeMap::new();
    for k in 0..n {
        a.insert("nodes", text(&format!("n{k:02}")), vec![text(&format!("n{:02}", k + 1))]).unwrap();
        if k + 1 < n {
            parents.insert(encoded(&format!("n{k:02}")), encoded(&format!("n{:02}", k + 1)));
        }
    }
    let cs = a.changes_since(Cursor::ZERO);
    let (applied, refused, attempts) = run(&cs, &parents, &BTreeSet::new());
    // One more link applies each pass; the rest are refused, not dropped.
    assert_eq!(applied, ROW_PASSES as u64);
    assert_eq!(refused.len(), n - ROW_PASSES);
    assert!(attempts <= n * ROW_PASSES, "{attempts}");
}
