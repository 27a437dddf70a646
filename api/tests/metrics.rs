//! `/metrics` after a scripted sync: every counter and histogram says exactly what
//! happened; and every metric the Grafana dashboard queries is exported.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloudsync_api::Limits;
use cloudsync_service::control::ControlPlane;
use serde_json::Value;
use support::{device_payload, TestApp, TOKEN};

const SQL: &str = "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty INTEGER);";

/// One sample of the exposition text: name and labels as written.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let inner = rest.trim_end_matches('}');
                    let labels = inner
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").unwrap();
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            (name, labels, value.parse::<f64>().unwrap())
        })
        .collect()
}

/// The value of the sample `name` with exactly `labels` (panics when absent).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    app.state.usage.flush(&app.state.control).await.unwrap();
    let r = app.request("GET", "/metrics", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    String::from_utf8(r.raw).unwrap()
}

async fn wait_for_job(app: &TestApp, tenant: &str, db: &str, job: i64, state: &str) -> Value {
    for _ in 0..400 {
        let (_, j) =
            app.call("GET", &format!("/v1/tenants/{tenant}/databases/{db}/jobs/{job}"), Some(TOKEN), None).await;
        if j["state"] == state {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {job} never reached {state}");
}

#[tokio::test]
async fn metrics_count_a_scripted_sync_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let app = support::app_on(control, Limits::default(), None);
    let (tx, workers) = support::workers(&app.state, 1);

    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", SQL).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;

    // Before any sync: the fixed series exist, at zero.
    let text = scrape(&app).await;
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "applied")]), 0.0);
    assert_eq!(value(&text, "cloudsync_store_errors_total", &[("store", "control")]), 0.0);
    assert_eq!(value(&text, "cloudsync_resources", &[("kind", "tenants")]), 1.0);
    assert_eq!(value(&text, "cloudsync_resources", &[("kind", "databases")]), 1.0);
    assert_eq!(value(&text, "cloudsync_active_devices", &[("window", "1h")]), 0.0);
    assert_eq!(
        value(&text, "cloudsync_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("rustc", "unknown")]),
        1.0
    );

    // Device A uploads three rows; a worker applies them.
    let (site_a, payload) =
        device_payload(SQL, &["items"], "INSERT INTO items VALUES ('1', 'a', 1), ('2', 'b', 2), ('3', 'c', 3);");
    let up = app.upload(&db, &key, &site_a, payload.clone()).await;
    assert_eq!(up.status, StatusCode::ACCEPTED, "{}", up.body);
    let changes_in = up.body["changes"].as_u64().unwrap();
    let job = wait_for_job(&app, &tenant, &db, up.body["job"].as_i64().unwrap(), "done").await;
    let applied = job["applied"].as_i64().unwrap();
    assert!(applied > 0);

    // Device B downloads them.
    let site_b = uuid::Uuid::now_v7().simple().to_string();
    let req = Request::builder()
        .uri(format!("/v1/sync/{db}/changes?site={site_b}&after=0"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let down = app.send(req).await;
    assert_eq!(down.status, StatusCode::OK);
    let changes_out: u64 = down.headers["x-cloudsync-changes"].to_str().unwrap().parse().unwrap();

    let text = scrape(&app).await;
    let t = tenant.as_str();
    let len = payload.len() as f64;
    let out = down.raw.len() as f64;
    assert_eq!(value(&text, "cloudsync_sync_payloads_total", &[("action", "upload_inline")]), 1.0);
    assert_eq!(value(&text, "cloudsync_sync_payloads_total", &[("action", "upload_signed")]), 0.0);
    assert_eq!(value(&text, "cloudsync_sync_payloads_total", &[("action", "download")]), 1.0);
    let bytes_in = [("tenant", t), ("action", "upload_inline"), ("direction", "in")];
    assert_eq!(value(&text, "cloudsync_sync_bytes_total", &bytes_in), len);
    let bytes_out = [("tenant", t), ("action", "download"), ("direction", "out")];
    assert_eq!(value(&text, "cloudsync_sync_bytes_total", &bytes_out), out);
    assert_eq!(value(&text, "cloudsync_sync_changes_total", &[("tenant", t), ("direction", "in")]), changes_in as f64);
    assert_eq!(
        value(&text, "cloudsync_sync_changes_total", &[("tenant", t), ("direction", "out")]),
        changes_out as f64
    );
    assert_eq!(value(&text, "cloudsync_payload_size_bytes_count", &[("direction", "in")]), 1.0);
    assert_eq!(value(&text, "cloudsync_payload_size_bytes_sum", &[("direction", "in")]), len);
    assert_eq!(value(&text, "cloudsync_payload_size_bytes_sum", &[("direction", "out")]), out);
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "applied")]), 1.0);
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "dead")]), 0.0);
    assert_eq!(value(&text, "cloudsync_job_duration_seconds_count", &[("outcome", "applied")]), 1.0);
    assert_eq!(value(&text, "cloudsync_job_changes_applied_total", &[]), applied as f64);
    assert_eq!(value(&text, "cloudsync_jobs", &[("state", "pending")]), 0.0);
    assert_eq!(value(&text, "cloudsync_jobs", &[("state", "dead")]), 0.0);
    assert_eq!(value(&text, "cloudsync_job_oldest_waiting_seconds", &[]), 0.0);
    assert_eq!(value(&text, "cloudsync_active_devices", &[("window", "1h")]), 2.0);
    let route = "/v1/sync/{db}/changes";
    assert_eq!(value(&text, "cloudsync_http_requests_total", &[("route", route), ("status", "202")]), 1.0);
    assert_eq!(value(&text, "cloudsync_http_requests_total", &[("route", route), ("status", "200")]), 1.0);
    assert_eq!(value(&text, "cloudsync_http_request_duration_seconds_count", &[("route", route)]), 2.0);
    for store in ["control", "payload", "backend"] {
        assert_eq!(value(&text, "cloudsync_store_errors_total", &[("store", store)]), 0.0, "{store}");
    }

    // A payload with a value the central column would store as something else
    // (numeric text for an INTEGER column): a dead letter, counted as one.
    let (site_c, bad) = device_payload(
        "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty TEXT);",
        &["items"],
        "INSERT INTO items VALUES ('1', 'x', '12');",
    );
    let up = app.upload(&db, &key, &site_c, bad).await;
    assert_eq!(up.status, StatusCode::ACCEPTED, "{}", up.body);
    wait_for_job(&app, &tenant, &db, up.body["job"].as_i64().unwrap(), "dead").await;
    let text = scrape(&app).await;
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "dead")]), 1.0);
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "applied")]), 1.0);
    assert_eq!(value(&text, "cloudsync_jobs", &[("state", "dead")]), 1.0);
    assert_eq!(value(&text, "cloudsync_sync_payloads_total", &[("action", "upload_inline")]), 2.0);

    // Every metric the Grafana dashboard queries is exported (histograms by their
    // _bucket/_sum/_count series).
    let dashboard: Value = serde_json::from_str(include_str!("../../grafana-dashboard.json")).unwrap();
    let names: std::collections::BTreeSet<String> = samples(&text).into_iter().map(|(n, _, _)| n).collect();
    let queried = queried_metrics(&dashboard);
    assert!(queried.len() >= 12, "the dashboard queries too few metrics: {queried:?}");
    for m in &queried {
        assert!(names.contains(m), "the Grafana dashboard queries {m}, which the service does not export");
    }

    let _ = tx.send(true);
    for w in workers {
        w.await.unwrap();
    }
}

