//! Quotas per tenant, on both control-plane engines: the node's defaults, an
//! operator's overrides (which a tenant's own admin key may read, never set), and the
//! answers past each — `507 database_quota_exceeded` and `507 device_quota_exceeded`
//! with nothing kept (also when claimed all at once), `429 too_many_long_polls` with
//! `Retry-After` — each counted in `/metrics`.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloudsync_api::Limits;
use serde_json::json;
use support::{TestApp, TOKEN};

const SQL: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT)";

macro_rules! on_both {
    (|$app:ident| $body:block) => {
        for store in support::common::stores().await {
            eprintln!("-- on {}", store.name);
            let $app = support::app_on(store.cp.clone(), Limits::default(), None);
            $body
            store.finish().await;
        }
    };
}

fn site(n: u32) -> String {
    format!("{n:032x}")
}

async fn set(app: &TestApp, t: &str, token: &str, quotas: serde_json::Value) -> (StatusCode, serde_json::Value) {
    app.call("PUT", &format!("/v1/tenants/{t}/quotas"), Some(token), Some(quotas)).await
}

async fn create_db(app: &TestApp, t: &str, name: &str) -> (StatusCode, serde_json::Value) {
    app.call("POST", &format!("/v1/tenants/{t}/databases"), Some(TOKEN), Some(json!({ "name": name }))).await
}

fn hits(app: &TestApp, quota: &str) -> String {
    let text = app.state.metrics.render();
    let prefix = format!("cloudsync_quota_hits_total{{quota=\"{quota}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or("missing").to_string()
}

#[tokio::test]
async fn an_operator_sets_quotas_a_tenant_reads_them() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let (_, admin_key) = app.key(&t, &["admin"]).await;
        let (s, v) = app.call("GET", &format!("/v1/tenants/{t}/quotas"), Some(&admin_key), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["quotas"]["databases"], 100, "the node's default: {v}");
        assert_eq!(v["overrides"], json!({}));
        // The tenant cannot raise its own quotas.
        let (s, _) = set(&app, &t, &admin_key, json!({ "databases": 1000 })).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = set(&app, &t, TOKEN, json!({ "databases": 3, "long_polls": 0 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["quotas"]["databases"].clone(), v["quotas"]["long_polls"].clone()), (json!(3), json!(0)));
        assert_eq!(v["quotas"]["devices"], 100_000, "not set: the default");
        // A limit left out is the default again; unknown names and negative values are
        // refused, nothing changed.
        let (s, v) = set(&app, &t, TOKEN, json!({ "databases": 5 })).await;
        assert_eq!((s, v["quotas"]["long_polls"].clone()), (StatusCode::OK, json!(1000)));
        for bad in [json!({ "databsaes": 1 }), json!({ "devices": -1 }), json!({ "devices": "many" })] {
            let (s, v) = set(&app, &t, TOKEN, bad).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        }
        let (_, v) = app.call("GET", &format!("/v1/tenants/{t}/quotas"), Some(TOKEN), None).await;
        assert_eq!(v["overrides"], json!({ "databases": 5 }));
        let other = app.tenant("other").await;
        let (s, _) = app.call("GET", &format!("/v1/tenants/{other}/quotas"), Some(&admin_key), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's quotas are not there for this key");
    });
}

