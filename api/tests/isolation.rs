//! The isolation matrix. Every secured operation of the OpenAPI document (which is
//! generated with the router, so a new endpoint is in it by construction) is called
//! with each kind of bad credential, on both control-plane engines. Each must be
//! refused with its documented status, in the error shape, and reveal nothing of the
//! tenant it addresses.

mod support;

use axum::http::StatusCode;
use cloudsync_api::openapi::{methods, operations, secured};
use cloudsync_api::Limits;
use cloudsync_service::control::jobs::NewJob;
use cloudsync_service::ids::{DatabaseId, SiteHex};
use serde_json::{json, Value};
use support::{alg_none, hs256, now_s, TestApp, TOKEN};

const SECRET_A: &str = "tenant-a-hs256-secret-0123456789abcdef";
const SECRET_B: &str = "tenant-b-hs256-secret-0123456789abcdef";
const SITE: &str = "0102030405060708090a0b0c0d0e0f10";

struct Fixture {
    tenant: String,
    db: String,
    key_id: String,
    job: i64,
    admin_b: String,
    sync_a: String,
    schema_a: String,
    /// Strings of tenant A that must never appear in a refusal.
    private: Vec<String>,
}

async fn identity(app: &TestApp, tenant: &str, secret: &str, issuer: &str) {
    let (s, v) = app
        .call(
            "PUT",
            &format!("/v1/tenants/{tenant}/identity"),
            Some(TOKEN),
            Some(json!({ "method": "hs256", "secret": secret, "issuer": issuer, "audience": "cloudsync" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["has_secret"], true);
    assert!(!v.to_string().contains(secret), "the secret is never returned");
}

async fn fixture(app: &TestApp) -> Fixture {
    let tenant = app.tenant("alpha-corp-private-name").await;
    let db = app.database(&tenant, "alpha-private-db", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT)").await;
    let (key_id, _) = app.key(&tenant, &["admin"]).await;
    let (_, sync_a) = app.key(&tenant, &["sync"]).await;
    let (_, schema_a) = app.key(&tenant, &["schema"]).await;
    identity(app, &tenant, SECRET_A, "https://idp.alpha.example").await;
    let job = app
        .state
        .control
        .enqueue(NewJob {
            database_id: DatabaseId::parse(&db).unwrap(),
            site: SiteHex::parse(SITE).unwrap(),
            object_key: format!("{db}/{SITE}/x.csyn"),
            bytes: 1,
            from_cursor: "0.0".into(),
            to_cursor: "1.0".into(),
            actor: cloudsync_service::actor::Actor::default(),
        })
        .await
        .unwrap()
        .id;
    let tenant_b = app.tenant("beta").await;
    let (_, admin_b) = app.key(&tenant_b, &["admin"]).await;
    identity(app, &tenant_b, SECRET_B, "https://idp.beta.example").await;
    let private = vec!["alpha-corp-private-name".into(), "alpha-private-db".into(), key_id.clone()];
    Fixture { tenant, db, key_id, job, admin_b, sync_a, schema_a, private }
}

fn fill(path: &str, f: &Fixture) -> String {
    path.replace("{tenant}", &f.tenant)
        .replace("{db}", &f.db)
        .replace("{key}", &f.key_id)
        .replace("{site}", SITE)
        .replace("{job}", &f.job.to_string())
}

fn claims(issuer: &str, exp: i64) -> Value {
    json!({ "sub": "user-1", "iss": issuer, "aud": "cloudsync", "exp": exp, "iat": now_s() - 10 })
}

/// `(name, Authorization header, expected statuses)` for one operation.
fn variants(path: &str, f: &Fixture) -> Vec<(&'static str, Option<String>, Vec<StatusCode>)> {
    use StatusCode as S;
    let iss_a = "https://idp.alpha.example";
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    // Another tenant's admin key: 404 where the path names tenant A, 403 on operator
    // routes (which name no tenant the key could see).
    let addresses_tenant = path.contains("{tenant}") || path.contains("{db}");
    let operator_only =
        !addresses_tenant || path.ends_with("/suspend") || path.ends_with("/resume") || path == "/v1/tenants/{tenant}";
    let cross = if operator_only { vec![S::FORBIDDEN, S::NOT_FOUND] } else { vec![S::NOT_FOUND] };
    let lacking = if path.starts_with("/v1/sync/") { &f.schema_a } else { &f.sync_a };
    vec![
        ("no credentials", None, vec![S::UNAUTHORIZED]),
        ("malformed header", Some("Token abc".into()), vec![S::UNAUTHORIZED]),
        ("empty bearer", Some("Bearer ".into()), vec![S::UNAUTHORIZED]),
        ("unknown key", bearer("csk_not_a_real_key"), vec![S::UNAUTHORIZED]),
        ("another tenant's admin key", bearer(&f.admin_b), cross),
        ("key lacking the scope", bearer(lacking), vec![S::FORBIDDEN]),
        ("expired JWT", bearer(&hs256(SECRET_A, claims(iss_a, now_s() - 3600))), vec![S::UNAUTHORIZED]),
        (
            "JWT signed with the wrong key",
            bearer(&hs256("some-other-secret-0123456789abcdef0123", claims(iss_a, now_s() + 3600))),
            vec![S::UNAUTHORIZED],
        ),
        ("JWT with alg none", bearer(&alg_none(&claims(iss_a, now_s() + 3600))), vec![S::UNAUTHORIZED]),
        (
            "JWT for another tenant",
            bearer(&hs256(SECRET_B, claims("https://idp.beta.example", now_s() + 3600))),
            vec![S::UNAUTHORIZED],
        ),
    ]
}

#[tokio::test]
async fn every_secured_endpoint_refuses_every_bad_credential() {
    let doc = cloudsync_api::openapi_document();
    let ops = operations(&doc);
    let secured_ops: Vec<_> = ops.iter().filter(|(_, p)| secured(p)).collect();
    assert!(secured_ops.len() >= 30, "the document lists {} secured operations", secured_ops.len());
    for store in support::common::stores().await {
        let app = support::app_on(store.cp.clone(), Limits::default(), None);
        let f = fixture(&app).await;
        let mut checked = 0;
        for (method, path) in &secured_ops {
            let item = &doc.paths.paths[path.as_str()];
            let op = methods(item).into_iter().find(|(m, _)| m == method).and_then(|(_, op)| op).unwrap();
            assert!(op.security.is_some(), "{method} {path} declares no security");
            let uri = fill(path, &f);
            let body = matches!(*method, "POST" | "PUT" | "PATCH").then(|| json!({}));
            for (name, auth, expected) in variants(path, &f) {
                let r = app.request(method, &uri, auth.as_deref(), body.clone(), &[("x-cloudsync-site", SITE)]).await;
                let ctx = format!("[{}] {method} {path} with {name}", store.name);
                assert!(expected.contains(&r.status), "{ctx}: got {} {}", r.status, r.body);
                assert!(
                    op.responses.responses.contains_key(r.status.as_str()),
                    "{ctx}: status {} is not documented",
                    r.status
                );
                assert!(r.body["error"]["code"].is_string(), "{ctx}: not the error shape: {}", r.body);
                let text = String::from_utf8_lossy(&r.raw);
                for p in &f.private {
                    assert!(!text.contains(p.as_str()), "{ctx}: response reveals {p}: {text}");
                }
                if r.status == StatusCode::UNAUTHORIZED {
                    assert_eq!(r.body["error"]["code"], "unauthorized", "{ctx}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, secured_ops.len() * 10);
        // The credentials that should work do: the matrix is not vacuous.
        let ok = app.call("GET", &format!("/v1/tenants/{}/databases/{}", f.tenant, f.db), Some(TOKEN), None).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        let jwt = hs256(SECRET_A, claims("https://idp.alpha.example", now_s() + 3600));
        let (s, v) = app.call("GET", &format!("/v1/sync/{}/status?site={SITE}", f.db), Some(&jwt), None).await;
        assert_eq!(s, StatusCode::OK, "a valid device JWT syncs: {v}");
        let (s, _) = app.call("GET", &format!("/v1/tenants/{}/databases", f.tenant), Some(&jwt), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "a device JWT does not administer");
        store.finish().await;
    }
}

#[tokio::test]
async fn every_route_of_the_document_is_served() {
    // The document and the router come from one builder; check the reverse direction
    // too: no documented operation is missing from the router (405/404 from axum).
    let dir = tempfile::tempdir().unwrap();
    let cp = cloudsync_service::control::ControlPlane::open_sqlite(&dir.path().join("c.sqlite")).await.unwrap();
    let app = support::app_on(cp, Limits::default(), None);
    let doc = cloudsync_api::openapi_document();
    for (method, path) in operations(&doc) {
        let uri = path.replace('{', "x").replace('}', "");
        let r = app.request(method, &uri, None, None, &[]).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body["error"]["message"] == "route not found"),
            "{method} {path}"
        );
    }
}
