//! SQL-level behaviour of the extension, through rusqlite with a bundled SQLite.
//!
//! Merging between replicas: convergence, conflicts by column, version, value and site,
//! deletes and resurrection, delivery in any order, keys of every shape, values of
//! every kind, many writers on one row.

mod common;
use common::*;
use rusqlite::types::Value;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn two_replicas_converge() {
    let a = db_with_t("cls");
    let b = db_with_t("cls");
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'), ('y', 2, 'two')").unwrap();
    assert_eq!(sync(&a, &b), 4);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    b.execute_batch("UPDATE t SET a = 10 WHERE id = 'x'; DELETE FROM t WHERE id = 'y'").unwrap();
    sync(&b, &a);
    assert_eq!(rows(&a, "t"), vec![vec![Value::Text("x".into()), Value::Integer(10), Value::Text("one".into())]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    // Re-applying is harmless.
    assert_eq!(sync(&b, &a), 0);
}

#[test]
fn concurrent_edits_to_different_columns_both_survive() {
    let (a, b, c) = (db_with_t("cls"), db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b, &c]);
    b.execute_batch("UPDATE t SET a = 1 WHERE id = 'x'").unwrap();
    c.execute_batch("UPDATE t SET b = 'two' WHERE id = 'x'").unwrap();
    settle(&[&a, &b, &c]);
    for db in [&a, &b, &c] {
        assert_eq!(rows(db, "t"), vec![vec![text("x"), Value::Integer(1), text("two")]]);
    }
}

#[test]
fn same_column_conflict_resolves_by_version_then_value_then_site() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b]);
    // Higher version wins: b edits twice.
    a.execute_batch("UPDATE t SET b = 'from a'").unwrap();
    b.execute_batch("UPDATE t SET b = 'from b1'; UPDATE t SET b = 'from b2'").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t")[0][2], text("from b2"));
    // Same version: the larger value wins, on both sides, whatever the order.
    a.execute_batch("UPDATE t SET a = 5").unwrap();
    b.execute_batch("UPDATE t SET a = 7").unwrap();
    settle(&[&b, &a]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    assert_eq!(rows(&a, "t")[0][1], Value::Integer(7));
}

#[test]
fn delete_beats_concurrent_update_and_reinsert_resurrects() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 0, 'zero')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE t SET a = 1").unwrap();
    b.execute_batch("DELETE FROM t").unwrap();
    settle(&[&a, &b]);
    assert!(rows(&a, "t").is_empty() && rows(&b, "t").is_empty());
    // A delayed copy of the update arrives again: still deleted.
    b.execute_batch("INSERT INTO t VALUES ('x', 9, 'again')").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t"), vec![vec![text("x"), Value::Integer(9), text("again")]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
    let cl: i64 = one(&a, "SELECT max(cl) FROM cloudsync_changes");
    assert_eq!(cl, 3, "insert, delete, re-insert: causal length 3");
}

#[test]
fn out_of_order_and_duplicate_delivery() {
    let (a, b) = (db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    let p1 = payload(&a, 0).unwrap();
    a.execute_batch("UPDATE t SET a = 2").unwrap();
    let v: i64 = one(&a, "SELECT cloudsync_db_version()");
    let p2 = payload(&a, v - 1).unwrap();
    a.execute_batch("DELETE FROM t").unwrap();
    let p3 = payload(&a, v).unwrap();
    // Delete first, then the older changes, twice each.
    for p in [&p3, &p2, &p1, &p1, &p3, &p2] {
        apply(&b, p).unwrap();
    }
    assert!(rows(&b, "t").is_empty());
    a.execute_batch("INSERT INTO t VALUES ('x', 3, 'three')").unwrap();
    apply(&b, &payload(&a, 0).unwrap()).unwrap();
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn composite_keys_and_key_updates() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE m (org TEXT NOT NULL, n INTEGER NOT NULL, v TEXT, PRIMARY KEY (org, n))")
            .unwrap();
        c.query_row("SELECT cloudsync_init('m')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO m VALUES ('o', 1, 'one'), ('o', 2, 'two'), ('p', 1, 'p1')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE m SET n = 3 WHERE org = 'o' AND n = 1").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&b, "m"), rows(&a, "m"));
    assert_eq!(rows(&b, "m").len(), 3);
    let n: i64 = one(&b, "SELECT count(*) FROM m WHERE org = 'o' AND n = 3 AND v = 'one'");
    assert_eq!(n, 1);
}

