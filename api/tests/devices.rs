//! A device is who it says it is, on both control-plane engines: a site id is bound to
//! the credential subject of its first request (a JWT's user, an API key) and refused
//! to every other, on every sync call; a role the database does not allow is refused
//! before anything is stored; users and keys can be blocked whatever site id they use;
//! new site ids per credential and hour are capped, also when claimed all at once.

mod support;

use axum::http::StatusCode;
use cloudsync_api::Limits;
use serde_json::{json, Value};
use support::{device_payload, hs256, now_s, TestApp, TOKEN};

const SQL: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT)";
const SECRET: &str = "devices-test-hs256-secret-0123456789abcdef";

/// Runs `body` on a fresh application with `limits` over each engine.
macro_rules! on_both {
    ($limits:expr, |$app:ident| $body:block) => {
        for store in support::common::stores().await {
            eprintln!("-- on {}", store.name);
            let $app = support::app_on(store.cp.clone(), $limits, None);
            $body
            store.finish().await;
        }
    };
}

/// A tenant accepting HS256 JWTs and one database; returns their ids.
async fn tenant_with_identity(app: &TestApp) -> (String, String) {
    let t = app.tenant("t").await;
    let db = app.database(&t, "d", SQL).await;
    let (s, v) = app
        .call(
            "PUT",
            &format!("/v1/tenants/{t}/identity"),
            Some(TOKEN),
            Some(json!({ "method": "hs256", "secret": SECRET, "issuer": "i", "audience": "a" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (t, db)
}

fn jwt(user: &str, role: Option<&str>) -> String {
    let mut claims = json!({ "sub": user, "iss": "i", "aud": "a", "exp": now_s() + 600 });
    if let Some(r) = role {
        claims["role"] = json!(r);
    }
    hs256(SECRET, claims)
}

fn site(n: u32) -> String {
    format!("{n:032x}")
}

async fn status(app: &TestApp, db: &str, token: &str, site: &str) -> (StatusCode, Value) {
    app.call("GET", &format!("/v1/sync/{db}/status?site={site}"), Some(token), None).await
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

/// Every sync call of `token` as device `site`: status, download, visibility, a signed
/// upload URL and an inline upload; their answers.
async fn every_sync_call(app: &TestApp, db: &str, token: &str, site: &str, payload: &[u8]) -> Vec<(StatusCode, Value)> {
    let auth = format!("Bearer {token}");
    let with_site = [("x-cloudsync-site", site)];
    let mut out = vec![status(app, db, token, site).await];
    let r = app.request("GET", &format!("/v1/sync/{db}/changes?after=0"), Some(&auth), None, &with_site).await;
    out.push((r.status, r.body));
    let visibility = json!({ "table": "notes", "keys": [] });
    let r = app.request("POST", &format!("/v1/sync/{db}/visibility"), Some(&auth), Some(visibility), &with_site).await;
    out.push((r.status, r.body));
    let ticket = json!({ "bytes": payload.len(), "sha256": "00".repeat(32) });
    let r = app.request("POST", &format!("/v1/sync/{db}/uploads"), Some(&auth), Some(ticket), &with_site).await;
    out.push((r.status, r.body));
    let r = app.upload(db, token, site, payload.to_vec()).await;
    out.push((r.status, r.body));
    out
}

#[tokio::test]
async fn a_site_id_belongs_to_the_credential_that_used_it_first() {
    on_both!(Limits::default(), |app| {
        let (t, db) = tenant_with_identity(&app).await;
        let base = format!("/v1/tenants/{t}/databases/{db}");
        let (key_id, key) = app.key(&t, &["sync"]).await;
        let (alice, bob) = (jwt("alice", None), jwt("bob", None));
        let (dev, payload) = device_payload(SQL, &["notes"], "INSERT INTO notes VALUES ('a', 'x')");

        // Alice's first request binds the site id to her.
        assert_eq!(status(&app, &db, &alice, &dev).await.0, StatusCode::OK);
        let (_, d) = app.call("GET", &format!("{base}/devices/{dev}"), Some(TOKEN), None).await;
        assert_eq!(d["subject"], "user:alice", "{d}");

        // Bob, and an API key of the same tenant, are refused it on every sync call:
        // no status, no download, no visibility check, no upload as her device.
        for token in [&bob, &key] {
            for (s, v) in every_sync_call(&app, &db, token, &dev, &payload).await {
                assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("site_bound")), "{v}");
                assert!(v["error"]["message"].as_str().unwrap().contains("new site id"), "{v}");
            }
        }
        let (_, jobs) = app.call("GET", &format!("{base}/jobs"), Some(TOKEN), None).await;
        assert!(jobs["items"].as_array().unwrap().is_empty(), "nothing queued as her device: {jobs}");
        // Alice's device works as before, uploads included.
        for (s, v) in every_sync_call(&app, &db, &alice, &dev, &payload).await {
            assert!(s.is_success(), "{s}: {v}");
        }

        // An operator releases the binding: the next request binds it again (bob's), and
        // alice's is then refused.
        let (s, d) = app.call("POST", &format!("{base}/devices/{dev}/release"), Some(TOKEN), None).await;
        assert_eq!((s, d["subject"].clone()), (StatusCode::OK, Value::Null), "{d}");
        assert_eq!(status(&app, &db, &bob, &dev).await.0, StatusCode::OK);
        assert_eq!(code(&status(&app, &db, &alice, &dev).await.1), Some("site_bound"));
        let (s, _) = app.call("POST", &format!("{base}/devices/{}/release", site(404)), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // The API key binds its own site ids, as `key:<id>`.
        assert_eq!(status(&app, &db, &key, &site(7)).await.0, StatusCode::OK);
        let (_, d) = app.call("GET", &format!("{base}/devices/{}", site(7)), Some(TOKEN), None).await;
        assert_eq!(d["subject"], format!("key:{key_id}"));
        assert_eq!(code(&status(&app, &db, &alice, &site(7)).await.1), Some("site_bound"));
        // The key is rotated: once the old one is revoked, its devices move to the new
        // key (and to no one before that).
        let (new_id, new_key) = app.key(&t, &["sync"]).await;
        assert_eq!(code(&status(&app, &db, &new_key, &site(7)).await.1), Some("site_bound"));
        let (s, _) = app.call("DELETE", &format!("/v1/tenants/{t}/api-keys/{key_id}"), Some(TOKEN), None).await;
        assert!(s.is_success(), "{s}");
        assert_eq!(status(&app, &db, &new_key, &site(7)).await.0, StatusCode::OK);
        let (_, d) = app.call("GET", &format!("{base}/devices/{}", site(7)), Some(TOKEN), None).await;
        assert_eq!(d["subject"], format!("key:{new_id}"));
        assert_eq!(code(&status(&app, &db, &alice, &site(7)).await.1), Some("site_bound"), "moved to the key only");

        // A JWT whose role the database does not allow is refused at every sync call,
        // before the site id is bound or anything is stored.
        let admin_role = jwt("carol", Some("service_role"));
        for (s, v) in every_sync_call(&app, &db, &admin_role, &site(9), &payload).await {
            assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("forbidden")), "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("not allowed"), "{v}");
        }
        let (s, _) = app.call("GET", &format!("{base}/devices/{}", site(9)), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "no device recorded");
    });
}

#[tokio::test]
async fn users_and_keys_are_blocked_whatever_site_id_they_use() {
    on_both!(Limits::default(), |app| {
        let (t, db) = tenant_with_identity(&app).await;
        let base = format!("/v1/tenants/{t}/databases/{db}");
        let (key_id, key) = app.key(&t, &["sync"]).await;
        let (alice, bob) = (jwt("alice", None), jwt("bob", None));
        assert_eq!(status(&app, &db, &bob, &site(1)).await.0, StatusCode::OK);

        let block = json!({ "subject": "user:bob", "reason": "abuse" });
        let (s, b) = app.call("POST", &format!("{base}/blocked"), Some(TOKEN), Some(block)).await;
        assert_eq!((s, b["subject"].as_str()), (StatusCode::OK, Some("user:bob")), "{b}");
        // His device, and a new site id he makes up, are refused; nothing is recorded
        // for the new one. Others are not affected.
        for dev in [site(1), site(2)] {
            let (s, v) = status(&app, &db, &bob, &dev).await;
            assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("device_blocked")), "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("abuse"), "{v}");
        }
        assert_eq!(
            app.call("GET", &format!("{base}/devices/{}", site(2)), Some(TOKEN), None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(status(&app, &db, &alice, &site(3)).await.0, StatusCode::OK);
        // A key too.
        let (s, _) = app
            .call("POST", &format!("{base}/blocked"), Some(TOKEN), Some(json!({ "subject": format!("key:{key_id}") })))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(code(&status(&app, &db, &key, &site(4)).await.1), Some("device_blocked"));
        let (_, list) = app.call("GET", &format!("{base}/blocked"), Some(TOKEN), None).await;
        let subjects: Vec<&str> = list.as_array().unwrap().iter().map(|b| b["subject"].as_str().unwrap()).collect();
        assert_eq!(subjects.len(), 2, "{list}");
        assert!(subjects.contains(&"user:bob") && subjects.contains(&format!("key:{key_id}").as_str()), "{list}");

        // Unblocked, both work again; unblocking what is not blocked is not found.
        for subject in ["user:bob".to_string(), format!("key:{key_id}")] {
            let (s, _) = app
                .call("POST", &format!("{base}/blocked/remove"), Some(TOKEN), Some(json!({ "subject": subject })))
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
        assert_eq!(status(&app, &db, &bob, &site(1)).await.0, StatusCode::OK);
        assert_eq!(status(&app, &db, &key, &site(4)).await.0, StatusCode::OK);
        let (s, _) = app
            .call("POST", &format!("{base}/blocked/remove"), Some(TOKEN), Some(json!({ "subject": "user:bob" })))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // A subject is `user:…` or `key:…`; a device token cannot block anyone.
        for bad in ["bob", "user:", "team:x"] {
            let (s, v) =
                app.call("POST", &format!("{base}/blocked"), Some(TOKEN), Some(json!({ "subject": bad }))).await;
            assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}: {v}");
        }
        let (s, _) =
            app.call("POST", &format!("{base}/blocked"), Some(&alice), Some(json!({ "subject": "user:bob" }))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    });
}

#[tokio::test]
async fn new_site_ids_per_credential_are_capped_even_when_claimed_at_once() {
    let limits = Limits { new_sites_per_hour: 3, ..Limits::default() };
    on_both!(limits, |app| {
        let (t, db) = tenant_with_identity(&app).await;
        let other_db = app.database(&t, "e", SQL).await;
        let alice = jwt("alice", None);
        // Ten new site ids at once: never more than three are bound.
        let claims = (0..10).map(|n| {
            let (app, db, alice) = (&app, &db, &alice);
            async move { status(app, db, alice, &site(100 + n)).await }
        });
        let answers = futures::future::join_all(claims).await;
        let mut bound: Vec<(&str, String)> = Vec::new();
        for (n, (s, v)) in (100..).zip(&answers) {
            if *s == StatusCode::OK {
                bound.push((&db, site(n)));
            } else {
                assert_eq!((*s, code(v)), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_new_sites")), "{v}");
            }
        }
        assert!(bound.len() <= 3, "{} admitted", bound.len());
        // One at a time, exactly three are, across the tenant's databases.
        for n in 200..210 {
            let r = app
                .request(
                    "GET",
                    &format!("/v1/sync/{other_db}/status?site={}", site(n)),
                    Some(&format!("Bearer {alice}")),
                    None,
                    &[],
                )
                .await;
            if r.status == StatusCode::OK {
                bound.push((&other_db, site(n)));
                continue;
            }
            assert_eq!(code(&r.body), Some("too_many_new_sites"), "{}", r.body);
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=3600).contains(&retry), "{retry}");
        }
        assert_eq!(bound.len(), 3, "{bound:?}");
        // Refused claims leave nothing behind; bound devices keep working; another
        // user has a budget of their own.
        let mut devices = 0;
        for d in [&db, &other_db] {
            let (_, page) = app.call("GET", &format!("/v1/tenants/{t}/databases/{d}/devices"), Some(TOKEN), None).await;
            devices += page["items"].as_array().unwrap().len();
        }
        assert_eq!(devices, 3);
        for (d, dev) in &bound {
            assert_eq!(status(&app, d, &alice, dev).await.0, StatusCode::OK);
        }
        assert_eq!(status(&app, &db, &jwt("bob", None), &site(300)).await.0, StatusCode::OK);
    });
}
