//! The DDL translator against real-world schemas (`../shared/ddl-corpus`, read in
//! place) and PostgreSQL 15: each schema is created in SQLite, translated, created in a
//! fresh PostgreSQL database; every table with a key is synced on both sides; a row
//! written on a SQLite device reaches PostgreSQL, a row written directly in
//! PostgreSQL reaches the device, and both sides then hold the same rows value by
//! value. Constructs the translator refuses must carry a documented code; the rest of
//! such a schema (without the refused tables) goes through the same test.
//!
//! One file, over 500 lines: one test and the value comparison it needs across the two
//! engines' type systems (each helper exists for that comparison alone).

use std::collections::BTreeMap;
use std::path::PathBuf;

use cloudsync_core::schema::Affinity;
use cloudsync_ddl::{parse, translate, ColumnConstraint, Statement, Table, TableConstraint};
use cloudsync_pg_interop::{sync, Cell, PgReplica, SqliteReplica};

fn corpus_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    [
        std::env::var("CLOUDSYNC_DDL_CORPUS").map(PathBuf::from).ok(),
        Some(repo.join("../shared/ddl-corpus")),
        Some(PathBuf::from("/work/shared/ddl-corpus")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("README.md").exists())
    .expect("the DDL corpus (../shared/ddl-corpus next to the repository, or CLOUDSYNC_DDL_CORPUS)")
}

/// A value a generated row puts in a column, shown to each engine.
#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    fn sqlite(&self) -> String {
        match self {
            Val::Int(i) => i.to_string(),
            Val::Real(r) => format!("{r:?}"),
            Val::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Val::Blob(b) => format!("X'{}'", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        }
    }

    fn pg(&self, pg_type: &str) -> String {
        match (self, pg_type) {
            // A column without a type: its documented JSON forms.
            (Val::Int(i), "cloudsync_any") => format!("'{i}'"),
            (Val::Real(r), "cloudsync_any") => format!("'{r:?}'"),
            (Val::Text(t), "cloudsync_any") => {
                format!("'\"{}\"'", t.replace('\\', "\\\\").replace('"', "\\\"").replace('\'', "''"))
            }
            (Val::Blob(b), "cloudsync_any") => {
                format!("'{{\"blob\": \"{}\"}}'", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }
            (Val::Int(i), "boolean") => (*i != 0).to_string(),
            (Val::Blob(b), _) => format!("'\\x{}'::bytea", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            _ => self.sqlite(),
        }
    }
}

fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value for `column` of `table` in the row numbered `seed`.
fn value_for(table: &Table, col: usize, seed: u8) -> Val {
    let c = &table.columns[col];
    let word = c.decl_type.split(|ch: char| !ch.is_ascii_alphanumeric()).next().unwrap_or("").to_ascii_uppercase();
    match word.as_str() {
        "BOOL" | "BOOLEAN" => return Val::Int(i64::from(seed % 2)),
        "DATE" => return Val::Text(format!("2024-01-0{seed}")),
        "DATETIME" | "TIMESTAMP" => return Val::Text(format!("2024-01-0{seed} 03:04:05")),
        _ => {}
    }
    match Affinity::of(&c.decl_type) {
        Affinity::Integer => Val::Int(i64::from(seed) + 100 * i64::try_from(col).unwrap()),
        Affinity::Real => Val::Real(f64::from(seed) + 0.5),
        Affinity::Blob => Val::Blob(vec![seed, u8::try_from(col % 256).unwrap(), 0xff]),
        Affinity::Numeric if matches!(word.as_str(), "NUMERIC" | "DECIMAL" | "NUMBER" | "MONEY") => {
            Val::Real(f64::from(seed) + 0.25)
        }
        _ => Val::Text(format!("v{seed}-{col} é'\"")),
    }
}

struct Fk {
    columns: Vec<String>,
    table: String,
    target: Vec<String>,
}

fn foreign_keys(t: &Table, all: &[Table]) -> Vec<Fk> {
    let mut out = Vec::new();
    let target_cols = |table: &str, cols: &[String]| {
        if cols.is_empty() {
            all.iter().find(|x| x.name.eq_ignore_ascii_case(table)).map(Table::primary_key).unwrap_or_default()
        } else {
            cols.to_vec()
        }
    };
    for c in &t.columns {
        for k in &c.constraints {
            if let ColumnConstraint::References(fk) = &k.item {
                out.push(Fk {
                    columns: vec![c.name.clone()],
                    table: fk.table.clone(),
                    target: target_cols(&fk.table, &fk.columns),
                });
            }
        }
    }
    for k in &t.constraints {
        if let TableConstraint::ForeignKey { columns, references } = &k.item {
            out.push(Fk {
                columns: columns.clone(),
                table: references.table.clone(),
                target: target_cols(&references.table, &references.columns),
            });
        }
    }
    out
}

/// A generated row: column → value, with foreign keys pointing at the parent's row 1.
fn row_for(
    t: &Table,
    all: &[Table],
    rows: &BTreeMap<String, BTreeMap<String, Val>>,
    seed: u8,
    full: bool,
) -> Option<BTreeMap<String, Val>> {
    let mut row = BTreeMap::new();
    let key = t.primary_key();
    for (i, c) in t.columns.iter().enumerate() {
        if c.constraints.iter().any(|k| matches!(k.item, ColumnConstraint::Generated { .. })) {
            continue;
        }
        let needed = key.iter().any(|k| k.eq_ignore_ascii_case(&c.name))
            || (t.not_null(c) && !c.constraints.iter().any(|k| matches!(k.item, ColumnConstraint::Default(_))));
        if full || needed {
            row.insert(c.name.to_ascii_lowercase(), value_for(t, i, seed));
        }
    }
    for fk in foreign_keys(t, all) {
        let parent = rows.get(&fk.table.to_ascii_lowercase());
        for (col, target) in fk.columns.iter().zip(&fk.target) {
            let lc = col.to_ascii_lowercase();
            match parent.and_then(|p| p.get(&target.to_ascii_lowercase())) {
                Some(v) => {
                    row.insert(lc, v.clone());
                }
                // No parent row: the column must be nullable.
                None if t.not_null(t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(col))?) => return None,
                None => {
                    row.remove(&lc);
                }
            }
        }
    }
    Some(row)
}

