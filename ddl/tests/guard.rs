//! Random tenant SQL through the guard (`ddl::guard::schema`): statements built from a
//! grammar of `CREATE TABLE`/`CREATE INDEX`/`ALTER TABLE … ADD COLUMN` mixed with
//! hostile pieces (other statements, including every other `ALTER TABLE`,
//! subqueries, file and extension functions, names that hold quotes, semicolons and
//! comment markers, comments between any two tokens, every quoting style). Whatever is
//! accepted is only DDL re-emitted from the tree: it parses back to the same tree, and
//! SQLite, running it under an authorizer that records every action, does nothing but
//! create or alter tables, create indexes and call allow-listed functions.

use std::sync::{Arc, Mutex};

use cloudsync_ddl::{guard, parse};
use proptest::prelude::*;
use rusqlite::hooks::{AuthContext, Authorization};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,6}".prop_map(|s| s),
        Just("t\"; ATTACH 'x' AS y; --".to_string()),
        Just("a]b".to_string()),
        Just("it's".to_string()),
        Just("/* x */".to_string()),
        Just("sqlite_master".to_string()),
        Just("x`y".to_string()),
    ]
}

/// A name in one of SQLite's quoting styles (or bare when it can be).
fn quoted(n: String, style: u8) -> String {
    let bare = n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !n.is_empty();
    match style % 4 {
        0 if bare => n,
        1 if !n.contains(']') => format!("[{n}]"),
        2 => format!("`{}`", n.replace('`', "``")),
        _ => format!("\"{}\"", n.replace('"', "\"\"")),
    }
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just("1".to_string()),
        Just("'x'".to_string()),
        Just("NULL".to_string()),
        Just("X'00'".to_string()),
        Just("CURRENT_TIMESTAMP".to_string()),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} + {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            inner.clone().prop_map(|a| format!("lower({a})")),
            inner.clone().prop_map(|a| format!("abs({a})")),
            inner.clone().prop_map(|a| format!("load_extension({a})")),
            inner.clone().prop_map(|a| format!("readfile({a})")),
            inner.clone().prop_map(|a| format!("cloudsync_payload_save({a}, 0)")),
            inner.clone().prop_map(|a| format!("(SELECT {a} FROM sqlite_master)")),
            inner.clone().prop_map(|a| format!("EXISTS (SELECT {a})")),
            inner.clone().prop_map(|a| format!("{a} IN (1, 2)")),
            inner.clone().prop_map(|a| format!("{a} REGEXP 'x'")),
            inner.clone().prop_map(|a| format!("main.t.{a}")),
            inner.prop_map(|a| format!("CAST({a} AS TEXT)")),
        ]
    })
}

fn column() -> impl Strategy<Value = String> {
    (
        name(),
        any::<u8>(),
        prop::sample::select(vec!["", "TEXT", "INTEGER", "REAL", "BLOB", "DECIMAL(10,2)", "ANY"]),
        prop::collection::vec(
            prop_oneof![
                Just("NOT NULL".to_string()),
                Just("PRIMARY KEY".to_string()),
                Just("UNIQUE ON CONFLICT REPLACE".to_string()),
                expr().prop_map(|e| format!("CHECK ({e})")),
                expr().prop_map(|e| format!("DEFAULT ({e})")),
                Just("DEFAULT -1".to_string()),
                Just("DEFAULT 'x'".to_string()),
                Just("COLLATE NOCASE".to_string()),
                Just("COLLATE evil".to_string()),
                expr().prop_map(|e| format!("AS ({e}) STORED")),
                Just("REFERENCES other (id) ON DELETE CASCADE".to_string()),
            ],
            0..3,
        ),
    )
        .prop_map(|(n, style, ty, constraints)| format!("{} {ty} {}", quoted(n, style), constraints.join(" ")))
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (name(), any::<u8>(), prop::collection::vec(column(), 1..4), any::<bool>()).prop_map(|(n, s, cols, strict)| {
            format!("CREATE TABLE {} ({}){}", quoted(n, s), cols.join(", "), if strict { " STRICT" } else { "" })
        }),
        2 => (name(), name(), any::<u8>(), expr(), any::<bool>()).prop_map(|(i, t, s, e, partial)| {
            format!(
                "CREATE INDEX {} ON {} (a, ({e})){}",
                quoted(i, s),
                quoted(t, s.wrapping_add(1)),
                if partial { format!(" WHERE {e}") } else { String::new() }
            )
        }),
        1 => (name(), any::<u8>(), column(), any::<bool>()).prop_map(|(t, s, c, word)| {
            format!("ALTER TABLE {} ADD {}{c}", quoted(t, s), if word { "COLUMN " } else { "" })
        }),
        1 => prop::sample::select(vec![
            "ATTACH DATABASE 'x.db' AS x",
            "ALTER TABLE other RENAME TO x",
            "ALTER TABLE other DROP COLUMN id",
            "ALTER TABLE other RENAME COLUMN id TO x",
            "PRAGMA writable_schema = ON",
            "VACUUM INTO 'x.db'",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; END",
            "CREATE TABLE c AS SELECT * FROM sqlite_master",
            "DROP TABLE t",
            "INSERT INTO t VALUES (1)",
            "SELECT load_extension('x')",
            "CREATE VIRTUAL TABLE f USING fts5(a)",
            "CREATE TEMP TABLE tmp (a)",
        ]).prop_map(str::to_string),
    ]
}

