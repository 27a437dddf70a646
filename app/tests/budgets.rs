//! Tenant-defined work runs within the node's time budgets: a PostgreSQL row policy
//! that never ends fails its apply job for good with `time_budget_exceeded` (the device
//! reads the code in its status) and frees the worker; a read policy that never ends
//! fails the download with the same code, raised as a SQL error in the application.
//! Devices are Debian's Python loading the built extension. Needs PostgreSQL with the
//! cloudsync extension installed (`cargo xtask test` installs it).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SCHEMA: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT)";

fn status(d: &mut dyn Device) -> Value {
    let rows = d.exec("SELECT cloudsync_network_status()", &[]).unwrap();
    serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap()
}

/// Waits until the server has finished every upload of `d` (applied or failed).
fn settled(d: &mut dyn Device) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(d);
        if v["device"]["pending"] == json!(0) {
            return v;
        }
        assert!(Instant::now() < deadline, "uploads still pending: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the built extension and the cloudsync extension in PostgreSQL; run by cargo xtask test"]
fn a_runaway_policy_fails_its_job_and_frees_the_worker() {
    let pg = PgDb::new("budgets", PG_BACKEND_SETUP);
    let dir = tempfile::tempdir().unwrap();
    // One worker: a job that held it would stop every later one.
    let server = Server::start(
        &dir.path().join("data"),
        free_port(),
        &["--egress-allow", "127.0.0.1", "--workers", "1", "--apply-budget-secs", "2", "--request-budget-secs", "2"],
    );
    let tenant = server.admin("/v1/tenants", json!({ "name": "runaway" }));
    let t = tenant["id"].as_str().unwrap().to_string();
    let key = server.admin(&format!("/v1/tenants/{t}/api-keys"), json!({ "name": "devices", "scopes": ["sync"] }));
    let p = server.postgres_database(&t, key["key"].as_str().unwrap(), "main", &pg.url, SCHEMA);
    psql(&pg.url, PG_RUNAWAY_POLICY);
    let mut dev = PyDevice::open("device", &dir.path().join("device.db"));
    dev.join(SCHEMA, &p);

    // The runaway write: accepted, then stopped at its budget and failed for good.
    dev.sql("INSERT INTO notes VALUES ('n1', 'spin')");
    dev.sync(0).unwrap();
    let v = settled(&mut dev);
    let failure = &v["device"]["failures"][0];
    assert_eq!(failure["code"], "time_budget_exceeded", "{v}");
    assert_eq!(failure["retryable"], false, "not retried: the same work would run as long again: {v}");
    assert_eq!(psql(&pg.url, "SELECT count(*) FROM notes"), "0", "nothing of the stopped apply is kept");
    // The device cannot miss it: its next sync says "failed", naming the job, and its
    // changes count as unsent until the job is applied.
    let r = dev.sync(0).unwrap();
    assert_eq!(
        (r["send"]["status"].as_str(), r["send"]["failed"][0]["job"].clone()),
        (Some("failed"), failure["job"].clone()),
        "{r}"
    );
    assert_eq!(dev.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));

    // The worker is free: the next write applies.
    dev.sql("INSERT INTO notes VALUES ('n2', 'fine')");
    dev.sync(0).unwrap();
    let v = settled(&mut dev);
    assert_eq!(psql(&pg.url, "SELECT body FROM notes WHERE id = 'n2'"), "fine", "{v}");

    // A read policy that never ends: the download fails with the budget's code, raised
    // in the application as a SQL error.
    psql(
        &pg.url,
        "INSERT INTO notes VALUES ('n3', 'server'); \
         ALTER POLICY notes_read ON notes USING (spins(CASE WHEN id = 'n3' THEN 'spin' ELSE body END))",
    );
    let e = dev.sync(0).unwrap_err();
    assert!(e.contains("time_budget_exceeded"), "{e}");
    // The rest of the node is unharmed: without the runaway policy the row arrives.
    psql(&pg.url, "ALTER POLICY notes_read ON notes USING (true)");
    dev.sync(0).unwrap();
    assert_eq!(dev.one("SELECT body FROM notes WHERE id = 'n3'"), json!("server"));

    // The cause fixed, the operator retries the dead job: the change applies, and the
    // device has nothing unsent any more.
    psql(
        &pg.url,
        "ALTER POLICY notes_write ON notes WITH CHECK (true); ALTER POLICY notes_update ON notes USING (true) WITH CHECK (true)",
    );
    server.admin(&format!("/v1/tenants/{t}/databases/{}/jobs/{}/retry", p.database, failure["job"]), json!({}));
    settled(&mut dev);
    assert_eq!(psql(&pg.url, "SELECT body FROM notes WHERE id = 'n1'"), "spin");
    let r = dev.sync(0).unwrap();
    assert_eq!(r["send"]["status"], "nothing_to_send", "{r}");
    assert_eq!(dev.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
}