fn insert_sql(t: &Table, row: &BTreeMap<String, Val>, render: impl Fn(&str, &Val) -> String) -> String {
    let cols: Vec<&str> =
        t.columns.iter().map(|c| c.name.as_str()).filter(|c| row.contains_key(&c.to_ascii_lowercase())).collect();
    if cols.is_empty() {
        return format!("INSERT INTO {} DEFAULT VALUES", q(&t.name));
    }
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        q(&t.name),
        cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
        cols.iter().map(|c| render(c, &row[&c.to_ascii_lowercase()])).collect::<Vec<_>>().join(", ")
    )
}

/// Rows of a table on one side, sorted (collations differ), with numbers compared as
/// numbers where SQLite's NUMERIC affinity may store either class.
fn sorted(mut rows: Vec<Vec<Cell>>, numeric: &[bool]) -> Vec<Vec<Cell>> {
    for r in &mut rows {
        for (c, is_num) in r.iter_mut().zip(numeric) {
            if *is_num {
                if let Cell::Int(i) = c {
                    *c = Cell::Real(*i as f64);
                }
            }
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rows
}

/// Runs `insert` on the device, foreign keys on (rolled back when `probe`). A table
/// whose reference SQLite itself cannot enforce (its parent table is not declared, or
/// the parent key has no UNIQUE index: every write fails while foreign keys are on)
/// is written with them off, as the application using it must run: the translation
/// leaves such a reference out.
fn lite_insert(lite: &SqliteReplica, insert: &str, probe: bool) -> Result<(), String> {
    let run = || -> Result<(), String> {
        if probe {
            lite.exec("SAVEPOINT probe");
        }
        let r = lite.conn.execute_batch(insert).map_err(|e| e.to_string());
        if probe {
            lite.exec("ROLLBACK TO probe; RELEASE probe");
        }
        r
    };
    match run() {
        Err(e) if e.contains("foreign key mismatch") || e.contains("no such table") => {
            lite.exec("PRAGMA foreign_keys = OFF");
            let r = run();
            lite.exec("PRAGMA foreign_keys = ON");
            r
        }
        other => other,
    }
}

/// A `cloudsync_any` value read as text, as the cell of the class its JSON form holds
/// (the documented forms: a number without a fraction is an integer).
fn any_cell(c: Cell) -> Cell {
    let Cell::Text(json) = c else { return c };
    if let Some(hex) = json.strip_prefix(r#"{"blob": ""#).and_then(|r| r.strip_suffix(r#""}"#)) {
        return Cell::Blob(
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect(),
        );
    }
    if let Some(text) = json.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Cell::Text(text.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    match json.parse::<i64>() {
        Ok(i) if !json.contains('.') => Cell::Int(i),
        _ => Cell::Real(json.parse().unwrap()),
    }
}

#[derive(Default)]
struct Tally {
    files: usize,
    tables: usize,
    synced: usize,
    lite_rows: usize,
    pg_rows: usize,
    notes: usize,
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn every_corpus_schema_translates_creates_and_syncs_both_ways() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "expected the 30 corpus files in {}", dir.display());
    let mut tally = Tally::default();
    for file in files {
        let shown = file.file_name().unwrap().to_string_lossy().to_string();
        let sql = std::fs::read_to_string(&file).unwrap();
        check_file(&shown, &sql, &mut tally);
        tally.files += 1;
    }
    println!(
        "{} files, {} tables created in PostgreSQL, {} synced; rows SQLite→PostgreSQL {}, PostgreSQL→SQLite {}; notes {}",
        tally.files, tally.tables, tally.synced, tally.lite_rows, tally.pg_rows, tally.notes
    );
    // The corpus is mostly translatable: most tables must make it through.
    assert!(tally.synced >= 300, "only {} tables synced", tally.synced);
}

fn check_file(shown: &str, sql: &str, tally: &mut Tally) {
    let mut lite = SqliteReplica::new();
    lite.exec(sql);
    // Every schema translates as it is: nothing refused, nothing edited.
    let source = sql.to_string();
    let translation = match translate(&source) {
        Ok(t) => t,
        Err(e) => panic!("{shown}: {e}"),
    };
    tally.notes += translation.notes.len();
    let tables: Vec<Table> = parse(&source)
        .unwrap()
        .into_iter()
        .filter_map(|s| match s {
            Statement::Table(t) => Some(t),
            Statement::Index(_) | Statement::AddColumn { .. } => None,
        })
        .collect();

    let mut pg = PgReplica::new();
    for stmt in &translation.statements {
        if let Err(e) = pg.client.batch_execute(stmt) {
            panic!("{shown}: PostgreSQL refused\n{stmt}\n{}", cloudsync_pg_interop::describe(&e));
        }
    }
    tally.tables += translation.tables.len();
    let synced: Vec<&Table> = translation
        .tables
        .iter()
        .filter(|t| t.unsynced.is_none())
        .filter_map(|tt| tables.iter().find(|t| t.name == tt.name))
        .collect();
    for t in &synced {
        // Flags 3: integer keys (devices assign them) and NOT NULL columns without DEFAULT.
        let name = t.name.replace('\'', "''");
        let on_pg = pg
            .client
            .batch_execute(&format!("SELECT cloudsync_init(quote_ident('{name}'), 'cls', 3)"))
            .map_err(|e| cloudsync_pg_interop::describe(&e));
        let on_lite =
            lite.conn.execute_batch(&format!("SELECT cloudsync_init('{name}', 'cls', 3)")).map_err(|e| e.to_string());
        assert_eq!(
            on_pg.is_ok(),
            on_lite.is_ok(),
            "{shown}: {}: init PostgreSQL {on_pg:?}, SQLite {on_lite:?}",
            t.name
        );
        on_pg.unwrap_or_else(|e| panic!("{shown}: {}: {e}", t.name));
    }
    tally.synced += synced.len();

    // Row 1 on the device (foreign keys enforced, parents first), synced to PostgreSQL.
    lite.exec("PRAGMA foreign_keys = ON");
    let mut written: BTreeMap<String, BTreeMap<String, Val>> = BTreeMap::new();
    for _pass in 0..synced.len() {
        for t in &synced {
            if written.contains_key(&t.name.to_ascii_lowercase()) {
                continue;
            }
            for full in [true, false] {
                let Some(row) = row_for(t, &tables, &written, 1, full) else { continue };
                if lite_insert(&lite, &insert_sql(t, &row, |_, v| v.sqlite()), false).is_ok() {
                    written.insert(t.name.to_ascii_lowercase(), row);
                    break;
                }
            }
        }
    }
    lite.exec("PRAGMA foreign_keys = OFF");
    tally.lite_rows += written.len();
    sync(&mut lite, &mut pg);

    // Row 2 written directly in PostgreSQL, synced to the device.
    let pg_types: BTreeMap<(String, String), String> = pg
        .rows(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .into_iter()
        .map(|r| match (&r[0], &r[1], &r[2]) {
            (Cell::Text(t), Cell::Text(c), Cell::Text(ty)) => ((t.clone(), c.clone()), ty.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    // Row 2 written directly in PostgreSQL; SQLite (foreign keys on) must accept or
    // refuse the same row, checked in a transaction rolled back.
    let mut from_pg = 0;
    lite.exec("PRAGMA foreign_keys = ON");
    for t in &synced {
        for full in [true, false] {
            let Some(row) = row_for(t, &tables, &written, 2, full) else { continue };
            let render =
                |c: &str, v: &Val| v.pg(pg_types.get(&(t.name.clone(), c.to_string())).map_or("", String::as_str));
            let on_pg =
                pg.client.batch_execute(&insert_sql(t, &row, render)).map_err(|e| cloudsync_pg_interop::describe(&e));
            let on_lite = lite_insert(&lite, &insert_sql(t, &row, |_, v| v.sqlite()), true);
            assert_eq!(
                on_pg.is_ok(),
                on_lite.is_ok(),
                "{shown}: {}: the same row in PostgreSQL: {on_pg:?}, in SQLite: {on_lite:?}",
                t.name
            );
            if on_pg.is_ok() {
                from_pg += 1;
                break;
            }
        }
    }
    lite.exec("PRAGMA foreign_keys = OFF");
    tally.pg_rows += from_pg;
    sync(&mut pg, &mut lite);

    // Both sides hold the same rows, value by value.
    for t in &synced {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        let ty = |c: &str| pg_types.get(&(t.name.clone(), c.to_string())).cloned().unwrap_or_default();
        let numeric: Vec<bool> = cols.iter().map(|c| ty(c) == "numeric").collect();
        let lite_sql =
            format!("SELECT {} FROM {}", cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "), q(&t.name));
        let pg_sql = format!(
            "SELECT {} FROM {}",
            cols.iter()
                .map(|c| match ty(c).as_str() {
                    "numeric" => format!("{}::float8", q(c)),
                    "cloudsync_any" => format!("{}::text", q(c)),
                    _ => q(c),
                })
                .collect::<Vec<_>>()
                .join(", "),
            q(&t.name)
        );
        let any: Vec<bool> = cols.iter().map(|c| ty(c) == "cloudsync_any").collect();
        let a = sorted(lite.rows(&lite_sql), &numeric);
        let pg_rows = pg
            .rows(&pg_sql)
            .into_iter()
            .map(|r| r.into_iter().zip(&any).map(|(c, is_any)| if *is_any { any_cell(c) } else { c }).collect())
            .collect();
        let b = sorted(pg_rows, &numeric);
        assert_eq!(a, b, "{shown}: table {} differs (SQLite left, PostgreSQL right)", t.name);
    }
}

/// Schemas of our own, each with writes that SQLite and PostgreSQL must accept or
/// refuse alike (literals are quoted so that both engines read them the same way).
const OWN_CASES: &[(&str, &[&str])] = &[
    (
        r#"CREATE TABLE "order" ("user" TEXT PRIMARY KEY NOT NULL, "group" INTEGER, "select" TEXT, [Order Details] TEXT,
             "we""ird" REAL, `to` BLOB);"#,
        &[r#"INSERT INTO "order" VALUES ('u1', '7', 'x', 'y', '1.5', NULL)"#],
    ),
    (
        "CREATE TABLE people (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL COLLATE NOCASE UNIQUE,
             active BOOLEAN NOT NULL DEFAULT 1 CHECK (active IN (0, 1)), age INTEGER CHECK (age >= 0 AND age == abs(age)),
             code TEXT CHECK (code LIKE 'a%'), nick TEXT CHECK (nick IS NOT 'root'),
             shout TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL);",
        &[
            "INSERT INTO people (id, name, age, code) VALUES ('1', 'Ann', '30', 'abc')",
            // NOCASE: the same name in other case is a duplicate in both engines.
            "INSERT INTO people (id, name) VALUES ('2', 'ANN')",
            "INSERT INTO people (id, name, active) VALUES ('3', 'Bob', '0')",
            "INSERT INTO people (id, name, active) VALUES ('4', 'Cy', '2')",
            "INSERT INTO people (id, name, age) VALUES ('5', 'Di', '-1')",
            // SQLite's LIKE ignores case: so does the translation.
            "INSERT INTO people (id, name, code) VALUES ('6', 'Ed', 'ABC')",
            "INSERT INTO people (id, name, code) VALUES ('7', 'Flo', 'xyz')",
            "INSERT INTO people (id, name, nick) VALUES ('8', 'Gus', 'root')",
            "INSERT INTO people (id, name, nick) VALUES ('9', 'Hal', NULL)",
        ],
    ),
    (
        "CREATE TABLE tasks (id TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT 0,
             title TEXT NOT NULL DEFAULT 'untitled', created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
             stamp INTEGER NOT NULL DEFAULT (strftime('%s', 'now')), price DECIMAL(8,2) DEFAULT 0);
         CREATE UNIQUE INDEX one_open_task ON tasks (owner) WHERE done = 0;
         CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, task TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
             body TEXT, UNIQUE (task, body)) WITHOUT ROWID;",
        &[
            "INSERT INTO tasks (id, owner, price) VALUES ('t1', 'ann', '9.99')",
            // The partial unique index: a second open task of the same owner is refused.
            "INSERT INTO tasks (id, owner) VALUES ('t2', 'ann')",
            "INSERT INTO tasks (id, owner, done) VALUES ('t3', 'ann', '1')",
            "INSERT INTO notes (id, task, body) VALUES ('n1', 't1', 'hello')",
            "INSERT INTO notes (id, task, body) VALUES ('n2', 't1', 'hello')",
            "INSERT INTO notes (id, task, body) VALUES ('n3', 'missing', 'x')",
        ],
    ),
    (
        "CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, n INTEGER NOT NULL DEFAULT FALSE) STRICT;",
        &["INSERT INTO counters (id, name) VALUES ('1', 'a')", "INSERT INTO counters (id, name, n) VALUES ('2', 'b', 'x')"],
    ),
];

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn own_cases_accept_and_refuse_alike_and_sync() {
    for (schema, writes) in OWN_CASES {
        let mut lite = SqliteReplica::new();
        lite.exec(schema);
        lite.exec("PRAGMA foreign_keys = ON");
        let translation = translate(schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
        let mut pg = PgReplica::new();
        pg.client
            .batch_execute(&translation.script())
            .unwrap_or_else(|e| panic!("{}: {}", translation.script(), cloudsync_pg_interop::describe(&e)));
        for t in &translation.tables {
            let name = t.name.replace('\'', "''");
            pg.exec(&format!("SELECT cloudsync_init(quote_ident('{name}'), 'cls', 3)"));
            lite.exec(&format!("SELECT cloudsync_init('{name}', 'cls', 3)"));
        }
        let mut accepted = 0;
        for w in *writes {
            let on_pg = pg.client.batch_execute(w).map_err(|e| cloudsync_pg_interop::describe(&e));
            let on_lite = lite.conn.execute_batch(w).map_err(|e| e.to_string());
            assert_eq!(on_pg.is_ok(), on_lite.is_ok(), "{w}: PostgreSQL {on_pg:?}, SQLite {on_lite:?}");
            accepted += usize::from(on_pg.is_ok());
        }
        assert!(accepted > 0, "{schema}: nothing accepted");
        // Both sides wrote the same rows independently: after syncing both ways they
        // hold them identically, value by value.
        lite.exec("PRAGMA foreign_keys = OFF");
        sync(&mut pg, &mut lite);
        sync(&mut lite, &mut pg);
        for t in &translation.tables {
            let names: Vec<String> = lite
                .rows(&format!("SELECT name FROM pragma_table_xinfo('{}')", t.name.replace('\'', "''")))
                .into_iter()
                .map(|r| match &r[0] {
                    Cell::Text(n) => n.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            let lite_cols = names.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
            let pg_cols = names
                .iter()
                .map(|c| if c == "price" { format!("{}::float8", q(c)) } else { q(c) })
                .collect::<Vec<_>>()
                .join(", ");
            let numeric: Vec<bool> = names.iter().map(|c| c == "price").collect();
            let a = sorted(lite.rows(&format!("SELECT {lite_cols} FROM {}", q(&t.name))), &numeric);
            let b = sorted(pg.rows(&format!("SELECT {pg_cols} FROM {}", q(&t.name))), &numeric);
            assert_eq!(a, b, "{}: SQLite left, PostgreSQL right", t.name);
        }
        // Time defaults are spelled as SQLite spells them.
        if schema.contains("CURRENT_TIMESTAMP") {
            let created = pg.one("SELECT created ~ '^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$' AND stamp > 1700000000 FROM tasks WHERE id = 't1'");
            assert_eq!(created, Cell::Int(1));
        }
    }
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn the_sql_function_gives_the_same_script_and_sqlstates() {
    let mut pg = PgReplica::new();
    let schema = OWN_CASES[2].0;
    let script = pg.client.query_one("SELECT cloudsync_translate_ddl($1)", &[&schema]).unwrap().get::<_, String>(0);
    assert_eq!(script, translate(schema).unwrap().script());
    // EXECUTE-ing it creates the tables.
    pg.exec(&format!("DO $do$ BEGIN EXECUTE cloudsync_translate_ddl($s${schema}$s$); END $do$"));
    assert_eq!(pg.one("SELECT count(*)::bigint FROM pg_tables WHERE tablename IN ('tasks', 'notes')"), Cell::Int(2));
    let (code, message) = pg.fails(
        "SELECT cloudsync_translate_ddl('CREATE TABLE t (id TEXT PRIMARY KEY, v CHECK (v > 0), w TEXT COLLATE RTRIM)')",
    );
    assert_eq!(code, "0A000");
    assert!(
        message.contains("[typeless-column] table \"t\", column \"v\"") && message.contains("[collation]"),
        "{message}"
    );
    let (code, _) = pg.fails("SELECT cloudsync_translate_ddl('CREATE VIEW v AS SELECT 1')");
    assert_eq!(code, "42601");
}