/// Comments and line breaks between tokens, as an attacker would place them.
fn garnish(sql: String, seed: u64) -> String {
    let mut out = String::new();
    let mut n = seed | 1;
    for word in sql.split(' ') {
        n ^= n << 13;
        n ^= n >> 7;
        n ^= n << 17;
        let sep = match n % 5 {
            0 => " /* CREATE TABLE ; ATTACH */ ",
            1 => " -- ; DROP TABLE t\n",
            2 => "\n\t",
            _ => " ",
        };
        out.push_str(word);
        out.push_str(sep);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn only_re_emitted_ddl_ever_runs(stmts in prop::collection::vec(statement(), 1..4), seed in any::<u64>()) {
        let sql = garnish(stmts.join("; "), seed);
        let Ok(emitted) = guard::schema(&sql) else { return Ok(()) };
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE other (id TEXT PRIMARY KEY)").unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = Arc::clone(&seen);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            log.lock().unwrap().push(format!("{:?}", ctx.action));
            Authorization::Allow
        })).unwrap();
        // Reading the tables the statements themselves create, alter or index is
        // SQLite's own bookkeeping; any other read would be a subquery.
        let own: Vec<String> = emitted
            .iter()
            .map(|e| match &e.statement {
                cloudsync_ddl::Statement::Table(t) => t.name.clone(),
                cloudsync_ddl::Statement::Index(i) => i.table.clone(),
                cloudsync_ddl::Statement::AddColumn { table, .. } => table.clone(),
            })
            .collect();
        for e in &emitted {
            // The emitted SQL is one statement of the same shape, nothing more: parsing
            // and emitting it again gives it back.
            let again = parse(&e.sql).unwrap();
            prop_assert_eq!(again.len(), 1);
            prop_assert_eq!(guard::emit(&again[0]), e.sql.clone());
            // It may fail (an index on a table that does not exist), but never do
            // anything but create or alter.
            seen.lock().unwrap().clear();
            let _ = conn.execute(&e.sql, []);
            // SQLite checks the rows of a table it adds a column to (a STRICT table, a
            // CHECK or NOT NULL) with its own query of `pragma_quick_check`, and reads
            // its own copy of the table's definition (`sqlite_altertab_<table>`).
            let alter = matches!(e.statement, cloudsync_ddl::Statement::AddColumn { .. });
            for action in seen.lock().unwrap().iter() {
                let reads_own = own.iter().any(|t| action.starts_with(&format!("Read {{ table_name: {t:?}")));
                let checks_rows = alter
                    && (action == "Select"
                        || action.starts_with("Pragma { pragma_name: \"quick_check\"")
                        || action.starts_with("Read { table_name: \"pragma_quick_check\"")
                        || own.iter().any(|t| {
                            action.starts_with(&format!("Read {{ table_name: {:?}", format!("sqlite_altertab_{t}")))
                        }));
                let ok = reads_own || checks_rows || ["CreateTable", "CreateIndex", "AlterTable", "Insert { table_name: \"sqlite_master\"", "Update { table_name: \"sqlite_master\"",
                    "Read { table_name: \"sqlite_master\"", "Reindex", "Transaction",
                    "Function { function_name: \"printf\" }", "Function { function_name: \"substr\" }"]
                    .iter()
                    .any(|p| action.starts_with(p))
                    || action.starts_with("Function { function_name: \"") && {
                        let f = action.trim_start_matches("Function { function_name: \"").trim_end_matches("\" }");
                        guard::FUNCTIONS.contains(&f.to_ascii_lowercase().as_str())
                    };
                prop_assert!(ok, "{} ran {}", sql, action);
            }
        }
    }
}
