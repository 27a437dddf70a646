//! Tables and the extension over their life: schema-qualified tables and sync names,
//! odd identifiers, corrupted payloads, algorithms' guards, alters, dropping a synced
//! table, and `DROP EXTENSION` / `CREATE EXTENSION`.

use cloudsync_pg_interop::{sync, Cell, PgReplica, Replica, SqliteReplica};

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn tables_in_several_schemas_map_to_explicit_sync_names() {
    let mut p = PgReplica::new();
    p.exec(
        "CREATE SCHEMA app; CREATE SCHEMA archive;
         CREATE TABLE app.todos (id text PRIMARY KEY, title text);
         CREATE TABLE archive.todos (id text PRIMARY KEY, title text);
         SELECT cloudsync_init('app.todos');",
    );
    // The same bare name in a second schema is never silently merged into the first.
    let (code, msg) = p.fails("SELECT cloudsync_init('archive.todos')");
    assert_eq!(code, "22023");
    assert!(msg.contains("'todos' is already used by table app.todos") && msg.contains("another_name"), "{msg}");
    p.exec("SELECT cloudsync_init('archive.todos', 'cls', 0, 'archived_todos')");
    assert_eq!(
        p.rows("SELECT sync_name, table_name::text FROM cloudsync_tables"),
        vec![vec![t("archived_todos"), t("archive.todos")], vec![t("todos"), t("app.todos")]]
    );
    p.exec("INSERT INTO app.todos VALUES ('a', 'live'); INSERT INTO archive.todos VALUES ('z', 'old')");
    let mut l = SqliteReplica::new();
    l.exec(
        "CREATE TABLE todos (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('todos');
         CREATE TABLE archived_todos (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('archived_todos');",
    );
    sync(&mut p, &mut l);
    assert_eq!(l.rows("SELECT * FROM todos"), vec![vec![t("a"), t("live")]]);
    assert_eq!(l.rows("SELECT * FROM archived_todos"), vec![vec![t("z"), t("old")]]);
    // Renaming or moving a synced table keeps its sync name.
    p.exec("ALTER TABLE app.todos RENAME TO tasks; ALTER TABLE app.tasks SET SCHEMA public;");
    p.exec("INSERT INTO tasks VALUES ('b', 'after the move')");
    sync(&mut p, &mut l);
    assert_eq!(l.rows("SELECT * FROM todos ORDER BY id").len(), 2);
    l.exec("UPDATE todos SET title = 'from the device' WHERE id = 'b'");
    sync(&mut l, &mut p);
    assert_eq!(p.rows("SELECT title FROM public.tasks WHERE id = 'b'"), vec![vec![t("from the device")]]);
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn odd_identifiers_are_quoted_everywhere() {
    let mut p = PgReplica::new();
    p.exec(
        r#"CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."we""ird; DROP TABLE x" ("key col" text PRIMARY KEY, "select" text, "Ünï" bigint);
           SELECT cloudsync_init('"My Schema"."we""ird; DROP TABLE x"', 'cls', 0, 'weird');
           INSERT INTO "My Schema"."we""ird; DROP TABLE x" VALUES ('k', 'reserved word', 1);"#,
    );
    let mut l = SqliteReplica::new();
    l.exec(r#"CREATE TABLE weird ("key col" TEXT PRIMARY KEY NOT NULL, "select" TEXT, "Ünï" INTEGER); SELECT cloudsync_init('weird');"#);
    sync(&mut p, &mut l);
    assert_eq!(l.rows("SELECT * FROM weird"), vec![vec![t("k"), t("reserved word"), Cell::Int(1)]]);
    l.exec(r#"UPDATE weird SET "Ünï" = 2"#);
    sync(&mut l, &mut p);
    assert_eq!(p.one(r#"SELECT "Ünï" FROM "My Schema"."we""ird; DROP TABLE x""#), Cell::Int(2));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn corrupted_payloads_are_refused_whole() {
    let mut p = PgReplica::new();
    p.exec("CREATE TABLE todo (id text PRIMARY KEY, title text); SELECT cloudsync_init('todo');");
    let mut l = SqliteReplica::new();
    l.exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('todo');");
    for i in 0..50 {
        l.exec(&format!("INSERT INTO todo VALUES ('k{i}', 'title {i}')"));
    }
    let good = l.payload(0).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let version = p.db_version();
    for bad in [flipped, good[..good.len() - 3].to_vec(), b"not a payload at all".to_vec(), Vec::new()] {
        let err = p.apply(&bad).unwrap_err();
        assert!(err.starts_with("22P03"), "{err}");
        assert_eq!(p.one("SELECT count(*) FROM todo"), Cell::Int(0));
        assert_eq!(p.db_version(), version);
    }
    // A payload for a table this database does not sync, or with a column it lacks.
    let mut other = SqliteReplica::new();
    other.exec(
        "CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT, extra TEXT); SELECT cloudsync_init('todo');
                CREATE TABLE other (id TEXT PRIMARY KEY NOT NULL); SELECT cloudsync_init('other');
                INSERT INTO todo VALUES ('x', 'y', 'z')",
    );
    let err = p.apply(&other.payload(0).unwrap()).unwrap_err();
    assert!(err.starts_with("42703") && err.contains("extra"), "{err}");
    other.exec("UPDATE todo SET title = 'only known columns'; INSERT INTO other VALUES ('o')");
    let err = p.apply(&other.payload(0).unwrap()).unwrap_err();
    assert!(err.starts_with("42P01") && err.contains("'other'"), "{err}");
    assert_eq!(p.one("SELECT count(*) FROM todo"), Cell::Int(0));
    assert!(p.apply(&good).unwrap() >= 50);
    assert_eq!(p.one("SELECT count(*) FROM todo"), Cell::Int(50));
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn grow_only_and_delete_wins_tables_guard_local_writes() {
    let mut p = PgReplica::new();
    p.exec(
        "CREATE TABLE ledger (id text PRIMARY KEY, amount bigint); SELECT cloudsync_init('ledger', 'gos');
         CREATE TABLE tomb (id text PRIMARY KEY, v text); SELECT cloudsync_init('tomb', 'dws');
         INSERT INTO ledger VALUES ('a', 1); INSERT INTO tomb VALUES ('x', 'first')",
    );
    for sql in ["DELETE FROM ledger", "UPDATE ledger SET amount = 2", "TRUNCATE ledger"] {
        let (code, msg) = p.fails(sql);
        assert_eq!(code, "23000", "{sql}");
        assert!(msg.contains("grow-only"), "{msg}");
    }
    p.exec("DELETE FROM tomb WHERE id = 'x'");
    let (code, msg) = p.fails("INSERT INTO tomb VALUES ('x', 'again')");
    assert_eq!(code, "23000");
    assert!(msg.contains("delete-wins"), "{msg}");
    // Algorithms must agree between replicas.
    let mut l = SqliteReplica::new();
    l.exec(
        "CREATE TABLE ledger (id TEXT PRIMARY KEY NOT NULL, amount INTEGER); SELECT cloudsync_init('ledger', 'cls');
            INSERT INTO ledger VALUES ('b', 2)",
    );
    let err = p.apply(&l.payload(0).unwrap()).unwrap_err();
    assert!(err.contains("algorithm"), "{err}");
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn alters_add_columns_and_older_payloads_still_apply() {
    let mut p = PgReplica::new();
    p.exec("CREATE TABLE todo (id text PRIMARY KEY, title text); SELECT cloudsync_init('todo');");
    let mut old_device = SqliteReplica::new();
    old_device.exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('todo');");
    p.exec(
        "BEGIN; SELECT cloudsync_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due date; SELECT cloudsync_commit_alter('todo'); COMMIT;",
    );
    let mut new_device = SqliteReplica::new();
    new_device.exec(
        "CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT, due TEXT); SELECT cloudsync_init('todo');
         INSERT INTO todo VALUES ('n', 'new schema', '2030-01-01')",
    );
    old_device.exec("INSERT INTO todo VALUES ('o', 'old schema')");
    sync(&mut new_device, &mut p);
    sync(&mut old_device, &mut p);
    assert_eq!(
        p.rows("SELECT id, title, to_char(due, 'YYYY-MM-DD') FROM todo ORDER BY id"),
        vec![vec![t("n"), t("new schema"), t("2030-01-01")], vec![t("o"), t("old schema"), Cell::Null]]
    );
    // A key change is refused, and the alter can be rolled back.
    p.exec("BEGIN; SELECT cloudsync_begin_alter('todo'); ALTER TABLE todo DROP CONSTRAINT todo_pkey; ALTER TABLE todo ADD PRIMARY KEY (id, title);");
    let (code, _) = p.fails("SELECT cloudsync_commit_alter('todo')");
    assert_eq!(code, "0A000");
    p.exec("ROLLBACK");
    p.exec("INSERT INTO todo (id, title) VALUES ('after', 'rollback')");
    sync(&mut p, &mut new_device);
    assert_eq!(new_device.rows("SELECT count(*) FROM todo"), vec![vec![Cell::Int(3)]]);
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn dropped_tables_and_the_extension_itself_clean_up() {
    let mut p = PgReplica::new();
    p.exec(
        "CREATE TABLE todo (id text PRIMARY KEY, title text); SELECT cloudsync_init('todo');
         CREATE TABLE gone (id text PRIMARY KEY); SELECT cloudsync_init('gone');
         INSERT INTO todo VALUES ('a', 'kept'); INSERT INTO gone VALUES ('x');",
    );
    // Dropping a synced table removes its sync metadata with it.
    p.exec("DROP TABLE gone");
    assert_eq!(p.rows("SELECT sync_name FROM cloudsync_tables"), vec![vec![t("todo")]]);
    assert_eq!(
        p.one("SELECT count(*) FROM pg_tables WHERE schemaname = 'cloudsync' AND tablename LIKE 't2_%'"),
        Cell::Int(0)
    );
    let mut l = SqliteReplica::new();
    l.exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('todo');");
    sync(&mut p, &mut l);
    // DROP EXTENSION refuses while tables are synced, and says why.
    let (code, msg) = p.fails("DROP EXTENSION cloudsync");
    assert_eq!(code, "2BP01", "{msg}");
    // With CASCADE the sync metadata goes; the user's table and rows stay.
    p.exec("DROP EXTENSION cloudsync CASCADE");
    assert_eq!(p.one("SELECT count(*) FROM todo"), Cell::Int(1));
    p.exec("INSERT INTO todo VALUES ('b', 'untracked write, no triggers left')");
    assert_eq!(p.one("SELECT count(*) FROM pg_namespace WHERE nspname = 'cloudsync'"), Cell::Int(0));
    // Created again, it starts a new site and tracks the existing rows.
    p.exec("CREATE EXTENSION cloudsync; SELECT cloudsync_init('todo');");
    let mut fresh = SqliteReplica::new();
    fresh.exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT); SELECT cloudsync_init('todo');");
    sync(&mut p, &mut fresh);
    assert_eq!(fresh.rows("SELECT count(*) FROM todo"), vec![vec![Cell::Int(2)]]);
    // ALTER EXTENSION … UPDATE runs (0.1.0 is the only version: nothing to do yet) and
    // the metadata layout is versioned for the first upgrade script.
    p.exec("ALTER EXTENSION cloudsync UPDATE");
    assert_eq!(p.one("SELECT value FROM cloudsync.settings WHERE key = 'layout'"), t("1"));
    assert_eq!(p.one("SELECT extversion FROM pg_extension WHERE extname = 'cloudsync'"), t("0.1.0"));
    // cloudsync_cleanup, then a plain DROP EXTENSION.
    p.exec("SELECT cloudsync_cleanup('todo'); DROP EXTENSION cloudsync;");
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn plain_alter_table_statements_are_adopted() {
    let mut p = PgReplica::new();
    p.exec(
        "CREATE TABLE todo (id text PRIMARY KEY, title text, note text); SELECT cloudsync_init('todo');
            INSERT INTO todo VALUES ('a', 'one', 'x')",
    );
    // What an ORM's migration does: no begin/commit bracket.
    p.exec("ALTER TABLE todo ADD COLUMN due date; ALTER TABLE todo DROP COLUMN note;");
    p.exec("UPDATE todo SET due = '2030-01-01' WHERE id = 'a'; INSERT INTO todo (id, title) VALUES ('b', 'two')");
    let mut l = SqliteReplica::new();
    l.exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title TEXT, due TEXT); SELECT cloudsync_init('todo');");
    sync(&mut p, &mut l);
    assert_eq!(
        l.rows("SELECT id, title, due FROM todo ORDER BY id"),
        vec![vec![t("a"), t("one"), t("2030-01-01")], vec![t("b"), t("two"), Cell::Null]]
    );
    // A rename, then TRUNCATE (whose trigger reads the table by name) still tracks.
    p.exec("ALTER TABLE todo RENAME TO tasks; TRUNCATE tasks;");
    sync(&mut p, &mut l);
    assert_eq!(l.rows("SELECT count(*) FROM todo"), vec![vec![Cell::Int(0)]]);
    // A primary-key change is refused, and the ALTER with it.
    let (code, msg) = p.fails("ALTER TABLE tasks DROP CONSTRAINT todo_pkey");
    assert_eq!(code, "0A000", "{msg}");
    assert_eq!(p.one("SELECT count(*) FROM pg_constraint WHERE conname = 'todo_pkey'"), Cell::Int(1));
}
