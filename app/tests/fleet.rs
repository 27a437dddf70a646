//! A fleet on three schema versions at once, on both backends
//! (`docs/schema-changes.md`): an older app that stays on version 1, a newer app that
//! moves to version 2 before the server and to version 3 after it, and the server in
//! between. Devices sync at the same time; a column and a table are added device-side
//! first (held on the device, nothing accepted), then server-side first (left out of
//! the older device's downloads, named). At the end the older device takes the
//! server's schema itself (the opt-in), and all three hold the same rows on every
//! column, except the one row the server's `CHECK` refused, which the newer device
//! lists in `cloudsync_refused` and the server counts in `/metrics`.
//! Devices: Rust (the newer app) and Debian's Python (the older). Needs the built
//! extension and PostgreSQL with the cloudsync extension (`cargo xtask test`).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::*;

const V1: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)";
const PROJECTS: &str = "CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL, name TEXT)";
const TAGS: &str = "CREATE TABLE tags (id TEXT PRIMARY KEY NOT NULL, label TEXT)";
/// Version 2 on the server: a column whose `CHECK` devices do not have, and a table.
const V2_SERVER: &str = "ALTER TABLE notes ADD COLUMN color TEXT CHECK (color <> 'bad'); \
                         CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL, name TEXT)";
/// Version 3 on the server: another column and another table.
const V3_SERVER: &str =
    "ALTER TABLE notes ADD COLUMN due TEXT; CREATE TABLE tags (id TEXT PRIMARY KEY NOT NULL, label TEXT)";

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn sqlite_backend_fleet_on_three_schema_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &[]);
    let p = server.provision(V1);
    let central = p.central.clone();
    // A SQLite backend runs the schema as declared: there is nothing to leave out.
    let (status, body) = http(
        "POST",
        &format!("{}/v1/tenants/{}/databases/{}/schema", server.url, p.tenant, p.database),
        Some(&server.token),
        Some(json!({ "sql": V1, "omit": ["notes.title:check"] }).to_string().into_bytes()),
        &[("content-type", "application/json")],
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    assert!(v.to_string().contains("omit is for PostgreSQL backends"), "{v}");
    fleet_on_three_versions(&server, &p, dir.path(), &|sql| text_rows(&file_rows(&central, sql)));
}

#[test]
#[ignore = "needs the built extension and the cloudsync extension in PostgreSQL; run by cargo xtask test"]
fn postgres_backend_fleet_on_three_schema_versions() {
    // Devices act as `authenticated`, which may use every table the service creates.
    let setup = format!(
        "{PG_BACKEND_SETUP}\nALTER DEFAULT PRIVILEGES IN SCHEMA public \
         GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO authenticated;"
    );
    let pg = PgDb::new("fleet", &setup);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port(), &["--egress-allow", "127.0.0.1"]);
    let first = server.provision(V1);
    let p = server.postgres_database(&first.tenant, &first.key, "central", &pg.url, V1);
    fleet_on_three_versions(&server, &p, dir.path(), &|sql| {
        let out = psql(&pg.url, sql);
        if out.is_empty() {
            Vec::new()
        } else {
            out.lines().map(str::to_string).collect()
        }
    });
}