#[test]
fn values_of_every_kind_roundtrip_exactly() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE v (id TEXT PRIMARY KEY NOT NULL, x ANY, y BLOB)").unwrap();
        c.query_row("SELECT cloudsync_init('v')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    let big = "é".repeat(600_000);
    a.execute("INSERT INTO v VALUES ('null', NULL, NULL)", []).unwrap();
    a.execute("INSERT INTO v VALUES ('min', ?1, ?2)", rusqlite::params![i64::MIN, i64::MAX]).unwrap();
    a.execute("INSERT INTO v VALUES ('neg0', ?1, ?2)", rusqlite::params![-0.0f64, f64::INFINITY]).unwrap();
    a.execute("INSERT INTO v VALUES ('nan', ?1, 1.5)", rusqlite::params![f64::NAN]).unwrap();
    a.execute("INSERT INTO v VALUES ('blob', ?1, x'')", rusqlite::params![vec![0u8, 255, 1, 2]]).unwrap();
    a.execute("INSERT INTO v VALUES ('big', ?1, 'text in a blob column')", [&big]).unwrap();
    a.execute("INSERT INTO v VALUES ('int-vs-real', 1, 1.0)", []).unwrap();
    sync(&a, &b);
    let q = "SELECT id, x, typeof(x), y, typeof(y), quote(x) FROM v ORDER BY id";
    let dump = |c: &rusqlite::Connection| -> Vec<Vec<Value>> {
        let mut s = c.prepare(q).unwrap();
        s.query_map([], |r| (0..6).map(|i| r.get(i)).collect()).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(dump(&a), dump(&b));
    let neg0: f64 = one(&b, "SELECT x FROM v WHERE id = 'neg0'");
    assert!(neg0 == 0.0);
}

#[test]
fn key_only_tables() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE tags (post TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (post, tag))").unwrap();
        c.query_row("SELECT cloudsync_init('tags')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO tags VALUES ('p', 'x'), ('p', 'y')").unwrap();
    settle(&[&a, &b]);
    b.execute_batch("DELETE FROM tags WHERE tag = 'x'").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "tags"), vec![vec![text("p"), text("y")]]);
    assert_eq!(rows(&a, "tags"), rows(&b, "tags"));
}

