//! The HTTP application in-process (`oneshot`, no socket) on a control plane of either
//! engine, with helpers to call it, sign JWTs and make real payloads.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use cloudsync_api::{router, AppState, Inner, Limits, Metrics};
use cloudsync_service::backends::postgres::PgBackends;
use cloudsync_service::backends::sqlite::SqliteBackends;
use cloudsync_service::backends::Backends;
use cloudsync_service::control::devices::UsageRecorder;
use cloudsync_service::control::identity::Verifier;
use cloudsync_service::control::ControlPlane;
use cloudsync_service::notify::Notifier;
use cloudsync_service::payloads::{AnyStore, FolderStore};
use cloudsync_service::secrets::SecretBox;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

#[path = "../../../service/tests/common/mod.rs"]
pub mod common;

pub const TOKEN: &str = "csa_test_admin_token";

/// An application under test.
pub struct TestApp {
    pub app: axum::Router,
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

/// Builds the application on `control`, with `limits` and an optional rate limit per
/// credential (rate, burst); without, requests are not rate limited at all.
pub fn app_on(control: ControlPlane, limits: Limits, rate: Option<(u32, u32)>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on(control, dir.path(), "http://test", limits, rate);
    TestApp { app: router(state.clone()), state, dir }
}

/// The application state on `control`, with its files under `dir`, reached at
/// `public_url`, with the admin token [`TOKEN`]; never shut down.
pub fn state_on(
    control: ControlPlane,
    dir: &std::path::Path,
    public_url: &str,
    limits: Limits,
    rate: Option<(u32, u32)>,
) -> AppState {
    let mut limits = limits;
    match rate {
        Some((per_second, burst)) => {
            limits.quotas.requests_per_second_per_credential = per_second;
            limits.credential_burst = burst;
        }
        None => {
            limits.quotas.requests_per_second_per_credential = 0;
            limits.quotas.requests_per_second = 0;
        }
    }
    let folder = FolderStore::new(dir.join("payloads"), public_url.into(), b"k".to_vec()).unwrap();
    let (tx, shutdown) = tokio::sync::watch::channel(false);
    // Keep the sender alive for the test's duration.
    std::mem::forget(tx);
    let control = control.with_secrets(SecretBox::from_text(&SecretBox::generate_text()).unwrap());
    // Everything here runs on loopback, as on an operator's single machine.
    let egress = Arc::new(cloudsync_service::egress::Egress::parse("127.0.0.1").unwrap());
    AppState(Arc::new(Inner {
        control: control.clone(),
        backends: Arc::new(Backends::new(
            SqliteBackends::new(dir.join("databases"), cloudsync_api::db_permit_count()).unwrap(),
            PgBackends::new(4, Arc::clone(&egress)),
            control.clone(),
        )),
        payloads: Arc::new(AnyStore::Folder(folder.clone())),
        folder: Some(folder),
        notifier: Arc::new(Notifier::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        admin_token: TOKEN.into(),
        public_url: public_url.into(),
        limits,
        metrics: Metrics::new(),
        shutdown,
        verifier: Verifier::new(Duration::ZERO, &egress),
        egress,
        usage: UsageRecorder::default(),
        quotas: cloudsync_api::quotas::Enforcer::default(),
        decoding: tokio::sync::Semaphore::new(cloudsync_api::decode_permit_count()),
        metrics_access: cloudsync_api::MetricsAccess::default(),
        long_polls: cloudsync_api::longpolls::LongPolls::default(),
        lockout: cloudsync_api::lockout::Lockout::new(20),
        client_address_header: None,
    }))
}

/// Starts `n` apply workers on `state`'s stores, reporting to its metrics; they stop
/// when the returned sender sends `true` (or is dropped).
pub fn workers(state: &AppState, n: usize) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(cloudsync_service::worker::Context {
        control: state.control.clone(),
        backends: Arc::clone(&state.backends),
        payloads: Arc::clone(&state.payloads),
        notifier: Arc::clone(&state.notifier),
        wake: Arc::clone(&state.wake),
        node: "test".into(),
        observer: Arc::new(state.metrics.clone()),
        max_attempt: cloudsync_service::backends::Budgets::default().job(),
    });
    (stop, cloudsync_service::worker::spawn(n, ctx, shutdown))
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl TestApp {
    /// Calls with a bearer token (or none) and an optional JSON body.
    pub async fn call(&self, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.request(method, uri, token.map(|t| format!("Bearer {t}")).as_deref(), body, &[]).await;
        (r.status, r.body)
    }

    /// Calls with a raw Authorization header value, JSON body and extra headers.
    pub async fn request(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or_else(|_| json!(String::from_utf8_lossy(&raw)));
        Resp { status, headers, body, raw }
    }

    /// Creates a tenant, returning its id.
    pub async fn tenant(&self, name: &str) -> String {
        let (s, t) = self.call("POST", "/v1/tenants", Some(TOKEN), Some(json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t["id"].as_str().unwrap().to_string()
    }

    /// Creates a database with `sql` provisioned, returning its id.
    pub async fn database(&self, tenant: &str, name: &str, sql: &str) -> String {
        let (s, d) = self
            .call("POST", &format!("/v1/tenants/{tenant}/databases"), Some(TOKEN), Some(json!({ "name": name })))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        let id = d["id"].as_str().unwrap().to_string();
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/tenants/{tenant}/databases/{id}/schema"),
                Some(TOKEN),
                Some(json!({ "sql": sql })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }

    /// Creates an API key with `scopes`, returning `(id, secret)`.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let (s, k) = self
            .call(
                "POST",
                &format!("/v1/tenants/{tenant}/api-keys"),
                Some(TOKEN),
                Some(json!({ "name": scopes.join("+"), "scopes": scopes })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        (k["id"].as_str().unwrap().to_string(), k["key"].as_str().unwrap().to_string())
    }

    /// Uploads a payload inline as device `site`.
    pub async fn upload(&self, db: &str, token: &str, site: &str, payload: Vec<u8>) -> Resp {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/v1/sync/{db}/changes"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/vnd.cloudsync.payload")
            .header("x-cloudsync-site", site)
            .header("x-cloudsync-from", "0")
            .header("x-cloudsync-to", "1.0")
            .body(Body::from(payload))
            .unwrap();
        self.send(req).await
    }
}

/// A device database: `sql` run, every table synced, `writes` run; returns its site
/// id (hex) and the payload of all its changes.
pub fn device_payload(sql: &str, tables: &[&str], writes: &str) -> (String, Vec<u8>) {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    cloudsync_sqlite::register(&conn).unwrap();
    conn.execute_batch(sql).unwrap();
    for t in tables {
        let _: String = conn.query_row("SELECT cloudsync_init(?1)", [t], |r| r.get(0)).unwrap();
    }
    conn.execute_batch(writes).unwrap();
    let site: String = conn.query_row("SELECT hex(cloudsync_siteid())", [], |r| r.get(0)).unwrap();
    let payload: Vec<u8> = conn
        .query_row(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
             FROM cloudsync_changes",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (site.to_lowercase(), payload)
}

/// Signs HS256 claims with `secret`.
pub fn hs256(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token with `alg: none` and no signature.
pub fn alg_none(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(claims))
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}
