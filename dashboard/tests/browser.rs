//! The dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`),
//! against a real service on loopback: sign in, create a tenant and a database,
//! provision a table, create a key, sync a device with it, and see the device, its
//! traffic and its job; a refused sign-in and a form posted without its CSRF token
//! fail. Screenshots of the main pages go to `$CLOUDSYNC_ARTIFACTS_DIR/dashboard`.
//!
//! Run by `cargo xtask test` (it installs the browser); by hand:
//! `cargo test -p cloudsync-dashboard --test browser -- --ignored`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudsync_api::{router_with, AppState, Limits};
use cloudsync_service::control::jobs::JobState;
use cloudsync_service::control::ControlPlane;
use cloudsync_service::ids::TenantId;
use cloudsync_service::page::PageRequest;
use fantoccini::{Client, ClientBuilder, Locator};

#[path = "../../api/tests/support/mod.rs"]
mod support;

use support::TOKEN;
const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT, done INTEGER DEFAULT 0);";

struct Server {
    url: String,
    state: AppState,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let state = support::state_on(control, dir.path(), &url, Limits::default(), None);
    let (stop, _workers) = support::workers(&state, 1);
    let app = router_with(state.clone(), cloudsync_dashboard::router(state.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, state, _dir: dir, _stop: stop }
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin} (install Debian's chromium-driver, or run cargo xtask test): {e}"));
    let d = Driver { child, url: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start listening");
}

async fn browser(d: &Driver, profile: &std::path::Path) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls().unwrap().capabilities(caps).connect(&d.url).await.expect("connecting to chromedriver")
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("CLOUDSYNC_ARTIFACTS_DIR")
        .map_or_else(|| std::env::temp_dir().join("cloudsync-artifacts"), PathBuf::from)
        .join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Clicks a link or submit button and waits for the next page (every click here
/// navigates): the old document's root goes stale, then the new one has a body.
async fn click(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    for _ in 0..800 {
        if old.tag_name().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    c.wait().for_element(Locator::Css("body")).await.unwrap();
}

async fn body(c: &Client) -> String {
    text(c, "body").await
}

/// A device: a SQLite database with the engine, syncing `notes` with `key`.
fn sync_device(sync_url: String, key: String) -> serde_json::Value {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    cloudsync_sqlite::register(&conn).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let _: String = conn.query_row("SELECT cloudsync_init('notes')", [], |r| r.get(0)).unwrap();
    conn.execute_batch(
        "INSERT INTO notes (id, body) VALUES ('n1', 'buy milk'), ('n2', 'call home'), ('n3', 'ship it');",
    )
    .unwrap();
    conn.query_row("SELECT cloudsync_network_init(?1)", [&sync_url], |_| Ok(())).unwrap();
    conn.query_row("SELECT cloudsync_network_set_apikey(?1)", [&key], |_| Ok(())).unwrap();
    let out: String = conn.query_row("SELECT cloudsync_network_sync(0, 5)", [], |r| r.get(0)).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run by cargo xtask test"]
async fn operator_runs_the_service_from_the_browser() {
    let server = serve().await;
    let d = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&d, profile.path()).await;
    let base = server.url.clone();

    // Signed out: any page leads to the sign-in form.
    c.goto(&format!("{base}/admin")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/admin/login"));
    shot(&c, "01-sign-in").await;

    // A refused sign-in says so and signs nobody in.
    fill(&c, "#f-token", "csa_wrong").await;
    click(&c, "form button[type=submit]").await;
    assert!(text(&c, "#f-token-error").await.contains("Invalid"), "{}", body(&c).await);
    c.goto(&format!("{base}/admin")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/admin/login"));

    // The operator signs in.
    fill(&c, "#f-token", TOKEN).await;
    click(&c, "form button[type=submit]").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/admin");
    assert!(body(&c).await.contains("No failed jobs"));

    // A tenant, with a validation message first.
    click(&c, "a[href='/admin/tenants']").await;
    assert!(body(&c).await.contains("No tenants yet"));
    fill(&c, "#f-name", "   ").await;
    click(&c, "main form button[type=submit]").await;
    assert!(c.find(Locator::Css("#f-name-error")).await.is_ok(), "{}", body(&c).await);
    fill(&c, "#f-name", "Acme").await;
    click(&c, "main form button[type=submit]").await;
    assert!(text(&c, ".notice").await.contains("Tenant created"));
    let tenant_url = c.current_url().await.unwrap();
    let tenant_id = tenant_url.path().rsplit('/').next().unwrap().to_string();

    // A database.
    fill(&c, "#db-name", "notes-app").await;
    click(&c, "form[action$='/databases'] button[type=submit]").await;
    assert!(text(&c, ".notice").await.contains("Database created"));
    assert!(body(&c).await.contains("No synced tables yet"));
    let db_path = c.current_url().await.unwrap().path().to_string();

    // Provision: preview first (nothing created), then create.
    fill(&c, "#f-sql", SCHEMA).await;
    click(&c, "button[value=preview]").await;
    let preview = text(&c, ".preview").await;
    assert!(preview.contains(r#"CREATE TABLE "notes""#) && preview.contains("notes with cls"), "{preview}");
    assert!(body(&c).await.contains("No synced tables yet"));
    shot(&c, "04-provision-preview").await;
    click(&c, "button[value=apply]").await;
    assert!(text(&c, ".notice").await.contains("Tables created"));
    let tables = text(&c, "section[aria-labelledby=tables-h] table").await;
    assert!(tables.contains("notes") && tables.contains("cls"), "{tables}");
    let sync_url = text(&c, "#sync-url").await;

    // A key with the sync scope: its secret is shown once.
    c.goto(tenant_url.as_str()).await.unwrap();
    fill(&c, "#key-name", "phone").await;
    click(&c, "form[action$='/keys'] button[type=submit]").await;
    let secret = text(&c, "#new-key-secret").await;
    assert!(secret.starts_with("csk_"), "{secret}");
    c.goto(tenant_url.as_str()).await.unwrap();
    assert!(!body(&c).await.contains(&secret), "the secret must not be shown again");

    // A device syncs with it.
    let first_url = sync_url.clone();
    let report = tokio::task::spawn_blocking(move || sync_device(first_url, secret)).await.unwrap();
    assert!(report.to_string().contains("sent") || report.is_object(), "{report}");
    let db_id = db_path.rsplit('/').next().unwrap().to_string();
    let db = cloudsync_service::ids::DatabaseId::parse(&db_id).unwrap();
    let mut done = false;
    for _ in 0..400 {
        let jobs = server.state.control.jobs(&db, None, &PageRequest::first(10)).await.unwrap();
        if jobs.items.iter().any(|j| j.state == JobState::Done) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done, "the device's upload was never applied");
    server.state.usage.flush(&server.state.control).await.unwrap();

    // Connect a device from the database page: a sync key made there, filled into the
    // snippets, which run as shown (the sqlite3 shell's, but for its `.load`: the engine
    // is linked here) and bring the first device's rows.
    c.goto(&format!("{base}{db_path}")).await.unwrap();
    assert!(text(&c, "#snippet-shell").await.contains("create a sync key above"), "{}", body(&c).await);
    assert_eq!(text(&c, "#connect-url").await, sync_url);
    click(&c, "#create-sync-key").await;
    let key = text(&c, "#connect-key code").await;
    assert!(key.starts_with("csk_"), "{key}");
    for id in ["#snippet-python", "#snippet-node", "#snippet-shell"] {
        let snippet = text(&c, id).await;
        assert!(
            snippet.contains(&key) && snippet.contains(&sync_url) && snippet.contains("cloudsync_init('notes')"),
            "{id}: {snippet}"
        );
    }
    shot(&c, "07-connect-device").await;
    let shell = text(&c, "#snippet-shell").await;
    let rows = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        cloudsync_sqlite::register(&conn).unwrap();
        let sql: Vec<&str> = shell.lines().filter(|l| !l.starts_with('.') && !l.starts_with("--")).collect();
        conn.execute_batch(&sql.join("\n")).unwrap();
        conn.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(rows, 3, "the snippet's device did not receive the first device's rows");
    c.goto(&format!("{base}{db_path}")).await.unwrap();
    assert!(!body(&c).await.contains(&key), "the key must not be shown again");

    // The database page shows the device, its traffic, its job, and the rows.
    c.goto(&format!("{base}{db_path}")).await.unwrap();
    let devices = text(&c, "section[aria-labelledby=devices-h] table").await;
    assert!(devices.contains("6 changes"), "three rows of two columns: {devices}");
    let jobs = text(&c, "section[aria-labelledby=jobs-h] table").await;
    assert!(jobs.contains("#1") && jobs.contains("done"), "{jobs}");
    let tables = text(&c, "section[aria-labelledby=tables-h] table").await;
    assert!(tables.contains('3'), "{tables}");
    let chart = c.find(Locator::Css("figure.chart svg")).await.unwrap().attr("aria-label").await.unwrap().unwrap();
    assert!(chart.starts_with("Changes") && !chart.contains("changes in 0,"), "{chart}");
    assert!(c.find(Locator::Css("figure.chart svg rect.s1")).await.is_ok(), "no bar drawn for the upload");
    shot(&c, "03-database").await;
    click(&c, "section[aria-labelledby=jobs-h] a[href$='/jobs/1']").await;
    assert!(text(&c, "h1").await.contains("Job #1"));
    assert!(body(&c).await.contains("done"));

    // The overview counts both devices (the first, and the connect panel's).
    c.goto(&format!("{base}/admin")).await.unwrap();
    let stats = text(&c, "section[aria-labelledby=counts-h]").await;
    assert!(stats.contains("Active in the last hour\n2") || stats.contains("Active in the last hour 2"), "{stats}");
    shot(&c, "02-overview").await;
    c.goto(tenant_url.as_str()).await.unwrap();
    shot(&c, "05-tenant").await;

    // A phone-width view of the database page.
    c.set_window_size(390, 900).await.unwrap();
    c.goto(&format!("{base}{db_path}")).await.unwrap();
    shot(&c, "06-database-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // A form posted without its CSRF token (the session cookie alone) is refused and
    // changes nothing.
    let session = c.get_named_cookie("cloudsync_session").await.unwrap();
    let before = server.state.control.tenants(&PageRequest::first(100)).await.unwrap().items.len();
    let session_value = session.value().to_string();
    let target = format!("{base}/admin/tenants");
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let forged = |body: &str| {
            agent
                .post(&target)
                .header("cookie", &format!("cloudsync_session={session_value}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .send(body)
                .unwrap()
                .status()
                .as_u16()
        };
        (forged("name=forged"), forged("name=forged&csrf=not-the-token"))
    })
    .await
    .unwrap();
    assert_eq!(status, (403, 403));
    let after = server.state.control.tenants(&PageRequest::first(100)).await.unwrap().items.len();
    assert_eq!(before, after, "a form without its CSRF token created a tenant");

    // Sign out: the session is gone.
    click(&c, "form.signout button").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/admin/login"));
    c.goto(&format!("{base}/admin/tenants/{tenant_id}")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/admin/login"));
    assert!(TenantId::parse(&tenant_id).is_ok());

    c.close().await.unwrap();
}