#[tokio::test]
async fn databases_past_the_quota_are_refused_whole_also_all_at_once() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        set(&app, &t, TOKEN, json!({ "databases": 3 })).await;
        for name in ["a", "b"] {
            assert_eq!(create_db(&app, &t, name).await.0, StatusCode::CREATED);
        }
        // Five more at once: never more than the one that fits (claimed, counted, given
        // back: at the limit, racing claims may all be given back).
        let attempts = (0..5).map(|i| {
            let (app, t) = (&app, &t);
            async move { create_db(app, t, &format!("c{i}")).await }
        });
        let answers = futures::future::join_all(attempts).await;
        let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
        assert!(created <= 1, "{answers:?}");
        if created == 0 {
            assert_eq!(create_db(&app, &t, "one-at-a-time").await.0, StatusCode::CREATED);
        }
        let (s, v) = create_db(&app, &t, "over").await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, Some("database_quota_exceeded"))
        );
        for (s, v) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_eq!(
                (*s, v["error"]["code"].as_str()),
                (StatusCode::INSUFFICIENT_STORAGE, Some("database_quota_exceeded"))
            );
        }
        let (_, list) = app.call("GET", &format!("/v1/tenants/{t}/databases"), Some(TOKEN), None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 3, "nothing of the refused ones kept: {list}");
        let files = std::fs::read_dir(app.dir.path().join("databases"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sqlite"))
            .count();
        assert_eq!(files, 3, "no file of a refused database");
        assert_eq!(hits(&app, "databases"), (6 - created).to_string());
    });
}

#[tokio::test]
async fn devices_past_the_quota_are_refused_before_anything_is_stored() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let db = app.database(&t, "d", SQL).await;
        let (_, key) = app.key(&t, &["sync"]).await;
        set(&app, &t, TOKEN, json!({ "devices": 2 })).await;
        let status = |n: u32| {
            let (app, db, key) = (&app, &db, &key);
            async move { app.call("GET", &format!("/v1/sync/{db}/status?site={}", site(n)), Some(key), None).await }
        };
        assert_eq!(status(1).await.0, StatusCode::OK);
        assert_eq!(status(2).await.0, StatusCode::OK);
        let (s, v) = status(3).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::INSUFFICIENT_STORAGE, Some("device_quota_exceeded")));
        // Known devices go on; the refused one left nothing behind.
        assert_eq!(status(1).await.0, StatusCode::OK);
        let (_, devices) = app.call("GET", &format!("/v1/tenants/{t}/databases/{db}/devices"), Some(TOKEN), None).await;
        assert_eq!(devices["items"].as_array().unwrap().len(), 2, "{devices}");
        // Raised by the operator, the next device comes in.
        set(&app, &t, TOKEN, json!({ "devices": 3 })).await;
        assert_eq!(status(3).await.0, StatusCode::OK);
        assert_eq!(hits(&app, "devices"), "1");
    });
}

#[tokio::test]
async fn waiting_downloads_past_the_quota_are_refused_with_retry_after() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let db = app.database(&t, "d", SQL).await;
        let (_, key) = app.key(&t, &["sync"]).await;
        let (_, other_key) = app.key(&t, &["sync"]).await;
        set(&app, &t, TOKEN, json!({ "long_polls": 3, "long_polls_per_credential": 2 })).await;
        let wait = |n: u32, key: &str, wait_ms: u64| {
            Request::builder()
                .uri(format!("/v1/sync/{db}/changes?site={}&after=0&wait_ms={wait_ms}", site(n)))
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap()
        };
        // Two waits of one key hold its share.
        let held: Vec<_> = (1..=2)
            .map(|n| {
                let (router, req) = (app.app.clone(), wait(n, &key, 60_000));
                tokio::spawn(async move { tower::ServiceExt::oneshot(router, req).await })
            })
            .collect();
        while app.state.notifier.waiting() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = app.send(wait(3, &key, 60_000)).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("too_many_long_polls"))
        );
        assert_eq!(r.headers.get("retry-after").unwrap(), "5");
        // Another key of the tenant has the tenant's last place, then none is left.
        let third = {
            let (router, req) = (app.app.clone(), wait(4, &other_key, 60_000));
            tokio::spawn(async move { tower::ServiceExt::oneshot(router, req).await })
        };
        while app.state.notifier.waiting() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(app.send(wait(5, &other_key, 60_000)).await.status, StatusCode::TOO_MANY_REQUESTS);
        // A download that does not wait is never refused for it.
        assert_eq!(app.send(wait(3, &key, 0)).await.status, StatusCode::NO_CONTENT);
        // A wait that ends frees its place.
        for h in held.into_iter().chain([third]) {
            h.abort();
            let _ = h.await;
        }
        assert_eq!(app.send(wait(3, &key, 10)).await.status, StatusCode::NO_CONTENT);
        assert_eq!(hits(&app, "long_polls_per_credential"), "1");
        assert_eq!(hits(&app, "long_polls"), "1");
    });
}

