//! SQL scenarios of Postgres Sync against a real PostgreSQL with the extension
//! installed, exchanging payloads with SQLite replicas (SQLite Sync) and with other
//! PostgreSQL databases.

use cloudsync_pg_interop::{sync, Cell, PgReplica, Replica, SqliteReplica};

const NEEDS: &str = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`";

const PG_TODO: &str =
    "CREATE TABLE todo (id text PRIMARY KEY, title text, n bigint, done boolean NOT NULL DEFAULT false);
                       SELECT cloudsync_init('todo');";
const LITE_TODO: &str =
    "CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT, n INTEGER, done INTEGER NOT NULL DEFAULT 0);
                         SELECT cloudsync_init('todo');";
const PG_ROWS: &str = "SELECT id, title, n, done FROM todo ORDER BY id";
const LITE_ROWS: &str = "SELECT id, title, n, done FROM todo ORDER BY id";

fn pg() -> PgReplica {
    let mut p = PgReplica::new();
    p.exec(PG_TODO);
    p
}

fn lite() -> SqliteReplica {
    let l = SqliteReplica::new();
    l.exec(LITE_TODO);
    l
}

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn direct_writes_reach_sqlite_and_back() {
    let _ = NEEDS;
    let mut p = pg();
    let mut l = lite();
    p.exec("INSERT INTO todo (id, title, n) VALUES ('a', 'from psql', 1), ('b', 'two', 2)");
    p.exec("UPDATE todo SET done = true WHERE id = 'b'");
    assert!(sync(&mut p, &mut l) > 0);
    assert_eq!(l.rows(LITE_ROWS), p.rows(PG_ROWS));
    l.exec(
        "UPDATE todo SET title = 'edited on a device' WHERE id = 'a'; DELETE FROM todo WHERE id = 'b';
            INSERT INTO todo (id, title) VALUES ('c', 'new on a device')",
    );
    assert!(sync(&mut l, &mut p) > 0);
    assert_eq!(
        p.rows(PG_ROWS),
        vec![
            vec![t("a"), t("edited on a device"), Cell::Int(1), Cell::Int(0)],
            vec![t("c"), t("new on a device"), Cell::Null, Cell::Int(0)],
        ]
    );
    assert_eq!(l.rows(LITE_ROWS), p.rows(PG_ROWS));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn out_of_order_and_duplicate_delivery() {
    let mut p = pg();
    let mut l = lite();
    l.exec("INSERT INTO todo (id, title, n) VALUES ('a', 'v1', 1)");
    let p1 = l.payload(0).unwrap();
    let v1 = l.db_version();
    l.exec("UPDATE todo SET title = 'v2' WHERE id = 'a'; INSERT INTO todo (id, title) VALUES ('b', 'b1')");
    let p2 = l.payload(v1).unwrap();
    let v2 = l.db_version();
    l.exec("DELETE FROM todo WHERE id = 'b'; UPDATE todo SET n = 3 WHERE id = 'a'");
    let p3 = l.payload(v2).unwrap();
    for payload in [&p3, &p1, &p2, &p2, &p3, &p1] {
        p.apply(payload).unwrap();
    }
    assert_eq!(p.rows(PG_ROWS), l.rows(LITE_ROWS));
    assert_eq!(p.rows(PG_ROWS), vec![vec![t("a"), t("v2"), Cell::Int(3), Cell::Int(0)]]);
    // A duplicate changes nothing and says so.
    assert_eq!(p.apply(&p2).unwrap(), 0);
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn delete_wins_over_a_concurrent_update_under_causal_length() {
    let mut p = pg();
    let mut l = lite();
    p.exec("INSERT INTO todo (id, title) VALUES ('a', 'shared')");
    sync(&mut p, &mut l);
    p.exec("UPDATE todo SET title = 'edited in postgres' WHERE id = 'a'");
    l.exec("DELETE FROM todo WHERE id = 'a'");
    sync(&mut p, &mut l);
    sync(&mut l, &mut p);
    assert_eq!(p.rows(PG_ROWS), vec![] as Vec<Vec<Cell>>);
    assert_eq!(l.rows(LITE_ROWS), p.rows(PG_ROWS));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn resurrection_survives_a_delayed_delete() {
    let mut p = pg();
    let mut l = lite();
    l.exec("INSERT INTO todo (id, title) VALUES ('a', 'first life')");
    let born = l.payload(0).unwrap();
    let v = l.db_version();
    l.exec("DELETE FROM todo WHERE id = 'a'");
    let deleted = l.payload(v).unwrap();
    let v = l.db_version();
    l.exec("INSERT INTO todo (id, title) VALUES ('a', 'second life')");
    let reborn = l.payload(v).unwrap();
    p.apply(&reborn).unwrap();
    p.apply(&born).unwrap();
    p.apply(&deleted).unwrap();
    assert_eq!(p.rows(PG_ROWS), vec![vec![t("a"), t("second life"), Cell::Null, Cell::Int(0)]]);
    assert_eq!(p.rows(PG_ROWS), l.rows(LITE_ROWS));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn concurrent_edits_of_different_columns_both_survive() {
    let mut p = pg();
    let mut l = lite();
    let mut q = PgReplica::new();
    q.exec(PG_TODO);
    p.exec("INSERT INTO todo (id, title, n) VALUES ('a', 'start', 0)");
    sync(&mut p, &mut l);
    sync(&mut p, &mut q);
    p.exec("UPDATE todo SET title = 'title from postgres' WHERE id = 'a'");
    l.exec("UPDATE todo SET n = 42 WHERE id = 'a'");
    q.exec("UPDATE todo SET done = true WHERE id = 'a'");
    for _ in 0..2 {
        sync(&mut p, &mut l);
        sync(&mut l, &mut q);
        sync(&mut q, &mut p);
    }
    let expected = vec![vec![t("a"), t("title from postgres"), Cell::Int(42), Cell::Int(1)]];
    assert_eq!(p.rows(PG_ROWS), expected);
    assert_eq!(q.rows(PG_ROWS), expected);
    assert_eq!(l.rows(LITE_ROWS), expected);
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn composite_and_uuid_keys() {
    let mut p = PgReplica::new();
    let l = SqliteReplica::new();
    let mut l = l;
    p.exec(
        "CREATE TABLE member (org uuid, n int, name text, PRIMARY KEY (org, n));
         SELECT cloudsync_init('member');
         INSERT INTO member VALUES ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 1, 'ada'), ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 2, 'bob');",
    );
    l.exec("CREATE TABLE member (org TEXT NOT NULL, n INTEGER NOT NULL, name TEXT, PRIMARY KEY (org, n)); SELECT cloudsync_init('member');");
    sync(&mut p, &mut l);
    l.exec("UPDATE member SET name = 'bobby' WHERE n = 2; INSERT INTO member VALUES ('0190c3c4-8f2e-7b6a-9a1b-123456789abc', 1, 'eve')");
    sync(&mut l, &mut p);
    let q = "SELECT org::text, n, name FROM member ORDER BY org, n";
    assert_eq!(p.rows(q), l.rows("SELECT org, n, name FROM member ORDER BY org, n"));
    assert_eq!(p.rows(q).len(), 3);
    // A key the uuid column cannot hold is refused with the table, column and value.
    let l2 = SqliteReplica::new();
    let mut l2 = l2;
    l2.exec("CREATE TABLE member (org TEXT NOT NULL, n INTEGER NOT NULL, name TEXT, PRIMARY KEY (org, n)); SELECT cloudsync_init('member');
             INSERT INTO member VALUES ('not-a-uuid', 1, 'x')");
    let err = p.apply(&l2.payload(0).unwrap()).unwrap_err();
    assert!(
        err.starts_with("22P02")
            && err.contains("\"org\"")
            && err.contains("public.member")
            && err.contains("'not-a-uuid'"),
        "{err}"
    );
    assert_eq!(p.rows(q).len(), 3);
}

const PG_LISTS: &str = "CREATE TABLE lists (id text PRIMARY KEY, name text);
    CREATE TABLE items (id text PRIMARY KEY, list text, title text CHECK (title <> 'bad'));
    ALTER TABLE items ADD FOREIGN KEY (list) REFERENCES lists (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
    CREATE TABLE notes (id text PRIMARY KEY, body text);
    SELECT cloudsync_init('lists'); SELECT cloudsync_init('items'); SELECT cloudsync_init('notes');";
const LITE_LISTS: &str = "CREATE TABLE lists (id TEXT PRIMARY KEY NOT NULL, name TEXT);
    CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, list TEXT, title TEXT);
    CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT);
    SELECT cloudsync_init('lists'); SELECT cloudsync_init('items'); SELECT cloudsync_init('notes');";

/// `cloudsync_payload_apply_rows` in a transaction that then commits: (applied,
/// refused rows as `table:sqlstate`).
fn apply_rows(p: &mut PgReplica, payload: &[u8]) -> (i64, Vec<String>) {
    let mut tx = p.client.transaction().unwrap();
    let row = tx
        .query_one(
            "SELECT applied, ARRAY(SELECT (r ->> 'table') || ':' || (r ->> 'sqlstate') FROM jsonb_array_elements(refused) r) \
             FROM cloudsync_payload_apply_rows($1)",
            &[&payload],
        )
        .unwrap_or_else(|e| panic!("apply_rows: {}", cloudsync_pg_interop::describe(&e)));
    tx.commit().unwrap_or_else(|e| panic!("commit: {}", cloudsync_pg_interop::describe(&e)));
    (row.get(0), row.get(1))
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn a_broken_deferred_foreign_key_refuses_its_row_not_the_upload() {
    let mut p = PgReplica::new();
    p.exec(PG_LISTS);
    p.exec("INSERT INTO lists VALUES ('l1', 'groceries'), ('l2', 'chores')");
    let device = SqliteReplica::new();
    device.exec(LITE_LISTS);
    let mut device = device;
    assert!(sync(&mut p, &mut device) > 0);
    let since = device.db_version();

    // Offline, the device adds an item to l1 (which another device deletes meanwhile),
    // items whose list it creates later (listed first in the payload), and a note.
    device.exec(
        "INSERT INTO items VALUES ('orphan', 'l1', 'milk');
         INSERT INTO items VALUES ('early', 'l3', 'before its list');
         INSERT INTO items VALUES ('early2', 'l3', 'also before its list');
         INSERT INTO lists VALUES ('l3', 'new list');
         INSERT INTO notes VALUES ('n1', 'unrelated');
         UPDATE lists SET name = 'chores (renamed)' WHERE id = 'l2';",
    );
    p.exec("DELETE FROM lists WHERE id = 'l1'");
    let payload = device.payload(since).unwrap();
    let (applied, refused) = apply_rows(&mut p, &payload);
    // Only the orphan is refused (23503, at the row, not at COMMIT); the rest applied.
    assert_eq!(refused, ["items:23503"]);
    assert!(applied > 0);
    assert_eq!(
        p.rows("SELECT id, list FROM items ORDER BY id"),
        vec![vec![t("early"), t("l3")], vec![t("early2"), t("l3")]]
    );
    assert_eq!(p.rows("SELECT id FROM lists ORDER BY id"), vec![vec![t("l2")], vec![t("l3")]]);
    assert_eq!(p.rows("SELECT body FROM notes"), vec![vec![t("unrelated")]]);
    assert_eq!(p.one("SELECT name FROM lists WHERE id = 'l2'"), t("chores (renamed)"));

    // A constraint refusing a row sends the whole payload row by row; a child listed
    // before its parent still applies there.
    let since = device.db_version();
    device.exec(
        "INSERT INTO items VALUES ('late', 'l4', 'before its list'); INSERT INTO lists VALUES ('l4', 'four');
         INSERT INTO items VALUES ('refused', 'l4', 'bad');",
    );
    let (_, refused) = apply_rows(&mut p, &device.payload(since).unwrap());
    assert_eq!(refused, ["items:23514"]);
    assert_eq!(p.one("SELECT list FROM items WHERE id = 'late'"), t("l4"));
}
