//! Replicas on different schemas: a replica that lacks a table or a column the sender
//! has refuses the changeset whole by default (what a central database must do), or,
//! asked to skip them, merges the rest and names what it skipped; once its schema has
//! them, reading the same changes again brings it level with the sender.

use cloudsync_core::engine::{ApplyError, Incompatible, Unknown};
use cloudsync_core::memory::MemReplica;
use cloudsync_core::{Algo, Cursor, SiteId, Value};

fn site(n: u8) -> SiteId {
    SiteId([n; 16])
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The sender: `notes(title, color)` and `projects(name)`, one row in each, then an
/// update of both of the note's columns.
fn newer() -> MemReplica {
    let mut a = MemReplica::new(site(1));
    a.create_table("notes", Algo::Cls, &["title", "color"]);
    a.create_table("projects", Algo::Cls, &["name"]);
    a.insert("notes", text("n1"), vec![text("first"), text("red")]).unwrap();
    a.insert("projects", text("p1"), vec![text("garden")]).unwrap();
    a.update("notes", text("n1"), "title", text("second")).unwrap();
    a.update("notes", text("n1"), "color", text("blue")).unwrap();
    a
}

#[test]
fn an_older_schema_refuses_by_default_and_skips_when_asked() {
    let a = newer();
    let changes = a.changes_since(Cursor::ZERO);
    let mut b = MemReplica::new(site(2));
    b.create_table("notes", Algo::Cls, &["title"]);

    let refused = b.apply(&changes).unwrap_err();
    assert!(
        matches!(refused, ApplyError::Incompatible(Incompatible::UnknownColumn { .. } | Incompatible::UnknownTable(_))),
        "{refused}"
    );
    assert!(b.rows("notes").is_empty(), "nothing applied");

    let report = b.apply_with(&changes, Unknown::Skip).unwrap();
    assert_eq!(report.unknown.iter().map(String::as_str).collect::<Vec<_>>(), ["notes.color", "projects"]);
    assert!(report.skipped > 0 && report.applied > 0, "{report:?}");
    let rows = b.rows("notes");
    assert_eq!(rows.values().next().unwrap(), &vec![text("second")]);

    // B's schema catches up; the same changes read again bring it level with A.
    b.add_column("notes", "color");
    b.create_table("projects", Algo::Cls, &["name"]);
    let report = b.apply_with(&changes, Unknown::Skip).unwrap();
    assert!(report.unknown.is_empty(), "{report:?}");
    assert_eq!(b.rows("notes"), a.rows("notes"));
    assert_eq!(b.rows("projects"), a.rows("projects"));

    // And what B writes next reaches A whole.
    let mut a = a;
    b.update("notes", text("n1"), "color", text("green")).unwrap();
    a.apply(&b.changes_since(Cursor::ZERO)).unwrap();
    assert_eq!(a.rows("notes"), b.rows("notes"));
}

#[test]
fn what_a_changeset_needs_of_a_schema_is_named_before_anything_is_applied() {
    use std::collections::{BTreeMap, BTreeSet};
    let changes = newer().changes_since(Cursor::ZERO);
    let schema = |tables: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        tables.iter().map(|(t, cs)| (t.to_string(), cs.iter().map(|c| c.to_string()).collect())).collect()
    };
    let names = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
    let old = schema(&[("notes", &["title"])]);
    assert_eq!(names(cloudsync_core::engine::unknown_in(&changes, &old)), ["notes.color", "projects"]);
    // A schema that has them all: nothing.
    let current = schema(&[("notes", &["title", "color"]), ("projects", &["name"])]);
    assert!(cloudsync_core::engine::unknown_in(&changes, &current).is_empty());
}

/// What a replica on an older schema would skip can be left out before it travels: the
/// rest reads the same as skipping on arrival, and nothing is left out of a changeset
/// that fits.
#[test]
fn what_a_replica_lacks_is_left_out_as_it_would_skip_it() {
    use std::collections::{BTreeMap, BTreeSet};
    let a = newer();
    let changes = a.changes_since(Cursor::ZERO);
    let old: BTreeMap<String, BTreeSet<String>> =
        [("notes".to_string(), ["id", "title"].into_iter().map(String::from).collect())].into();
    let (kept, left_out) = cloudsync_core::engine::known_only(&changes, &old).unwrap().unwrap();
    assert_eq!(left_out.into_iter().collect::<Vec<_>>(), ["notes.color", "projects"]);
    assert!(cloudsync_core::engine::unknown_in(&kept, &old).is_empty());
    assert!(kept.change_count() < changes.change_count());

    // Applying what was kept equals applying everything and skipping.
    let mut skipping = MemReplica::new(site(2));
    skipping.create_table("notes", Algo::Cls, &["title"]);
    skipping.apply_with(&changes, Unknown::Skip).unwrap();
    let mut filtered = MemReplica::new(site(3));
    filtered.create_table("notes", Algo::Cls, &["title"]);
    let report = filtered.apply(&kept).unwrap();
    assert!(report.unknown.is_empty(), "{report:?}");
    assert_eq!(filtered.rows("notes"), skipping.rows("notes"));

    // Through a payload, as a download carries it.
    let bytes =
        cloudsync_core::payload::PayloadEncoder::encode(&kept, cloudsync_core::payload::EncodeOptions::default());
    assert_eq!(cloudsync_core::payload::decode(&bytes).unwrap(), kept);

    // A schema that has everything: nothing to leave out.
    let current: BTreeMap<String, BTreeSet<String>> = [
        ("notes".to_string(), ["title", "color"].into_iter().map(String::from).collect()),
        ("projects".to_string(), ["name"].into_iter().map(String::from).collect()),
    ]
    .into();
    assert_eq!(cloudsync_core::engine::known_only(&changes, &current).unwrap(), None);
}