/// Quota answers reach the application through the extension (Debian's Python): a
/// device past the tenant's device quota gets a SQL error carrying
/// `device_quota_exceeded`; an upload that would grow the central SQLite database past
/// its size quota fails its job with `storage_quota_exceeded`, read in the result of
/// `cloudsync_network_sync()`, and nothing of it is applied.
/// Sets `tenant`'s quotas as the operator.
fn set_quotas(server: &Server, tenant: &str, quotas: Value) {
    server.put(&format!("/v1/tenants/{tenant}/quotas"), quotas);
}

/// One sync without retries: the first refusal reaches the caller.
fn sync_once(d: &mut dyn Device, wait_ms: u64) -> Result<Value, String> {
    let rows = d.exec(&format!("SELECT cloudsync_network_sync({wait_ms}, 0)"), &[])?;
    Ok(serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap())
}

#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn quota_errors_reach_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &["--sqlite-max-database-mb", "1"]);
    let p = server.provision(SCHEMA);
    set_quotas(&server, &p.tenant, json!({ "devices": 1 }));
    let mut first = PyDevice::open("first", &dir.path().join("first.db"));
    first.join(SCHEMA, &p);
    first.sync(0).unwrap();
    let mut second = PyDevice::open("second", &dir.path().join("second.db"));
    second.join(SCHEMA, &p);
    let e = second.sync(0).unwrap_err();
    assert!(e.contains("device_quota_exceeded"), "{e}");

    // 2 MiB of notes into a database allowed 1 MiB.
    let body = "x".repeat(4096);
    for i in 0..512 {
        first.exec("INSERT INTO notes VALUES (?1, ?2)", &[json!(format!("n{i}")), json!(body)]).unwrap();
    }
    first.sync(0).unwrap();
    let v = settled(&mut first);
    let failure = &v["device"]["failures"][0];
    assert_eq!(
        (failure["code"].as_str(), failure["retryable"].as_bool()),
        (Some("storage_quota_exceeded"), Some(false)),
        "{v}"
    );
    let synced = first.sync(0).unwrap();
    assert_eq!(synced["send"]["last_failure"]["code"], "storage_quota_exceeded", "{synced}");
    assert_eq!(synced["send"]["status"], "failed", "never 'sent' while an upload is dead: {synced}");
    assert_eq!(first.one("SELECT cloudsync_network_has_unsent_changes()"), json!(1));
    let central = file_rows(&p.central, "SELECT count(*) FROM notes");
    assert_eq!(central[0][0], json!(0), "nothing of the refused upload was applied");
    // Dropped for good by the operator: the device no longer counts it.
    server.admin(
        &format!("/v1/tenants/{}/databases/{}/jobs/{}/discard", p.tenant, p.database, failure["job"]),
        json!({}),
    );
    let synced = first.sync(0).unwrap();
    assert_eq!(synced["send"]["status"], "nothing_to_send", "{synced}");
    assert_eq!(first.one("SELECT cloudsync_network_has_unsent_changes()"), json!(0));
}