/// Rows as `a|b|c` lines, NULL as nothing (as `psql -A` shows them).
fn text_rows(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn add_column(d: &mut dyn Device, table: &str, column: &str) {
    for sql in [
        "BEGIN".to_string(),
        format!("SELECT cloudsync_begin_alter('{table}')"),
        format!("ALTER TABLE {table} ADD COLUMN {column}"),
        format!("SELECT cloudsync_commit_alter('{table}')"),
        "COMMIT".to_string(),
    ] {
        d.sql(&sql);
    }
}

fn add_table(d: &mut dyn Device, create: &str, name: &str) {
    d.sql(create);
    d.sql(&format!("SELECT cloudsync_init('{name}')"));
}

/// Both devices sync at the same time; their results.
fn sync_both(old: &mut PyDevice, new: &mut RustDevice) -> (Value, Value) {
    std::thread::scope(|s| {
        let o = s.spawn(|| old.sync(0));
        let n = s.spawn(|| new.sync(0));
        (o.join().unwrap().unwrap(), n.join().unwrap().unwrap())
    })
}

fn sorted(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn fleet_on_three_versions(server: &Server, p: &Provisioned, dir: &Path, central: &dyn Fn(&str) -> Vec<String>) {
    let schema_path = format!("/v1/tenants/{}/databases/{}/schema", p.tenant, p.database);
    let mut old = PyDevice::open("old-app", &dir.join("old.db"));
    old.join(V1, p);
    let mut new = RustDevice::open("new-app", &dir.join("new.db"));
    new.join(V1, p);

    // Version 1 everywhere.
    old.sql("INSERT INTO notes VALUES ('n0', 'first')");
    assert_eq!(old.sync(0).unwrap()["send"]["status"], "sent");
    drain(&mut [&mut old]);
    new.sync(0).unwrap();
    assert_eq!(new.one("SELECT title FROM notes WHERE id = 'n0'"), json!("first"));

    // Version 2, the app first: the newer app adds a column and a table the server does
    // not have yet, and writes both, while the older app writes too.
    add_column(&mut new, "notes", "color TEXT");
    add_table(&mut new, PROJECTS, "projects");
    new.sql("UPDATE notes SET color = 'blue' WHERE id = 'n0'");
    new.sql("INSERT INTO notes VALUES ('n1', 'from the new app', 'red')");
    new.sql("INSERT INTO notes VALUES ('n2', 'refused centrally', 'bad')");
    new.sql("INSERT INTO projects VALUES ('p1', 'garden')");
    old.sql("UPDATE notes SET title = 'edited by the old app' WHERE id = 'n0'");
    old.sql("INSERT INTO notes VALUES ('n3', 'from the old app')");
    let (o, n) = sync_both(&mut old, &mut new);
    assert_eq!(o["send"]["status"], "sent", "{o}");
    assert_eq!(
        (n["send"]["status"].as_str(), n["send"]["held"]["code"].as_str()),
        (Some("held"), Some("schema_mismatch"))
    );
    let message = n["send"]["held"]["message"].as_str().unwrap();
    assert!(message.contains("'notes.color'") && message.contains("'projects'"), "{message}");
    assert_eq!(new.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));
    drain(&mut [&mut old]);
    assert_eq!(central("SELECT id, title FROM notes ORDER BY id"), ["n0|edited by the old app", "n3|from the old app"]);

    // The server reaches version 2: what the newer app held is sent with its next sync,
    // while the older app syncs too.
    // The database counts its schema versions; a dry run changes nothing.
    let dry = server.admin(&format!("{schema_path}?dry_run=true"), json!({ "sql": V2_SERVER }));
    assert_eq!(dry["schema_version"], 1, "{dry}");
    let v = server.admin(&schema_path, json!({ "sql": V2_SERVER }));
    assert_eq!(v["schema_version"], 2, "{v}");
    let (o, n) = sync_both(&mut old, &mut new);
    // (What the older app receives in that same sync depends on which came first.)
    let mut skipped_by_old = sorted(&o["receive"]["skipped_schema"]);
    assert_eq!(n["send"]["status"], "sent", "{n}");
    drain(&mut [&mut new]);
    assert_eq!(new.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
    // The row the server's CHECK refuses is listed on the device, counted in /metrics;
    // the rest of the upload applied.
    assert_eq!(new.sync(0).unwrap()["send"]["status"], "nothing_to_send");
    assert_eq!(
        new.sql("SELECT tbl, key, code FROM cloudsync_refused"),
        [vec![json!("notes"), json!("'n2'"), json!("23514")]]
    );
    let (_, metrics) = http("GET", &format!("{}/metrics", server.url), Some(&server.token), None, &[]).unwrap();
    let line = format!("cloudsync_refused_rows_total{{tenant=\"{}\"}} 1", p.tenant);
    assert!(String::from_utf8_lossy(&metrics).lines().any(|l| l == line), "no `{line}` in /metrics");
    assert_eq!(
        central("SELECT id, title, color FROM notes ORDER BY id"),
        ["n0|edited by the old app|blue", "n1|from the new app|red", "n3|from the old app|"]
    );

    // The older app, still on version 1, declares what it has: its downloads leave out
    // the column and the table it lacks, and name them.
    let r = old.sync(0).unwrap();
    skipped_by_old.extend(sorted(&r["receive"]["skipped_schema"]));
    skipped_by_old.sort();
    skipped_by_old.dedup();
    assert_eq!(skipped_by_old, ["notes.color", "projects"], "{r}");
    assert_eq!(old.one("SELECT title FROM notes WHERE id = 'n1'"), json!("from the new app"));
    let download = |schema: Option<&str>| {
        let mut headers = vec![("x-cloudsync-site", "cd".repeat(16))];
        if let Some(s) = schema {
            headers.push(("x-cloudsync-schema", s.to_string()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http_with_headers("GET", &format!("{}/changes?after=0", p.sync_url), Some(&p.key), None, &headers).unwrap()
    };
    let (status, all, _) = download(None);
    assert_eq!((status, all.get("x-cloudsync-skipped")), (200, None));
    let (status, v1, _) = download(Some("notes:id,title"));
    assert_eq!(status, 200);
    assert_eq!(v1["x-cloudsync-skipped"], "notes%2Ecolor,projects");
    let count = |h: &std::collections::BTreeMap<String, String>| h["x-cloudsync-changes"].parse::<u64>().unwrap();
    assert!(count(&v1) < count(&all), "{v1:?} {all:?}");
    let (status, _, body) = download(Some("notes"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("x-cloudsync-schema"), "{}", String::from_utf8_lossy(&body));

    // Version 3, the server first: a column and a table the newer app then adopts.
    assert_eq!(server.admin(&schema_path, json!({ "sql": V3_SERVER }))["schema_version"], 3);
    // The same schema again runs nothing: still version 3.
    assert_eq!(server.admin(&schema_path, json!({ "sql": V3_SERVER }))["schema_version"], 3);
    // Nobody has written to them yet: nothing of them is skipped. (On PostgreSQL the
    // new table changes what the role may read, so the older device reads its pass
    // again, skipping what it skipped before.)
    let (o, n) = sync_both(&mut old, &mut new);
    assert_eq!(n["receive"]["skipped_schema"], json!([]), "{n}");
    assert!(sorted(&o["receive"]["skipped_schema"]).iter().all(|s| s == "notes.color" || s == "projects"), "{o}");
    add_column(&mut new, "notes", "due TEXT");
    add_table(&mut new, TAGS, "tags");
    new.sql("UPDATE notes SET due = 'friday' WHERE id = 'n1'");
    new.sql("INSERT INTO tags VALUES ('t1', 'home')");
    old.sql("UPDATE notes SET title = 'renamed by the old app' WHERE id = 'n1'");
    let (o, n) = sync_both(&mut old, &mut new);
    assert_eq!((o["send"]["status"].as_str(), n["send"]["status"].as_str()), (Some("sent"), Some("sent")));
    drain(&mut [&mut old, &mut new]);
    new.sync(0).unwrap();
    assert_eq!(
        new.one("SELECT title || ' ' || due FROM notes WHERE id = 'n1'"),
        json!("renamed by the old app friday")
    );

    // The older app takes the server's schema itself: every table and column it
    // skipped, and then their rows.
    old.sql("SELECT cloudsync_network_set_schema_auto(1)");
    let r = old.sync(0).unwrap();
    assert_eq!(sorted(&r["receive"]["schema_applied"]), ["notes.color", "notes.due", "projects", "tags"], "{r}");
    assert_eq!(r["receive"]["skipped_schema"], json!([]), "{r}");
    let status: Value = serde_json::from_str(old.one("SELECT cloudsync_network_status()").as_str().unwrap()).unwrap();
    assert_eq!(status["schema_version"], 3, "{status}");
    let db = server.get(&format!("/v1/tenants/{}/databases/{}", p.tenant, p.database));
    assert_eq!(db["schema_version"], 3, "{db}");

    // Everyone holds the same rows, on every column; only the refused row stays on the
    // device that wrote it.
    for (table, columns) in [("notes", "id, title, color, due"), ("projects", "id, name"), ("tags", "id, label")] {
        let sql = format!("SELECT {columns} FROM {table} WHERE id <> 'n2' ORDER BY id");
        let on_old = text_rows(&old.sql(&sql));
        assert_eq!(on_old, text_rows(&new.sql(&sql)), "{table}: the two devices differ");
        assert_eq!(on_old, central(&sql), "{table}: the devices and the server differ");
    }
    assert_eq!(
        central("SELECT id, title, color, due FROM notes ORDER BY id"),
        ["n0|edited by the old app|blue|", "n1|renamed by the old app|red|friday", "n3|from the old app||",]
    );
    assert_eq!(old.one("SELECT count(*) FROM notes WHERE id = 'n2'"), json!(0));
    assert_eq!(new.one("SELECT color FROM notes WHERE id = 'n2'"), json!("bad"));
}