#[tokio::test]
async fn request_rates_are_limited_per_credential_and_per_tenant() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let other = app.tenant("other").await;
        let keys = [app.key(&t, &["admin"]).await.1, app.key(&t, &["admin"]).await.1, app.key(&t, &["admin"]).await.1];
        let (_, other_key) = app.key(&other, &["admin"]).await;
        // One request per second per key in bursts of two; two per second for the
        // tenant, in bursts of four.
        let (s, v) =
            set(&app, &t, TOKEN, json!({ "requests_per_second": 2, "requests_per_second_per_credential": 1 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let url = format!("/v1/tenants/{t}");
        let get = |key: &str| {
            let (app, url, auth) = (&app, &url, format!("Bearer {key}"));
            async move { app.request("GET", url, Some(&auth), None, &[]).await }
        };
        for _ in 0..2 {
            assert_eq!(get(&keys[0]).await.status, StatusCode::OK);
        }
        let r = get(&keys[0]).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
        assert!(r.body["error"]["message"].as_str().unwrap().contains("per user or key"), "{}", r.body);
        assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        // A second key has its own bucket, and takes the tenant's last two requests;
        // the refused one above took none of them.
        for _ in 0..2 {
            assert_eq!(get(&keys[1]).await.status, StatusCode::OK);
        }
        // A third key, never used, finds the tenant's bucket empty.
        let r = get(&keys[2]).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
        assert!(r.body["error"]["message"].as_str().unwrap().contains("2 requests per second"), "{}", r.body);
        // Another tenant and the operator are untouched.
        let other_url = format!("/v1/tenants/{other}");
        assert_eq!(app.call("GET", &other_url, Some(&other_key), None).await.0, StatusCode::OK);
        assert_eq!(app.call("GET", &url, Some(TOKEN), None).await.0, StatusCode::OK);
        assert_eq!(hits(&app, "requests_per_second_per_credential"), "1");
        assert_eq!(hits(&app, "requests_per_second"), "1");
        // Buckets that are full again are forgotten: what a tenant minting users or
        // keys leaves behind does not stay in memory.
        assert!(app.state.quotas.buckets() >= 4);
        // (A bucket is forgotten one emission interval after it is full: 3 s here.)
        tokio::time::sleep(Duration::from_millis(3100)).await;
        app.state.quotas.prune();
        assert_eq!(app.state.quotas.buckets(), 0);
    });
}

/// A payload of one row holding `bytes` random bytes (incompressible), from a new
/// device: `(site, payload)`.
fn random_payload(bytes: usize) -> (String, Vec<u8>) {
    support::device_payload(
        SQL,
        &["notes"],
        &format!("INSERT INTO notes VALUES (hex(randomblob(8)), randomblob({bytes}))"),
    )
}