#[test]
fn add_wins_keeps_a_row_updated_during_a_delete() {
    let (a, b) = (db_with_t("aws"), db_with_t("aws"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("UPDATE t SET a = 2").unwrap();
    b.execute_batch("DELETE FROM t").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&b, "t"), vec![vec![text("x"), Value::Integer(2), text("one")]]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn grow_only_refuses_update_and_delete_but_merges() {
    let (a, b) = (db_with_t("gos"), db_with_t("gos"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    assert!(err(&a, "UPDATE t SET a = 2").contains("grow-only"));
    assert!(err(&a, "DELETE FROM t").contains("grow-only"));
    // Concurrent inserts of the same key still converge.
    b.execute_batch("INSERT INTO t VALUES ('x', 2, 'two')").unwrap();
    settle(&[&a, &b]);
    assert_eq!(rows(&a, "t"), rows(&b, "t"));
}

#[test]
fn delete_wins_forbids_reinsert() {
    let (a, b) = (db_with_t("dws"), db_with_t("dws"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one')").unwrap();
    settle(&[&a, &b]);
    a.execute_batch("DELETE FROM t").unwrap();
    assert!(err(&a, "INSERT INTO t VALUES ('x', 2, 'two')").contains("delete-wins"));
    settle(&[&a, &b]);
    assert!(err(&b, "INSERT INTO t VALUES ('x', 2, 'two')").contains("delete-wins"));
    assert!(rows(&b, "t").is_empty());
}

#[test]
fn many_clients_edit_one_composite_key() {
    let setup = || {
        let c = db();
        c.execute_batch("CREATE TABLE m (a TEXT NOT NULL, b INTEGER NOT NULL, v INTEGER, w TEXT, PRIMARY KEY (a, b))")
            .unwrap();
        c.query_row("SELECT cloudsync_init('m')", [], |_| Ok(())).unwrap();
        c
    };
    let clients: Vec<_> = (0..10).map(|_| setup()).collect();
    clients[0].execute_batch("INSERT INTO m VALUES ('k', -5, 0, 'start')").unwrap();
    let refs: Vec<&rusqlite::Connection> = clients.iter().collect();
    settle(&refs);
    for (i, c) in clients.iter().enumerate() {
        c.execute("UPDATE m SET v = ?1, w = 'client ' || ?1", [i64::try_from(i).unwrap()]).unwrap();
    }
    settle(&refs);
    let first = rows(&clients[0], "m");
    for c in &clients {
        assert_eq!(rows(c, "m"), first);
    }
    // Same version everywhere: the largest value wins.
    assert_eq!(first[0][2], Value::Integer(9));
}

#[test]
fn many_columns_and_large_values() {
    let cols: Vec<String> = (0..600).map(|i| format!("c{i} TEXT")).collect();
    let setup = || {
        let c = db();
        c.execute_batch(&format!("CREATE TABLE wide (id TEXT PRIMARY KEY NOT NULL, big BLOB, {})", cols.join(", ")))
            .unwrap();
        c.query_row("SELECT cloudsync_init('wide')", [], |_| Ok(())).unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    let sets: Vec<String> = (0..600).map(|i| format!("c{i} = 'v{i}'")).collect();
    a.execute_batch("INSERT INTO wide (id) VALUES ('x')").unwrap();
    a.execute_batch(&format!("UPDATE wide SET {}", sets.join(", "))).unwrap();
    // 10 MB of incompressible bytes in one cell: several frames' worth in one row.
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect();
    a.execute("UPDATE wide SET big = ?1", [&big]).unwrap();
    a.execute_batch("INSERT INTO wide (id, c0) VALUES ('y', 'second row')").unwrap();
    sync(&a, &b);
    assert_eq!(rows(&a, "wide"), rows(&b, "wide"));
    let got: Vec<u8> = one(&b, "SELECT big FROM wide WHERE id = 'x'");
    assert_eq!(got, big);
}

#[test]
fn user_triggers_fire_once_per_merged_row() {
    let setup = || {
        let c = db_with_t("cls");
        c.execute_batch(
            "CREATE TABLE audit (what TEXT);
             CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO audit VALUES ('ins ' || NEW.id); END;
             CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit VALUES ('upd ' || NEW.id); END;",
        )
        .unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'one'); UPDATE t SET a = 2, b = 'two';").unwrap();
    b.execute_batch("DELETE FROM audit").unwrap();
    sync(&a, &b);
    let log: Vec<String> = {
        let mut s = b.prepare("SELECT what FROM audit").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(log, vec!["ins x".to_string()]);
    // The merge did not re-track its own writes.
    let site_b: Vec<u8> = one(&b, "SELECT cloudsync_siteid()");
    assert_eq!(
        b.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id = ?1", [&site_b], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );
}

#[test]
fn foreign_keys_hold_whatever_the_payload_order() {
    let setup = || {
        let c = db();
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id TEXT PRIMARY KEY NOT NULL, name TEXT);
             CREATE TABLE child (id TEXT PRIMARY KEY NOT NULL, parent_id TEXT REFERENCES parent (id), v TEXT);
             SELECT cloudsync_init('child'); SELECT cloudsync_init('parent');",
        )
        .unwrap();
        c
    };
    let (a, b) = (setup(), setup());
    // The child table comes first in the feed (written first after both exist).
    a.execute_batch("BEGIN; INSERT INTO parent VALUES ('p', 'P'); INSERT INTO child VALUES ('c', 'p', 'v'); COMMIT;")
        .unwrap();
    let p = a
        .query_row(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
             FROM (SELECT * FROM cloudsync_changes ORDER BY tbl = 'parent')",
            [],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .unwrap();
    apply(&b, &p).unwrap();
    assert_eq!(rows(&b, "child"), rows(&a, "child"));
    // A payload that would leave a dangling reference is refused whole.
    let c = setup();
    let orphan = {
        let d = setup();
        d.execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO child VALUES ('o', 'missing', 'x');").unwrap();
        payload(&d, 0).unwrap()
    };
    assert!(apply(&c, &orphan).unwrap_err().to_string().contains("FOREIGN KEY"));
    assert!(rows(&c, "child").is_empty());
}

#[test]
fn hub_relays_changes_with_their_origin() {
    let (a, hub, b) = (db_with_t("cls"), db_with_t("cls"), db_with_t("cls"));
    a.execute_batch("INSERT INTO t VALUES ('x', 1, 'from a')").unwrap();
    sync(&a, &hub);
    sync(&hub, &b);
    assert_eq!(rows(&b, "t"), rows(&a, "t"));
    // b sees a's site id on a's changes, not the hub's.
    let site_a: Vec<u8> = one(&a, "SELECT cloudsync_siteid()");
    let from_a: i64 =
        b.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id = ?1", [&site_a], |r| r.get(0)).unwrap();
    assert_eq!(from_a, 2);
    // What a needs from the hub excludes what a wrote itself.
    let for_a: i64 =
        hub.query_row("SELECT count(*) FROM cloudsync_changes WHERE site_id != ?1", [&site_a], |r| r.get(0)).unwrap();
    assert_eq!(for_a, 0);
}
