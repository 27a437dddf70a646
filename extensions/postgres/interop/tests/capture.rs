//! Change capture in PostgreSQL: every way of writing a synced table is tracked
//! (INSERT, UPDATE incl. key changes, DELETE, COPY, TRUNCATE, MERGE, upserts), merges
//! are not re-tracked, user triggers see each merged row once, and a direct writer
//! running during an apply neither deadlocks nor loses its write.

use std::io::Write;

use cloudsync_pg_interop::{sync, Cell, PgReplica, Replica, SqliteReplica};

const PG_TODO: &str = "CREATE TABLE todo (id text PRIMARY KEY, title text, n bigint);
                       SELECT cloudsync_init('todo');";
const LITE_TODO: &str = "CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT, n INTEGER);
                         SELECT cloudsync_init('todo');";
const ROWS: &str = "SELECT id, title, n FROM todo ORDER BY id";

fn pair() -> (PgReplica, SqliteReplica) {
    let mut p = PgReplica::new();
    p.exec(PG_TODO);
    let l = SqliteReplica::new();
    l.exec(LITE_TODO);
    (p, l)
}

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

/// Rows in PostgreSQL (text ordered bytewise, like SQLite).
fn pg_rows(p: &mut PgReplica) -> Vec<Vec<Cell>> {
    p.rows("SELECT id, title, n FROM todo ORDER BY id COLLATE \"C\"")
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn copy_truncate_merge_upsert_and_key_changes_are_tracked() {
    let (mut p, mut l) = pair();
    // COPY.
    let mut w = p.client.copy_in("COPY todo (id, title, n) FROM STDIN").unwrap();
    w.write_all(b"a\tcopied\t1\nb\tcopied\t2\nc\tcopied\t3\n").unwrap();
    w.finish().unwrap();
    sync(&mut p, &mut l);
    assert_eq!(l.rows(ROWS).len(), 3);
    // A primary-key change: the old key is deleted, the new one inserted.
    p.exec("UPDATE todo SET id = 'a2' WHERE id = 'a'");
    // MERGE (an update and an insert) and INSERT … ON CONFLICT DO UPDATE.
    p.exec(
        "MERGE INTO todo USING (VALUES ('b', 'merged'), ('d', 'merged in')) AS s(id, title) ON todo.id = s.id
         WHEN MATCHED THEN UPDATE SET title = s.title WHEN NOT MATCHED THEN INSERT (id, title) VALUES (s.id, s.title);
         INSERT INTO todo (id, title) VALUES ('c', 'upserted') ON CONFLICT (id) DO UPDATE SET title = excluded.title;",
    );
    sync(&mut p, &mut l);
    assert_eq!(
        l.rows(ROWS),
        vec![
            vec![t("a2"), t("copied"), Cell::Int(1)],
            vec![t("b"), t("merged"), Cell::Int(2)],
            vec![t("c"), t("upserted"), Cell::Int(3)],
            vec![t("d"), t("merged in"), Cell::Null],
        ]
    );
    // One statement changing several keys.
    p.exec("UPDATE todo SET id = id || '-renamed' WHERE id IN ('b', 'c')");
    sync(&mut p, &mut l);
    assert_eq!(l.rows(ROWS), pg_rows(&mut p));
    // TRUNCATE is recorded as the delete of every row.
    p.exec("TRUNCATE todo");
    sync(&mut p, &mut l);
    assert_eq!(l.rows(ROWS), vec![] as Vec<Vec<Cell>>);
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn merges_are_not_tracked_and_user_triggers_see_each_row_once() {
    let (mut p, mut l) = pair();
    p.exec(
        "CREATE TABLE audit (op text, id text);
         CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO audit VALUES (TG_OP, COALESCE(NEW.id, OLD.id)); RETURN NULL; END $$;
         CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON todo FOR EACH ROW EXECUTE FUNCTION audit_row();",
    );
    l.exec("INSERT INTO todo VALUES ('a', 'one', 1), ('b', 'two', 2), ('c', 'three', 3)");
    sync(&mut l, &mut p);
    l.exec("UPDATE todo SET title = 'uno', n = 11 WHERE id = 'a'; DELETE FROM todo WHERE id = 'b'");
    let before = p.db_version();
    sync(&mut l, &mut p);
    assert_eq!(pg_rows(&mut p), l.rows(ROWS));
    // One trigger call per merged row and operation, never two.
    assert_eq!(
        p.rows("SELECT op, id, count(*) FROM audit GROUP BY op, id ORDER BY op, id"),
        vec![
            vec![t("DELETE"), t("b"), Cell::Int(1)],
            vec![t("INSERT"), t("a"), Cell::Int(1)],
            vec![t("INSERT"), t("b"), Cell::Int(1)],
            vec![t("INSERT"), t("c"), Cell::Int(1)],
            vec![t("UPDATE"), t("a"), Cell::Int(1)],
        ]
    );
    // The merged changes are relayed with the device as their origin: nothing was
    // recorded as written by PostgreSQL itself.
    let own: Vec<u8> = p.client.query_one("SELECT cloudsync_siteid()", &[]).unwrap().get(0);
    let device: Vec<u8> = l.conn.query_row("SELECT cloudsync_siteid()", [], |r| r.get(0)).unwrap();
    let origins =
        p.rows(&format!("SELECT DISTINCT encode(site_id, 'hex') FROM cloudsync_changes WHERE db_version > {before}"));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(origins, vec![vec![t(&hex(&device))]]);
    assert_ne!(own, device);
    assert_eq!(p.one("SELECT count(*) FROM cloudsync.t1_log"), Cell::Int(0));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn a_direct_writer_during_an_apply_is_serialised_not_lost() {
    let (mut p, mut l) = pair();
    p.exec("INSERT INTO todo VALUES ('a', 'start', 0), ('b', 'start', 0)");
    sync(&mut p, &mut l);
    l.exec("UPDATE todo SET title = 'from the device' WHERE id = 'a'; UPDATE todo SET n = 7 WHERE id = 'b'");
    let payload = l.payload(0).unwrap();

    // A psql session writes to the table and keeps its transaction open.
    let mut writer = p.connect();
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("UPDATE todo SET n = 5 WHERE id = 'a'").unwrap();

    // The apply waits for it (it needs every committed local write folded first)…
    let name = p.name.clone();
    let apply = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(
            &format!("{}/{name}", cloudsync_pg_interop::server_url().rsplit_once('/').unwrap().0),
            postgres::NoTls,
        )
        .unwrap();
        c.query_one("SELECT cloudsync_payload_apply($1)", &[&payload]).map(|r| r.get::<_, i64>(0))
    });
    let mut waiting = false;
    for _ in 0..200 {
        let n: i64 = p
            .client
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", &[])
            .unwrap()
            .get(0);
        if n > 0 {
            waiting = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(waiting, "the apply should wait for the open local transaction");
    // …and proceeds when the writer commits.
    tx.commit().unwrap();
    let applied = apply.join().unwrap().expect("apply");
    assert!(applied > 0);
    // Both writes survive (different columns of row a), and every replica agrees.
    sync(&mut p, &mut l);
    assert_eq!(
        pg_rows(&mut p),
        vec![vec![t("a"), t("from the device"), Cell::Int(5)], vec![t("b"), t("start"), Cell::Int(7)]]
    );
    assert_eq!(l.rows(ROWS), pg_rows(&mut p));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn an_application_role_with_table_privileges_only_is_tracked() {
    let (mut p, mut l) = pair();
    let role = format!("cs_app_{}", &p.name[p.name.len() - 8..]);
    p.exec(&format!(
        "CREATE ROLE {role} LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON todo TO {role};
         SET ROLE {role};
         INSERT INTO todo VALUES ('a', 'written by the app role', 1);
         UPDATE todo SET n = 2 WHERE id = 'a';
         INSERT INTO todo VALUES ('b', 'gone', 1); DELETE FROM todo WHERE id = 'b';
         RESET ROLE;"
    ));
    sync(&mut p, &mut l);
    assert_eq!(l.rows(ROWS), vec![vec![t("a"), t("written by the app role"), Cell::Int(2)]]);
    // The role has no privilege on the sync metadata itself.
    p.exec(&format!("SET ROLE {role}"));
    let (code, _) = p.fails("SELECT count(*) FROM cloudsync.t1_log");
    assert_eq!(code, "42501");
    p.exec(&format!("RESET ROLE; DROP OWNED BY {role}; DROP ROLE {role};"));
}
