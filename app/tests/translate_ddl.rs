//! `cloudsync translate-ddl`: the translation on standard output, notes on standard
//! error, refusals as a failing exit with every construct named.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .arg("translate-ddl")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cloudsync");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn translates_from_stdin_and_files_and_refuses_with_names() {
    let schema = "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL DEFAULT '', pinned BOOLEAN DEFAULT 0);\n\
                  CREATE TABLE log (line TEXT);";
    let (ok, out, err) = run(&[], schema);
    assert!(ok, "{err}");
    assert!(out.starts_with("CREATE TABLE \"notes\" (\n    \"id\" bigint,\n    \"body\" text NOT NULL DEFAULT '',\n    \"pinned\" boolean DEFAULT false,\n    PRIMARY KEY (\"id\")\n);\n"), "{out}");
    assert!(
        err.contains("table \"notes\" is keyed by SQLite's rowid") && err.contains("table \"log\" cannot be synced"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.sql");
    std::fs::write(&file, schema).unwrap();
    let (ok, out, _) = run(&[file.to_str().unwrap(), "--json"], "");
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tables"][0]["rowid_key"], true);
    assert_eq!(v["tables"][1]["unsynced"].as_str().map(|s| s.starts_with("no primary key")), Some(true));
    assert_eq!(v["statements"].as_array().unwrap().len(), 2);

    let (ok, out, err) =
        run(&[], "CREATE TABLE t (id TEXT PRIMARY KEY, v CHECK (v > 0), w TEXT UNIQUE ON CONFLICT IGNORE);");
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("2 construct(s) cannot be translated faithfully"), "{err}");
    assert!(
        err.contains("[typeless-column] table \"t\", column \"v\"")
            && err.contains("[on-conflict] table \"t\", column \"w\": UNIQUE ON CONFLICT IGNORE"),
        "{err}"
    );

    // Each names the choice that proceeds without it; passed, the table is created
    // without the construct and a note says what was left out.
    assert!(err.contains(r#"(or create it without this: omit "t.w:on-conflict")"#), "{err}");
    let (ok, out, err) = run(
        &["--omit", "t.v:check", "--omit", "t.w:on-conflict"],
        "CREATE TABLE t (id TEXT PRIMARY KEY, v CHECK (v > 0), w TEXT UNIQUE ON CONFLICT IGNORE);",
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"w\" text UNIQUE") && !out.contains("> 0"), "{out}");
    assert!(err.contains(r#"note: omit "t.v:check": "#) && err.contains("left out, as asked"), "{err}");
    let (ok, _, err) = run(&["--omit", "t.v"], "CREATE TABLE t (id TEXT PRIMARY KEY);");
    assert!(!ok);
    assert!(err.contains("expected `table.column:kind`"), "{err}");
}
