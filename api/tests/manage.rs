//! Tenant management through the REST API, on both control-plane engines: lifecycle of
//! tenants, databases and keys, identity settings, devices, jobs, usage, download-only
//! tables and rate limiting.

mod support;

use axum::http::StatusCode;
use cloudsync_api::Limits;
use serde_json::json;
use support::{device_payload, hs256, now_s, TestApp, TOKEN};

const SQL: &str = "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT); \
                   CREATE TABLE prices (id TEXT PRIMARY KEY NOT NULL, cents INTEGER)";
const SECRET: &str = "manage-test-hs256-secret-0123456789abcdef";

/// Runs `body` on a fresh application over each engine.
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

async fn flush(app: &TestApp) {
    app.state.usage.flush(&app.state.control).await.unwrap();
}

#[tokio::test]
async fn tenants_list_rename_suspend_and_delete_with_their_data() {
    on_both!(|app| {
        let ids = [app.tenant("t1").await, app.tenant("t2").await, app.tenant("t3").await];
        // Pagination: two pages of two and one, in creation order, no repeats.
        let (s, p1) = app.call("GET", "/v1/tenants?limit=2", Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::OK, "{p1}");
        let cursor = p1["next_cursor"].as_str().unwrap();
        let (_, p2) = app.call("GET", &format!("/v1/tenants?limit=2&cursor={cursor}"), Some(TOKEN), None).await;
        let seen: Vec<&str> = p1["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(p2["items"].as_array().unwrap())
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(seen, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(p2["next_cursor"].is_null());
        for bad in ["limit=0", "limit=501", "cursor=%25%25", "limit=x"] {
            let (s, v) = app.call("GET", &format!("/v1/tenants?{bad}"), Some(TOKEN), None).await;
            assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
        }
        let t = &ids[0];
        let (s, v) =
            app.call("PATCH", &format!("/v1/tenants/{t}"), Some(TOKEN), Some(json!({ "name": "renamed" }))).await;
        assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("renamed")));
        // Suspension refuses the tenant's keys with a precise code, and resumes.
        let db = app.database(t, "d", SQL).await;
        let (_, key) = app.key(t, &["admin"]).await;
        let dbs = format!("/v1/tenants/{t}/databases");
        assert_eq!(app.call("GET", &dbs, Some(&key), None).await.0, StatusCode::OK);
        let (_, v) = app.call("POST", &format!("/v1/tenants/{t}/suspend"), Some(TOKEN), None).await;
        assert_eq!(v["suspended"], true);
        let (s, v) = app.call("GET", &dbs, Some(&key), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("tenant_suspended")));
        app.call("POST", &format!("/v1/tenants/{t}/resume"), Some(TOKEN), None).await;
        assert_eq!(app.call("GET", &dbs, Some(&key), None).await.0, StatusCode::OK);
        // Deletion needs the id repeated, and removes the data.
        let (site, payload) = device_payload(SQL, &["notes"], "INSERT INTO notes VALUES ('n1', 'hello')");
        let (_, sync) = app.key(t, &["sync"]).await;
        assert_eq!(app.upload(&db, &sync, &site, payload).await.status, StatusCode::ACCEPTED);
        let file = app.dir.path().join("databases").join(format!("{db}.sqlite"));
        let objects = app.dir.path().join("payloads").join(&db);
        assert!(file.exists() && objects.exists());
        let (s, v) = app.call("DELETE", &format!("/v1/tenants/{t}"), Some(TOKEN), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("confirmation_required")));
        let (s, v) = app.call("DELETE", &format!("/v1/tenants/{t}?confirm={}", ids[1]), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "confirming with another id does not delete: {v}");
        let (s, v) = app.call("DELETE", &format!("/v1/tenants/{t}?confirm={t}"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["databases"].as_u64(), v["payload_objects"].as_u64()), (Some(1), Some(1)));
        assert!(!file.exists() && !objects.exists());
        assert_eq!(app.call("GET", &format!("/v1/tenants/{t}"), Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(app.call("GET", &dbs, Some(&key), None).await.0, StatusCode::UNAUTHORIZED);
        let (_, all) = app.call("GET", "/v1/tenants", Some(TOKEN), None).await;
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        // The other tenants are untouched.
        assert_eq!(app.call("GET", &format!("/v1/tenants/{}", ids[1]), Some(TOKEN), None).await.0, StatusCode::OK);
    });
}