/// The other quota answers reach the application too, each as a SQL error carrying
/// its code when the call is not retried: waiting downloads past the credential's
/// quota (`too_many_long_polls`), requests past its rate (`rate_limited`), sync
/// transfer past the tenant's day (`transfer_quota_exceeded`), uploads past the
/// tenant's storage (`storage_quota_exceeded`), and an address locked out after guessed
/// keys (`too_many_failed_attempts`).
#[test]
#[ignore = "needs the built extension; run by cargo xtask test"]
fn rate_and_wait_quotas_reach_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &[]);
    let p = server.provision(SCHEMA);
    let mut dev = PyDevice::open("dev", &dir.path().join("dev.db"));
    dev.join(SCHEMA, &p);
    dev.sync(0).unwrap();

    // One download of this key waits; the device's own wait is one too many.
    set_quotas(&server, &p.tenant, json!({ "long_polls_per_credential": 1 }));
    let held = {
        let url = format!("{}/changes?site={:032x}&after=0&wait_ms=20000", p.sync_url, 7);
        let key = p.key.clone();
        // The device's own wait may take the one place first: then this one is
        // refused, and asks again until it holds the place.
        std::thread::spawn(move || loop {
            let status = http("GET", &url, Some(&key), None, &[]).unwrap().0;
            if status != 429 {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let e = loop {
        match sync_once(&mut dev, 1000) {
            Err(e) => break e,
            // The held download was not waiting yet: this one waited its second.
            Ok(_) => assert!(Instant::now() < deadline, "the held download never waited"),
        }
    };
    assert!(e.contains("too_many_long_polls"), "{e}");
    // A change from the device wakes the held download.
    dev.exec("INSERT INTO notes VALUES ('w', 'wake')", &[]).unwrap();
    sync_once(&mut dev, 0).unwrap();
    assert_eq!(held.join().unwrap(), 200);

    // One request per second for this key, in bursts of two.
    set_quotas(&server, &p.tenant, json!({ "requests_per_second_per_credential": 1 }));
    let e = (0..10).find_map(|_| sync_once(&mut dev, 0).err()).expect("a sync past the rate");
    assert!(e.contains("rate_limited"), "{e}");
    set_quotas(&server, &p.tenant, json!({}));

    // A MiB a day: an upload of 1.2 MB (random, so compressed as large) is taken;
    // the download after it, in the same sync or the next, is not.
    set_quotas(&server, &p.tenant, json!({ "transfer_mb_per_day": 1 }));
    dev.exec("INSERT INTO notes VALUES ('big', randomblob(1200000))", &[]).unwrap();
    let e = sync_once(&mut dev, 0).and_then(|_| sync_once(&mut dev, 0)).unwrap_err();
    assert!(e.contains("transfer_quota_exceeded"), "{e}");
    set_quotas(&server, &p.tenant, json!({ "transfer_mb_per_day": 0 }));
    dev.sync(0).unwrap();
    settled(&mut dev);
    let central = file_rows(&p.central, "SELECT count(*) FROM notes WHERE id = 'big'");
    assert_eq!(central[0][0], json!(1), "the upload taken before the quota was reached was applied");

    // The tenant's storage, 1 MiB, is taken by that row: the next upload is refused
    // whole (a 507 is not retried), the next one past a raised quota goes through.
    set_quotas(&server, &p.tenant, json!({ "storage_mb": 1 }));
    dev.exec("INSERT INTO notes VALUES ('over', 'x')", &[]).unwrap();
    let e = sync_once(&mut dev, 0).unwrap_err();
    assert!(e.contains("storage_quota_exceeded"), "{e}");
    set_quotas(&server, &p.tenant, json!({}));
    dev.sync(0).unwrap();
    settled(&mut dev);
    let central = file_rows(&p.central, "SELECT count(*) FROM notes WHERE id = 'over'");
    assert_eq!(central[0][0], json!(1), "sent once the quota allowed it");

    // Guessed keys lock the address out, whatever key it then presents.
    let locked = Server::start(&dir.path().join("locked"), free_port(), &["--auth-failures-per-minute", "2"]);
    let q = locked.provision(SCHEMA);
    let mut guesser = PyDevice::open("guesser", &dir.path().join("guesser.db"));
    guesser.join(SCHEMA, &q);
    guesser.exec("SELECT cloudsync_network_set_apikey('csk_not_a_key_anyone_issued')", &[]).unwrap();
    // Two guesses a minute (a sync may make more than one request): the next locks
    // the address out.
    for _ in 0..3 {
        let e = sync_once(&mut guesser, 0).unwrap_err();
        assert!(e.contains("unauthorized") || e.contains("too_many_failed_attempts"), "{e}");
    }
    guesser.exec("SELECT cloudsync_network_set_apikey(?1)", &[json!(q.key)]).unwrap();
    let e = sync_once(&mut guesser, 0).unwrap_err();
    assert!(e.contains("too_many_failed_attempts"), "{e}");
}