#[tokio::test]
async fn transfer_past_the_days_quota_is_refused_until_the_next_day_on_every_node() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let db = app.database(&t, "d", SQL).await;
        let (_, key) = app.key(&t, &["sync"]).await;
        set(&app, &t, TOKEN, json!({ "transfer_mb_per_day": 1 })).await;
        // Two uploads of 600 kB: the day's mebibyte is used up.
        for _ in 0..2 {
            let (site, payload) = random_payload(600_000);
            let r = app.upload(&db, &key, &site, payload).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        }
        let (small, payload) = random_payload(10);
        let r = app.upload(&db, &key, &small, payload).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("transfer_quota_exceeded")),
            "{}",
            r.body
        );
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=86_400).contains(&retry), "until the next UTC day: {retry}");
        let download = format!("/v1/sync/{db}/changes?site={}&after=0", site(1));
        let (s, v) = app.call("GET", &download, Some(&key), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("transfer_quota_exceeded")));
        // What a device may still ask costs no transfer.
        let (s, _) = app.call("GET", &format!("/v1/sync/{db}/status?site={}", site(1)), Some(&key), None).await;
        assert_eq!(s, StatusCode::OK);
        // The operator reads what was used; another node, once this one flushed its
        // usage, refuses as well.
        let (_, v) = app.call("GET", &format!("/v1/tenants/{t}/quotas"), Some(TOKEN), None).await;
        assert!(v["used"]["transfer_bytes_today"].as_u64().unwrap() >= 1_200_000, "{v}");
        app.state.usage.flush(&app.state.control).await.unwrap();
        let node = support::state_on(app.state.control.clone(), app.dir.path(), "http://test", Limits::default(), None);
        let r = TestApp { app: cloudsync_api::router(node.clone()), state: node, dir: tempfile::tempdir().unwrap() };
        let (s, v) = r.call("GET", &download, Some(&key), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("transfer_quota_exceeded")));
        // Raised, devices go on at once on the node where it was raised.
        set(&app, &t, TOKEN, json!({ "transfer_mb_per_day": 10 })).await;
        assert_eq!(app.call("GET", &download, Some(&key), None).await.0, StatusCode::NO_CONTENT, "nothing applied yet");
        assert_eq!(hits(&app, "transfer_mb_per_day"), "2");
    });
}

#[tokio::test]
async fn uploads_past_the_storage_quota_are_refused_and_nothing_is_kept() {
    on_both!(|app| {
        let (_stop, _workers) = support::workers(&app.state, 1);
        let t = app.tenant("t").await;
        let db = app.database(&t, "d", SQL).await;
        let (_, key) = app.key(&t, &["sync"]).await;
        set(&app, &t, TOKEN, json!({ "storage_mb": 1 })).await;
        // Two uploads of 700 kB, both taken (storage is measured at each refresh) and
        // applied.
        let mut sites = vec![];
        for _ in 0..2 {
            let (site, payload) = random_payload(700_000);
            let r = app.upload(&db, &key, &site, payload).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            sites.push(site);
        }
        for site in &sites {
            let status = format!("/v1/sync/{db}/status?site={site}");
            loop {
                let (_, v) = app.call("GET", &status, Some(&key), None).await;
                assert_eq!(v["device"]["failures"], json!([]), "{v}");
                if v["device"]["pending"] == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The next refresh finds the database past the quota.
        app.state.quotas.forget(&cloudsync_service::ids::TenantId::parse(&t).unwrap());
        let (_, v) = app.call("GET", &format!("/v1/tenants/{t}/quotas"), Some(TOKEN), None).await;
        assert!(v["used"]["storage_bytes"].as_u64().unwrap() > 1 << 20, "{v}");
        let (site2, payload) = random_payload(10);
        let r = app.upload(&db, &key, &site2, payload).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, Some("storage_quota_exceeded")),
            "{}",
            r.body
        );
        let (_, v) = app.call("GET", &format!("/v1/sync/{db}/status?site={site2}"), Some(&key), None).await;
        assert_eq!((v["device"]["accepted"].clone(), v["device"]["pending"].clone()), (json!(null), json!(0)), "{v}");
        // Reads go on; a raised quota takes uploads again.
        let download = format!("/v1/sync/{db}/changes?site={site2}&after=0");
        assert_eq!(app.call("GET", &download, Some(&key), None).await.0, StatusCode::OK);
        set(&app, &t, TOKEN, json!({ "storage_mb": 0 })).await;
        let (site3, payload) = random_payload(10);
        assert_eq!(app.upload(&db, &key, &site3, payload).await.status, StatusCode::ACCEPTED);
        assert_eq!(hits(&app, "storage_mb"), "1");
    });
}