/// Every `cloudsync_*` metric name in the dashboard's panel queries.
fn queried_metrics(dashboard: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            let mut rest = expr;
            while let Some(i) = rest.find("cloudsync_") {
                let tail = &rest[i..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                out.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    out
}

#[test]
fn grafana_dashboard_is_importable() {
    let d: Value = serde_json::from_str(include_str!("../../grafana-dashboard.json")).unwrap();
    // A datasource variable, used by every panel, so the import asks for a Prometheus.
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"));
    let panels = d["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in
        ["Active devices", "Requests", "Traffic in/out", "Traffic by action", "Latency", "Job queue", "Failures"]
    {
        assert!(titles.iter().any(|t| t.starts_with(want)), "no panel titled {want}: {titles:?}");
    }
    let mut ids = std::collections::HashSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate panel id");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {} must use the datasource variable", p["title"]);
        assert!(!p["targets"].as_array().unwrap().is_empty());
    }
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()) && d["schemaVersion"].as_i64().unwrap() >= 36);
}

#[tokio::test]
async fn rows_a_database_refuses_are_counted_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let app = support::app_on(control, Limits::default(), None);
    let (tx, workers) = support::workers(&app.state, 1);
    let tenant = app.tenant("acme").await;
    let checked = "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, name TEXT, qty INTEGER CHECK (qty < 10));";
    let db = app.database(&tenant, "main", checked).await;
    let (_, key) = app.key(&tenant, &["sync"]).await;

    // A device without the CHECK writes three rows; the central database refuses two.
    let (site, payload) =
        device_payload(SQL, &["items"], "INSERT INTO items VALUES ('1', 'a', 1), ('2', 'b', 20), ('3', 'c', 30);");
    let up = app.upload(&db, &key, &site, payload).await;
    assert_eq!(up.status, StatusCode::ACCEPTED, "{}", up.body);
    let job = wait_for_job(&app, &tenant, &db, up.body["job"].as_i64().unwrap(), "done").await;
    assert_eq!(job["refused"].as_array().map(Vec::len), Some(2), "{job}");
    let text = scrape(&app).await;
    assert_eq!(value(&text, "cloudsync_refused_rows_total", &[("tenant", &tenant)]), 2.0);
    assert_eq!(value(&text, "cloudsync_job_attempts_total", &[("outcome", "applied")]), 1.0);

    let _ = tx.send(true);
    for w in workers {
        w.await.unwrap();
    }
}
