//! A schema posted again, wider, against the tables a database has
//! (`ddl::guard::schema_against`): new columns become `ALTER TABLE … ADD COLUMN`, new
//! tables and indexes are created (an index declared again `IF NOT EXISTS`), the same
//! schema again does nothing, and what an alter cannot add without breaking devices is
//! refused with the reason.

use cloudsync_ddl::{guard, Existing, TranslateError};

fn notes() -> Existing {
    Existing::from([("notes".to_string(), vec!["id".to_string(), "title".to_string()])])
}

fn sql_of(sql: &str) -> Vec<(String, Option<String>)> {
    guard::schema_against(sql, &notes()).unwrap().into_iter().map(|e| (e.sql, e.alters)).collect()
}

fn refused(sql: &str) -> Vec<(String, String)> {
    match guard::schema_against(sql, &notes()) {
        Err(TranslateError::Refused(r)) => r.into_iter().map(|r| (r.construct, r.column.unwrap_or_default())).collect(),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn new_columns_tables_and_indexes_are_added_and_the_same_schema_does_nothing() {
    let same = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)";
    assert_eq!(sql_of(same), []);
    let wider = "CREATE TABLE Notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, color TEXT DEFAULT 'white', \
                 n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0));
                 CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL, name TEXT);
                 CREATE INDEX notes_by_title ON notes (title);";
    assert_eq!(
        sql_of(wider),
        [
            (r#"ALTER TABLE "notes" ADD COLUMN "color" TEXT DEFAULT ('white')"#.to_string(), Some("notes".to_string())),
            (
                r#"ALTER TABLE "notes" ADD COLUMN "n" INTEGER NOT NULL DEFAULT (0) CHECK (n >= 0)"#.to_string(),
                Some("notes".to_string())
            ),
            (r#"CREATE TABLE "projects" ("id" TEXT PRIMARY KEY NOT NULL, "name" TEXT)"#.to_string(), None),
            (r#"CREATE INDEX IF NOT EXISTS "notes_by_title" ON "notes" ("title")"#.to_string(), None),
        ]
    );
}

#[test]
fn what_would_break_devices_is_refused_with_the_reason() {
    assert_eq!(
        refused("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL)"),
        [("column removed".into(), "title".into())]
    );
    assert_eq!(
        refused("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, code TEXT UNIQUE, n INT NOT NULL)"),
        [
            ("new key or UNIQUE column".into(), "code".into()),
            ("new NOT NULL column without DEFAULT".into(), "n".into())
        ]
    );
    // What the guard refuses anywhere is refused in an alter too.
    let smuggled =
        refused("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT, x TEXT DEFAULT (load_extension('a')))");
    assert!(!smuggled.is_empty());
}

#[test]
fn alter_table_add_column_is_the_same_as_declaring_the_table_again() {
    assert_eq!(
        sql_of("ALTER TABLE notes ADD COLUMN color TEXT; ALTER TABLE main.notes ADD n INTEGER DEFAULT 0"),
        [
            (r#"ALTER TABLE "notes" ADD COLUMN "color" TEXT"#.to_string(), Some("notes".to_string())),
            (r#"ALTER TABLE "notes" ADD COLUMN "n" INTEGER DEFAULT (0)"#.to_string(), Some("notes".to_string())),
        ]
    );
    // Run twice, a migration adds nothing the second time.
    assert_eq!(sql_of("ALTER TABLE notes ADD COLUMN title TEXT"), []);
    assert_eq!(
        refused("ALTER TABLE notes ADD COLUMN code TEXT UNIQUE"),
        [("new key or UNIQUE column".into(), "code".into())]
    );
    assert!(!refused("ALTER TABLE notes ADD COLUMN x TEXT DEFAULT (readfile('/etc/passwd'))").is_empty());
    // Dropping or renaming is not parsed at all, with the reason.
    for sql in ["ALTER TABLE notes DROP COLUMN title", "ALTER TABLE notes RENAME COLUMN title TO name"] {
        let e = guard::schema_against(sql, &notes()).unwrap_err().to_string();
        assert!(e.contains("only ADD COLUMN"), "{e}");
    }
    // PostgreSQL backends take the same statement.
    let pg = cloudsync_ddl::translate_against("ALTER TABLE notes ADD COLUMN color TEXT", &notes()).unwrap();
    assert_eq!(pg.statements, [r#"ALTER TABLE "notes" ADD COLUMN "color" text"#]);
}
