//! The HTTP application, called in-process with `oneshot` (no socket): error shapes,
//! authentication, limits, health and metrics.

mod support;

use axum::http::StatusCode;
use cloudsync_api::Limits;
use cloudsync_service::control::ControlPlane;
use serde_json::{json, Value};
use support::{TestApp, TOKEN};

async fn app(dir: &std::path::Path) -> (TestApp, ()) {
    let control = ControlPlane::open_sqlite(&dir.join("control.sqlite")).await.unwrap();
    (support::app_on(control, Limits { json_bytes: 4096, ..Limits::default() }, None), ())
}

async fn call(app: &TestApp, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    app.call(method, uri, token, body).await
}

#[tokio::test]
async fn admin_flow_and_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    // Authentication: none, malformed, wrong.
    for (token, why) in [(None, "missing"), (Some(""), "malformed"), (Some("nope"), "invalid")] {
        let (s, v) = call(&app, "POST", "/v1/tenants", token, Some(json!({ "name": "x" }))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    let (s, t) = call(&app, "POST", "/v1/tenants", Some(TOKEN), Some(json!({ "name": "acme" }))).await;
    assert_eq!(s, StatusCode::CREATED);
    let tid = t["id"].as_str().unwrap();
    let (s, db) = call(
        &app,
        "POST",
        &format!("/v1/tenants/{tid}/databases"),
        Some(TOKEN),
        Some(json!({ "name": "notes", "backend": { "kind": "sqlite" } })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{db}");
    assert_eq!(db["sync_url"], json!(format!("http://test/v1/sync/{}", db["id"].as_str().unwrap())));
    // Duplicate name, unknown backend, unknown field, bad JSON, unknown tenant.
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/tenants/{tid}/databases"),
        Some(TOKEN),
        Some(json!({ "name": "notes", "backend": { "kind": "sqlite" } })),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (s, _) = call(
        &app,
        "POST",
        &format!("/v1/tenants/{tid}/databases"),
        Some(TOKEN),
        Some(json!({ "name": "x", "backend": { "kind": "oracle" } })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, "POST", "/v1/tenants", Some(TOKEN), Some(json!({ "name": "x", "extra": 1 }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &app,
        "POST",
        "/v1/tenants/not-a-uuid/databases",
        Some(TOKEN),
        Some(json!({ "name": "x", "backend": { "kind": "sqlite" } })),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Schema: only CREATE statements, applied atomically.
    let dbid = db["id"].as_str().unwrap();
    let schema = format!("/v1/tenants/{tid}/databases/{dbid}/schema");
    let (s, v) = call(
        &app,
        "POST",
        &schema,
        Some(TOKEN),
        Some(json!({ "sql": "CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL); DROP TABLE a;" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("only CREATE TABLE"));
    let (s, v) = call(
        &app,
        "POST",
        &schema,
        Some(TOKEN),
        Some(json!({ "sql": "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("single INTEGER"), "{v}");
    let (s, v) = call(&app, "POST", &schema, Some(TOKEN), Some(json!({ "sql": "CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL, v TEXT); CREATE TABLE log (id TEXT PRIMARY KEY NOT NULL, at INTEGER DEFAULT 0);", "algo": { "log": "gos" } }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tables"], json!([{ "table": "a", "algo": "cls" }, { "table": "log", "algo": "gos" }]));
    // Keys: the secret once; scopes checked.
    let keys = format!("/v1/tenants/{tid}/api-keys");
    let (s, v) = call(&app, "POST", &keys, Some(TOKEN), Some(json!({ "name": "k", "scopes": ["root"] }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, k) = call(&app, "POST", &keys, Some(TOKEN), Some(json!({ "name": "k", "scopes": ["sync"] }))).await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = k["key"].as_str().unwrap();
    assert!(secret.starts_with("csk_"));
    // A sync key cannot administer, and cannot create tenants.
    let (s, _) = call(&app, "POST", &keys, Some(secret), Some(json!({ "name": "k2", "scopes": ["admin"] }))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, "POST", "/v1/tenants", Some(secret), Some(json!({ "name": "mine" }))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Another tenant's key sees 404, not 403.
    let (_, t2) = call(&app, "POST", "/v1/tenants", Some(TOKEN), Some(json!({ "name": "other" }))).await;
    let (_, k2) = call(
        &app,
        "POST",
        &format!("/v1/tenants/{}/api-keys", t2["id"].as_str().unwrap()),
        Some(TOKEN),
        Some(json!({ "name": "k", "scopes": ["admin"] })),
    )
    .await;
    let (s, _) = call(
        &app,
        "POST",
        &schema,
        Some(k2["key"].as_str().unwrap()),
        Some(json!({ "sql": "CREATE TABLE z (id TEXT PRIMARY KEY NOT NULL)" })),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Unknown routes are JSON 404s too.
    let (s, v) = call(&app, "GET", "/nope", None, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn oversized_json_is_413_with_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    let big = "x".repeat(10_000);
    let (s, v) = call(&app, "POST", "/v1/tenants", Some(TOKEN), Some(json!({ "name": big }))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    assert_eq!(call(&app, "GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", None, None).await.0, StatusCode::OK);
    call(&app, "POST", "/v1/tenants", None, Some(json!({ "name": "x" }))).await;
    let (_, text) = call(&app, "GET", "/metrics", None, None).await;
    let text = text.as_str().unwrap().to_string();
    assert!(text.contains(r#"cloudsync_http_requests_total{route="/v1/tenants",status="401"} 1"#), "{text}");
    assert!(text.contains("cloudsync_http_request_duration_seconds_bucket"));
}

#[test]
fn fly_toml_checks_point_at_served_routes() {
    let fly: toml::Value = toml::from_str(include_str!("../../fly.toml")).unwrap();
    let check = fly["http_service"]["checks"][0]["path"].as_str().unwrap();
    let metrics = fly["metrics"]["path"].as_str().unwrap();
    assert_eq!((check, metrics), ("/readyz", "/metrics"));
    assert_eq!(fly["mounts"]["destination"].as_str(), Some("/data"));
    assert_eq!(fly["env"]["CLOUDSYNC_DATA_DIR"].as_str(), Some("/data"));
    let docker = include_str!("../../Dockerfile");
    assert!(docker.contains("check-health") && docker.contains("/readyz") && docker.contains("VOLUME [\"/data\"]"));
}
