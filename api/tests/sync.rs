//! The download protocol through the router: a change of a database's read rules
//! restarts each device's download from the beginning, and that restart survives a lost
//! response — only the last checkpoint the restarted pass handed out continues it.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloudsync_api::Limits;
use cloudsync_service::control::ControlPlane;
use serde_json::json;
use support::{device_payload, TestApp, TOKEN};

const SQL: &str = "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty INTEGER);";

/// One download of about a kilobyte: (status, changes, checkpoint, more).
async fn download(app: &TestApp, db: &str, key: &str, site: &str, after: &str) -> (StatusCode, u64, String, bool) {
    let req = Request::builder()
        .uri(format!("/v1/sync/{db}/changes?site={site}&after={after}&max_bytes=1024"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let changes = header("x-cloudsync-changes").map_or(0, |c| c.parse().unwrap());
    (r.status, changes, header("x-cloudsync-cursor").unwrap(), header("x-cloudsync-more").as_deref() == Some("1"))
}

/// Downloads from `after` to the end of the pass; returns the checkpoint and the
/// changes received.
async fn to_the_end(app: &TestApp, db: &str, key: &str, site: &str, mut after: String) -> (String, u64) {
    let mut total = 0;
    loop {
        let (status, changes, next, more) = download(app, db, key, site, &after).await;
        assert!(status == StatusCode::OK || status == StatusCode::NO_CONTENT, "{status}");
        total += changes;
        after = next;
        if !more {
            return (after, total);
        }
    }
}

#[tokio::test]
async fn a_restart_under_new_read_rules_survives_a_lost_response() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let app = support::app_on(control, Limits::default(), None);
    let (_tx, _workers) = support::workers(&app.state, 1);
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", SQL).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;
    let policy = format!("/v1/tenants/{tenant}/databases/{db}/tables/items/policy");
    let (s, v) = app.call("PUT", &policy, Some(TOKEN), Some(json!({ "read": "qty > 0" }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let writes: String = (0..200)
        .map(|i| format!("INSERT INTO items VALUES ('r{i:03}', 'name {i} {}', {});", "x".repeat(40), i % 4))
        .collect();
    let (writer, payload) = device_payload(SQL, &["items"], &writes);
    let up = app.upload(&db, &key, &writer, payload).await;
    assert_eq!(up.status, StatusCode::ACCEPTED, "{}", up.body);
    for _ in 0..400 {
        let (_, jobs) = app.call("GET", &format!("/v1/tenants/{tenant}/databases/{db}/jobs"), Some(TOKEN), None).await;
        if jobs["items"][0]["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // A reader's first pass: the 150 rows the rule shows, over several chunks.
    let reader = uuid::Uuid::now_v7().simple().to_string();
    let (end, first) = to_the_end(&app, &db, &key, &reader, "0".into()).await;
    assert!(first > 0);
    let (status, _, same, _) = download(&app, &db, &key, &reader, &end).await;
    assert_eq!((status, same.as_str()), (StatusCode::NO_CONTENT, end.as_str()));

    // New rules: every row. The next download starts over; its first response is lost.
    let (s, v) = app.call("PUT", &policy, Some(TOKEN), Some(json!({ "read": "qty >= 0" }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (status, lost, lost_next, more) = download(&app, &db, &key, &reader, &end).await;
    assert_eq!(status, StatusCode::OK);
    assert!(more, "the restarted pass spans several chunks");
    // The device never stored `lost_next` and asks from where it was: the pass starts
    // over again instead of continuing from there (which would skip the 50 rows).
    let (status, again, again_next, _) = download(&app, &db, &key, &reader, &end).await;
    assert_eq!((status, again, again_next.as_str()), (StatusCode::OK, lost, lost_next.as_str()));
    // From the checkpoint it was handed, the pass continues to the end: every row.
    let (done, rest) = to_the_end(&app, &db, &key, &reader, again_next).await;
    assert_eq!(again + rest, first * 200 / 150);
    let (status, _, _, _) = download(&app, &db, &key, &reader, &done).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// Waiting downloads cost no query each: one watcher per database reads its position
/// once a second while anyone waits, wakes every waiter when a change lands — here
/// applied by another node, which cannot signal this one — and stops when they are gone.
#[tokio::test]
async fn waiting_downloads_share_one_watcher_woken_by_another_nodes_apply() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let limits = Limits { new_sites_per_hour: 0, ..Limits::default() };
    // This node runs no worker; the other, on the same stores, applies.
    let app = support::app_on(control.clone(), limits, None);
    let other = support::state_on(control, app.dir.path(), "http://test", limits, None);
    let (_tx, _workers) = support::workers(&other, 1);
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", SQL).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;

    const WAITERS: usize = 100;
    let started = tokio::time::Instant::now();
    let polls_before = app.state.notifier.polls();
    let waits = (0..WAITERS).map(|_| {
        let site = uuid::Uuid::now_v7().simple().to_string();
        let req = Request::builder()
            .uri(format!("/v1/sync/{db}/changes?site={site}&after=0&wait_ms=60000"))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let app = &app;
        async move {
            let r = app.send(req).await;
            (r.status, r.headers.get("x-cloudsync-changes").map(|v| v.to_str().unwrap().to_string()), started.elapsed())
        }
    });
    let waiting = futures::future::join_all(waits);
    let write = async {
        // Every download is waiting before the change is made.
        while app.state.notifier.waiting() < WAITERS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(app.state.notifier.watched(), 1, "one watcher for the database, whatever the waiters");
        let (writer, payload) = device_payload(SQL, &["items"], "INSERT INTO items VALUES ('a', 'first', 1);");
        let up = app.upload(&db, &key, &writer, payload).await;
        assert_eq!(up.status, StatusCode::ACCEPTED, "{}", up.body);
    };
    let (answers, ()) = tokio::join!(waiting, write);
    let elapsed = started.elapsed();
    for (status, changes, took) in &answers {
        assert_eq!(*status, StatusCode::OK);
        assert!(changes.as_deref().is_some_and(|n| n != "0"), "{changes:?}");
        assert!(*took < Duration::from_secs(30), "woken by the change, not by the 60 s deadline ({took:?})");
    }
    // One read of the position per second while they waited, not one per waiter.
    let polls = app.state.notifier.polls() - polls_before;
    assert!(polls <= elapsed.as_secs() + 2, "{polls} reads in {elapsed:?} for {WAITERS} waiters");
    // With nobody waiting the watcher stops.
    while app.state.notifier.watched() > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the watcher outlived its waiters");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.notifier.waiting(), 0);
}

#[tokio::test]
async fn an_upload_naming_what_the_database_lacks_is_refused_whole_with_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let app = support::app_on(control, Limits::default(), None);
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", SQL).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;
    // A device on a newer schema: a column and a table the database does not have.
    let (site, payload) = device_payload(
        "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, color TEXT);
         CREATE TABLE projects (id TEXT PRIMARY KEY NOT NULL);",
        &["items", "projects"],
        "INSERT INTO items VALUES ('a', 'apple', 1, 'red'); INSERT INTO projects VALUES ('p');",
    );
    let r = app.upload(&db, &key, &site, payload).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("schema_mismatch")),
        "{}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'items.color'") && message.contains("'projects'"), "{message}");
    // The names are the device's: the answer shows ten, each cut short.
    let names: Vec<String> = (0..15).map(|i| format!("t{i:02}_{}", "x".repeat(300))).collect();
    let ddl: String = names.iter().map(|n| format!("CREATE TABLE \"{n}\" (id TEXT PRIMARY KEY NOT NULL);")).collect();
    let writes: String = names.iter().map(|n| format!("INSERT INTO \"{n}\" VALUES ('a');")).collect();
    let tables: Vec<&str> = names.iter().map(String::as_str).collect();
    let (many, payload) = device_payload(&ddl, &tables, &writes);
    let r = app.upload(&db, &key, &many, payload).await;
    let message = r.body["error"]["message"].as_str().unwrap();
    assert_eq!(r.status, StatusCode::CONFLICT, "{message}");
    assert!(message.contains("5 more") && message.len() < 1500, "{} bytes: {message}", message.len());
    let (_, status) = app.call("GET", &format!("/v1/sync/{db}/status?site={site}"), Some(&key), None).await;
    assert_eq!((status["device"]["accepted"].clone(), status["device"]["pending"].clone()), (json!(null), json!(0)));
    // Its changes to what the database has are not taken half: the same device's
    // payload without them is.
    let (site, payload) = device_payload(SQL, &["items"], "INSERT INTO items VALUES ('a', 'apple', 1);");
    assert_eq!(app.upload(&db, &key, &site, payload).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_schema_posted_again_wider_adds_its_columns_and_devices_may_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let app = support::app_on(control, Limits::default(), None);
    let (_stop, _workers) = support::workers(&app.state, 1);
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", SQL).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;
    let schema = format!("/v1/tenants/{tenant}/databases/{db}/schema");
    // A column with a CHECK and NOT NULL: SQLite checks the existing rows as it adds it.
    let newer =
        "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, color TEXT DEFAULT 'white', \
                 n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0));";
    let upload = || {
        let (site, payload) =
            device_payload(newer, &["items"], "INSERT INTO items VALUES ('a', 'apple', 1, 'red', 2);");
        let app = &app;
        let db = &db;
        let key = &key;
        async move { app.upload(db, key, &site, payload).await }
    };
    assert_eq!(upload().await.status, StatusCode::CONFLICT);
    // A row from a device on the current schema, applied: the alter has rows to check.
    let (site, payload) = device_payload(SQL, &["items"], "INSERT INTO items VALUES ('z', 'zucchini', 3);");
    assert_eq!(app.upload(&db, &key, &site, payload).await.status, StatusCode::ACCEPTED);
    loop {
        let (_, v) = app.call("GET", &format!("/v1/sync/{db}/status?site={site}"), Some(&key), None).await;
        assert_eq!(v["device"]["failures"], json!([]), "{v}");
        if v["device"]["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A dry run says what it would do and keeps nothing.
    let (s, v) = app.call("POST", &format!("{schema}?dry_run=true"), Some(TOKEN), Some(json!({ "sql": newer }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["statements"],
        json!([
            r#"ALTER TABLE "items" ADD COLUMN "color" TEXT DEFAULT ('white')"#,
            r#"ALTER TABLE "items" ADD COLUMN "n" INTEGER NOT NULL DEFAULT (0) CHECK (n >= 0)"#
        ]),
        "{v}"
    );
    assert_eq!(upload().await.status, StatusCode::CONFLICT);
    // Posted, the column is there for devices at once.
    let (s, v) = app.call("POST", &schema, Some(TOKEN), Some(json!({ "sql": newer }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = upload().await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let (_, tables) = app.call("GET", &format!("/v1/tenants/{tenant}/databases/{db}/tables"), Some(TOKEN), None).await;
    assert_eq!(tables["tables"][0]["columns"], json!(["name", "qty", "color", "n"]), "{tables}");
    // The same schema again does nothing; a narrower one is refused, nothing changed.
    let (s, v) = app.call("POST", &schema, Some(TOKEN), Some(json!({ "sql": newer }))).await;
    assert_eq!((s, v["statements"].clone()), (StatusCode::OK, json!([])), "{v}");
    let (s, v) = app.call("POST", &schema, Some(TOKEN), Some(json!({ "sql": SQL }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("refused_sql")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("color"), "{v}");
}