#[tokio::test]
async fn databases_update_settings_and_download_only_tables() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let db = app.database(&t, "main", SQL).await;
        app.database(&t, "other", SQL).await;
        let url = format!("/v1/tenants/{t}/databases/{db}");
        let (s, v) = app.call("PATCH", &url, Some(TOKEN), Some(json!({ "name": "other" }))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{v}");
        let (s, v) = app
            .call(
                "PATCH",
                &url,
                Some(TOKEN),
                Some(json!({ "settings": { "tables": { "prices": { "direction": "sideways" } } } })),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let settings = json!({ "tables": { "prices": { "direction": "download_only" } } });
        let (s, v) = app.call("PATCH", &url, Some(TOKEN), Some(json!({ "name": "main2", "settings": settings }))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["name"].as_str(), &v["settings"]["tables"]), (Some("main2"), &settings["tables"]));
        // Roles devices act as: the defaults (docs/rls.md).
        assert_eq!(
            v["settings"]["roles"],
            json!({ "allowed": ["authenticated"], "default": "authenticated", "api_key": "authenticated" })
        );
        let (_, got) = app.call("GET", &url, Some(TOKEN), None).await;
        assert_eq!(got["settings"], v["settings"]);
        // A default role outside the allow-list, or a name PostgreSQL could not hold, is refused.
        for roles in [json!({ "allowed": ["a"], "default": "b" }), json!({ "allowed": ["x".repeat(64)] })] {
            let (s, v) = app.call("PATCH", &url, Some(TOKEN), Some(json!({ "settings": { "roles": roles } }))).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        }
        let (_, list) = app.call("GET", &format!("/v1/tenants/{t}/databases"), Some(TOKEN), None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        // Devices cannot change a download-only table; other tables sync.
        let (_, sync) = app.key(&t, &["sync"]).await;
        let (site, payload) = device_payload(SQL, &["prices"], "INSERT INTO prices VALUES ('p', 100)");
        let r = app.upload(&db, &sync, &site, payload).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("'prices' is download-only"));
        let (site, payload) = device_payload(SQL, &["notes"], "INSERT INTO notes VALUES ('n', 'x')");
        assert_eq!(app.upload(&db, &sync, &site, payload).await.status, StatusCode::ACCEPTED);
        // Deleting: confirmation, then gone.
        let (s, _) = app.call("DELETE", &url, Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = app.call("DELETE", &format!("{url}?confirm={db}"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(app.call("GET", &url, Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);
        let r = app.upload(&db, &sync, &site, vec![1, 2, 3]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    });
}

#[tokio::test]
async fn keys_are_listed_without_secrets_revoked_and_record_their_use() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let (id, secret) = app.key(&t, &["sync", "schema"]).await;
        let keys = format!("/v1/tenants/{t}/api-keys");
        let (_, list) = app.call("GET", &keys, Some(TOKEN), None).await;
        let text = list.to_string();
        assert!(!text.contains(&secret) && !text.contains("\"key\"") && !text.contains("hash"), "{text}");
        assert_eq!(list["items"][0]["scopes"], json!(["schema", "sync"]));
        assert!(list["items"][0]["last_used_at"].is_null());
        let db = app.database(&t, "d", SQL).await;
        let status = format!("/v1/sync/{db}/status?site=0102030405060708090a0b0c0d0e0f10");
        assert_eq!(app.call("GET", &status, Some(&secret), None).await.0, StatusCode::OK);
        let (_, k) = app.call("GET", &format!("{keys}/{id}"), Some(TOKEN), None).await;
        assert!(k["last_used_at"].as_i64().is_some(), "{k}");
        let (s, k) = app.call("DELETE", &format!("{keys}/{id}"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(k["revoked_at"].as_i64().is_some());
        assert_eq!(app.call("GET", &status, Some(&secret), None).await.0, StatusCode::UNAUTHORIZED);
        let past = support::now_s() * 1000 - 1;
        let (s, v) = app
            .call("POST", &keys, Some(TOKEN), Some(json!({ "name": "old", "scopes": ["sync"], "expires_at": past })))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _) = app.call("GET", &format!("{keys}/not-an-id"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[tokio::test]
async fn identity_settings_are_validated_and_pin_the_algorithm() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let url = format!("/v1/tenants/{t}/identity");
        assert_eq!(app.call("GET", &url, Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);
        let base = json!({ "issuer": "https://idp", "audience": "cloudsync" });
        let with = |extra: serde_json::Value| {
            let mut b = base.clone();
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b
        };
        for (bad, why) in [
            (with(json!({ "method": "hs256", "secret": "short" })), "short secret"),
            (with(json!({ "method": "rs256", "public_key": "not a key" })), "bad PEM"),
            (with(json!({ "method": "hs256", "secret": SECRET, "jwks_url": "https://x" })), "field of another method"),
            (with(json!({ "method": "jwks", "jwks_url": "ftp://x" })), "not http"),
            (with(json!({ "method": "jwks", "jwks_url": "https://u:p@x/" })), "credentials in URL"),
            (with(json!({ "method": "jwks", "jwks_url": "https://x/", "algorithm": "HS256" })), "HS256 via JWKS"),
            (with(json!({ "method": "none" })), "alg none"),
            (json!({ "method": "hs256", "secret": SECRET, "issuer": "", "audience": "a" }), "empty issuer"),
            (with(json!({ "method": "hs256", "secret": SECRET, "leeway_s": 3600 })), "leeway too large"),
        ] {
            let (s, v) = app.call("PUT", &url, Some(TOKEN), Some(bad)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{why}: {v}");
        }
        // ES256 with a public key: tokens it signs work; an HS256 token signed with
        // the public key's PEM as the secret (the classic confusion) does not.
        let signing = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let public_pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        let private_pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let (s, v) = app
            .call("PUT", &url, Some(TOKEN), Some(with(json!({ "method": "es256", "public_key": public_pem }))))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["algorithm"], "ES256");
        let db = app.database(&t, "d", SQL).await;
        let status = format!("/v1/sync/{db}/status?site=0102030405060708090a0b0c0d0e0f10");
        let claims = json!({ "sub": "u1", "iss": "https://idp", "aud": "cloudsync", "exp": now_s() + 600 });
        let es = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(app.call("GET", &status, Some(&es), None).await.0, StatusCode::OK);
        let confused = hs256(&public_pem, claims.clone());
        let (s, v) = app.call("GET", &status, Some(&confused), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("not the tenant's ES256"), "{v}");
        // Wrong audience, not yet valid, missing exp.
        for (c, why) in [
            (json!({ "sub": "u1", "iss": "https://idp", "aud": "other", "exp": now_s() + 600 }), "audience"),
            (
                json!({ "sub": "u1", "iss": "https://idp", "aud": "cloudsync", "exp": now_s() + 600, "nbf": now_s() + 300 }),
                "nbf",
            ),
            (json!({ "sub": "u1", "iss": "https://idp", "aud": "cloudsync" }), "no exp"),
            (json!({ "iss": "https://idp", "aud": "cloudsync", "exp": now_s() + 600 }), "no user id"),
        ] {
            let tok = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
                &c,
                &jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
            )
            .unwrap();
            assert_eq!(app.call("GET", &status, Some(&tok), None).await.0, StatusCode::UNAUTHORIZED, "{why}");
        }
        // HS256: the secret is sealed at rest and never shown.
        let (s, v) = app
            .call(
                "PUT",
                &url,
                Some(TOKEN),
                Some(with(json!({ "method": "hs256", "secret": SECRET, "user_claim": "uid" }))),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(!v.to_string().contains(SECRET));
        let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM identities")
            .fetch_one(&support::common::pool(&app.state.control))
            .await
            .unwrap();
        assert!(!stored.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is not stored in clear");
        // The same user as above (the site id is bound to u1), named by another claim.
        let tok = hs256(SECRET, json!({ "uid": "u1", "iss": "https://idp", "aud": "cloudsync", "exp": now_s() + 600 }));
        assert_eq!(app.call("GET", &status, Some(&tok), None).await.0, StatusCode::OK);
        // A valid token of a suspended tenant is refused with the precise code.
        app.call("POST", &format!("/v1/tenants/{t}/suspend"), Some(TOKEN), None).await;
        let (s, v) = app.call("GET", &status, Some(&tok), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("tenant_suspended")));
        app.call("POST", &format!("/v1/tenants/{t}/resume"), Some(TOKEN), None).await;
        assert_eq!(app.call("GET", &status, Some(&tok), None).await.0, StatusCode::OK);
        // A stored HS256 setting that lost its secret never verifies against an empty key.
        sqlx::query("UPDATE identities SET secret = NULL")
            .execute(&support::common::pool(&app.state.control))
            .await
            .unwrap();
        let empty = hs256("", json!({ "uid": "u1", "iss": "https://idp", "aud": "cloudsync", "exp": now_s() + 600 }));
        assert_eq!(app.call("GET", &status, Some(&empty), None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(app.call("DELETE", &url, Some(TOKEN), None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(app.call("GET", &status, Some(&tok), None).await.0, StatusCode::UNAUTHORIZED);
    });
}

#[tokio::test]
async fn devices_jobs_and_usage_are_accounted_and_devices_can_be_blocked() {
    on_both!(|app| {
        let t = app.tenant("t").await;
        let db = app.database(&t, "d", SQL).await;
        let (_, sync) = app.key(&t, &["sync"]).await;
        let (site, payload) =
            device_payload(SQL, &["notes"], "INSERT INTO notes VALUES ('a', 'x'); INSERT INTO notes VALUES ('b', 'y')");
        let len = i64::try_from(payload.len()).unwrap();
        let r = app.upload(&db, &sync, &site, payload).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let job = r.body["job"].as_i64().unwrap();
        let changes = r.body["changes"].as_i64().unwrap();
        assert!(changes >= 2, "{}", r.body);
        // A device with a JWT records its user id.
        app.call(
            "PUT",
            &format!("/v1/tenants/{t}/identity"),
            Some(TOKEN),
            Some(json!({ "method": "hs256", "secret": SECRET, "issuer": "i", "audience": "a" })),
        )
        .await;
        let jwt = hs256(SECRET, json!({ "sub": "alice", "iss": "i", "aud": "a", "exp": now_s() + 600 }));
        let other = "00000000000000000000000000000001";
        let (s, v) = app.call("GET", &format!("/v1/sync/{db}/changes?site={other}&after=0.0"), Some(&jwt), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        flush(&app).await;
        let base = format!("/v1/tenants/{t}/databases/{db}");
        let (_, devices) = app.call("GET", &format!("{base}/devices"), Some(TOKEN), None).await;
        let items = devices["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{devices}");
        let uploader = items.iter().find(|d| d["site_id"] == site.as_str()).unwrap();
        assert_eq!(
            (uploader["bytes_in"].as_i64(), uploader["changes_in"].as_i64()),
            (Some(len), Some(changes)),
            "{uploader}"
        );
        let reader = items.iter().find(|d| d["site_id"] == other).unwrap();
        assert_eq!((reader["user_id"].as_str(), reader["confirmed_download"].as_str()), (Some("alice"), Some("0.0")));
        // Usage: the tenant's and the database's.
        for url in [format!("/v1/tenants/{t}/usage"), format!("{base}/usage")] {
            let (_, u) = app.call("GET", &url, Some(TOKEN), None).await;
            assert_eq!((u["requests"].as_i64(), u["bytes_in"].as_i64()), (Some(2), Some(len)), "{u}");
            assert_eq!((u["changes_in"].as_i64(), u["active_devices"].as_i64()), (Some(changes), Some(2)), "{u}");
        }
        let (_, u) = app.call("GET", &format!("/v1/tenants/{t}/usage?from=0&to=1000"), Some(TOKEN), None).await;
        assert_eq!(u["requests"], 0, "{u}");
        let (s, _) = app.call("GET", &format!("/v1/tenants/{t}/usage?from=10&to=5"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // Jobs: listed by state; a pending job can be discarded, not twice.
        let (_, jobs) = app.call("GET", &format!("{base}/jobs?state=pending"), Some(TOKEN), None).await;
        assert_eq!(jobs["items"][0]["id"].as_i64(), Some(job), "{jobs}");
        let (_, none) = app.call("GET", &format!("{base}/jobs?state=dead"), Some(TOKEN), None).await;
        assert!(none["items"].as_array().unwrap().is_empty());
        let (s, _) = app.call("GET", &format!("{base}/jobs?state=bogus"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, j) = app.call("POST", &format!("{base}/jobs/{job}/discard"), Some(TOKEN), None).await;
        assert_eq!((s, j["state"].as_str()), (StatusCode::OK, Some("discarded")));
        let (s, v) = app.call("POST", &format!("{base}/jobs/{job}/retry"), Some(TOKEN), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
        assert_eq!(app.call("GET", &format!("{base}/jobs/999999"), Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);
        // Blocking: refused with a precise code until unblocked.
        let status = format!("/v1/sync/{db}/status?site={site}");
        let (s, d) = app
            .call("POST", &format!("{base}/devices/{site}/block"), Some(TOKEN), Some(json!({ "reason": "lost phone" })))
            .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert!(d["blocked_at"].as_i64().is_some());
        let (s, v) = app.call("GET", &status, Some(&sync), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("device_blocked")));
        assert!(v["error"]["message"].as_str().unwrap().contains("lost phone"));
        app.call("POST", &format!("{base}/devices/{site}/unblock"), Some(TOKEN), None).await;
        assert_eq!(app.call("GET", &status, Some(&sync), None).await.0, StatusCode::OK);
        let (s, _) = app.call("GET", &format!("{base}/devices/zz"), Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    });
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_credential() {
    let dir = tempfile::tempdir().unwrap();
    let cp = cloudsync_service::control::ControlPlane::open_sqlite(&dir.path().join("c.sqlite")).await.unwrap();
    let app = support::app_on(cp, Limits::default(), Some((1, 2)));
    let t = app.tenant("t").await;
    let (_, a) = app.key(&t, &["admin"]).await;
    let (_, b) = app.key(&t, &["admin"]).await;
    let url = format!("/v1/tenants/{t}");
    assert_eq!(app.call("GET", &url, Some(&a), None).await.0, StatusCode::OK);
    assert_eq!(app.call("GET", &url, Some(&a), None).await.0, StatusCode::OK);
    let r = app.request("GET", &url, Some(&format!("Bearer {a}")), None, &[]).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Another key has its own budget; the operator is not limited.
    assert_eq!(app.call("GET", &url, Some(&b), None).await.0, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(app.call("GET", &url, Some(TOKEN), None).await.0, StatusCode::OK);
    }
}
