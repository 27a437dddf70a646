//! The dashboard in-process: who may sign in and see what, CSRF on every form,
//! cookie and security headers. (The browser test drives the main flows.)

#[path = "../../api/tests/support/mod.rs"]
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloudsync_api::Limits;
use cloudsync_service::control::ControlPlane;
use support::{Resp, TestApp, TOKEN};

async fn app() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open_sqlite(&dir.path().join("control.sqlite")).await.unwrap();
    let mut app = support::app_on(control, Limits::default(), None);
    app.app = cloudsync_api::router_with(app.state.clone(), cloudsync_dashboard::router(app.state.clone()));
    (app, dir)
}

fn html(r: &Resp) -> String {
    String::from_utf8_lossy(&r.raw).into_owned()
}

fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

/// The value of the hidden `csrf` field of a page.
fn csrf_field(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().unwrap().to_string()
}

async fn get(app: &TestApp, uri: &str, cookie: Option<&str>) -> Resp {
    let mut req = Request::builder().uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

async fn post(app: &TestApp, uri: &str, cookie: Option<&str>, form: &str) -> Resp {
    let mut req =
        Request::builder().method("POST").uri(uri).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    app.send(req.body(Body::from(form.to_string())).unwrap()).await
}

/// Signs in with `token`; returns the session cookie (`name=value`) and the CSRF token.
async fn sign_in(app: &TestApp, token: &str) -> Result<(String, String), Resp> {
    let form = get(app, "/admin/login", None).await;
    let login = cookie_value(&set_cookie(&form, "cloudsync_login").unwrap());
    let field = csrf_field(&html(&form));
    assert_eq!(login, field, "the sign-in form's double-submit token");
    let body = format!(
        "csrf={field}&token={}&next=%2Fadmin",
        form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let r = post(app, "/admin/login", Some(&format!("cloudsync_login={login}")), &body).await;
    if r.status != StatusCode::SEE_OTHER {
        return Err(r);
    }
    let session = set_cookie(&r, "cloudsync_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(session.contains(attr), "session cookie lacks {attr}: {session}");
    }
    let cookie = format!("cloudsync_session={}", cookie_value(&session));
    let page = get(app, "/admin", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    Ok((cookie.clone(), csrf_field(&html(&page))))
}

#[tokio::test]
async fn sign_in_is_refused_without_a_valid_admin_credential() {
    let (app, _dir) = app().await;
    let tenant = app.tenant("acme").await;
    let (_, sync_key) = app.key(&tenant, &["sync"]).await;

    // Signed out: pages redirect to the sign-in form, forms are refused.
    let r = get(&app, "/admin/tenants", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/admin/login?next=%2Fadmin%2Ftenants");
    assert_eq!(post(&app, "/admin/tenants", None, "name=x").await.status, StatusCode::UNAUTHORIZED);

    let wrong = sign_in(&app, "csa_not_the_token").await.unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(html(&wrong).contains("Invalid, expired or revoked token"));
    let sync_only = sign_in(&app, &sync_key).await.unwrap_err();
    assert_eq!(sync_only.status, StatusCode::FORBIDDEN);
    assert!(html(&sync_only).contains("lacks the admin scope"));

    // The sign-in form itself needs its double-submit token.
    let r = post(&app, "/admin/login", None, &format!("token={TOKEN}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "cloudsync_session").is_none());

    // A redirect after sign-in never leaves the dashboard.
    let form = get(&app, "/admin/login?next=https://evil.example/", None).await;
    assert!(!html(&form).contains("evil.example"));
}

#[tokio::test]
async fn every_form_needs_the_session_csrf_token() {
    let (app, _dir) = app().await;
    let (cookie, csrf) = sign_in(&app, TOKEN).await.unwrap();
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);").await;
    let (key, _) = app.key(&tenant, &["sync"]).await;
    let site = "0123456789abcdef0123456789abcdef";
    let base = format!("/admin/tenants/{tenant}");
    let forms = [
        "/admin/logout".to_string(),
        "/admin/tenants".into(),
        format!("{base}/databases"),
        format!("{base}/keys"),
        format!("{base}/keys/{key}/revoke"),
        format!("{base}/identity"),
        format!("{base}/quotas"),
        format!("{base}/databases/{db}/schema"),
        format!("{base}/databases/{db}/devices/{site}/block"),
        format!("{base}/databases/{db}/devices/{site}/unblock"),
        format!("{base}/databases/{db}/devices/{site}/release"),
        format!("{base}/databases/{db}/jobs/1/retry"),
        format!("{base}/databases/{db}/jobs/1/discard"),
    ];
    for uri in &forms {
        for body in ["name=x".to_string(), "csrf=wrong&name=x".into(), format!("csrf={csrf}x&name=x")] {
            let r = post(&app, uri, Some(&cookie), &body).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri} with {body}: {}", html(&r));
        }
    }
    // Nothing was changed, and the session still works with its token.
    let (_, tenants) = app.call("GET", "/v1/tenants", Some(TOKEN), None).await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1);
    let (_, k) = app.call("GET", &format!("/v1/tenants/{tenant}/api-keys/{key}"), Some(TOKEN), None).await;
    assert!(k["revoked_at"].is_null());
    let r = post(&app, "/admin/tenants", Some(&cookie), &format!("csrf={csrf}&name=second")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));

    // Pages are not cached, framed or scripted.
    let page = get(&app, &base, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(!html(&page).contains("<script"));
    assert!(page.headers.contains_key("x-request-id"));

    // Signing out ends the session everywhere.
    let r = post(&app, "/admin/logout", Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(get(&app, "/admin", Some(&cookie)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_tenant_admin_sees_only_their_tenant_until_the_key_is_revoked() {
    let (app, _dir) = app().await;
    let mine = app.tenant("mine").await;
    let other = app.tenant("other").await;
    let other_db = app.database(&other, "secret-db", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);").await;
    let (key_id, admin_key) = app.key(&mine, &["admin"]).await;
    let (cookie, csrf) = sign_in(&app, &admin_key).await.unwrap();

    let own = get(&app, &format!("/admin/tenants/{mine}"), Some(&cookie)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(html(&own).contains("Tenant mine"));
    let overview = get(&app, "/admin", Some(&cookie)).await;
    assert!(!html(&overview).contains("other") && !html(&overview).contains(&other));

    // Another tenant's pages and forms: not found, and nothing of it shown.
    for uri in [format!("/admin/tenants/{other}"), format!("/admin/tenants/{other}/databases/{other_db}")] {
        let r = get(&app, &uri, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!html(&r).contains("secret-db"));
    }
    let r =
        post(&app, &format!("/admin/tenants/{other}/databases"), Some(&cookie), &format!("csrf={csrf}&name=x")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Operator-only pages.
    assert_eq!(get(&app, "/admin/tenants", Some(&cookie)).await.status, StatusCode::FORBIDDEN);
    let r = post(&app, "/admin/tenants", Some(&cookie), &format!("csrf={csrf}&name=x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Validation messages come back next to the field, with the page.
    let r = post(&app, &format!("/admin/tenants/{mine}/databases"), Some(&cookie), &format!("csrf={csrf}&name=")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&r).contains(r#"id="db-name-error""#), "{}", html(&r));

    // Revoking the key ends the session.
    let (s, _) = app.call("DELETE", &format!("/v1/tenants/{mine}/api-keys/{key_id}"), Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(get(&app, "/admin", Some(&cookie)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_job_page_lists_the_rows_the_database_refused() {
    use cloudsync_protocol::RefusedRow;
    use cloudsync_service::actor::Actor;
    use cloudsync_service::control::jobs::NewJob;
    use cloudsync_service::ids::{DatabaseId, SiteHex};
    let (app, _dir) = app().await;
    let (cookie, _) = sign_in(&app, TOKEN).await.unwrap();
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);").await;
    let cp = &app.state.control;
    let job = cp
        .enqueue(NewJob {
            database_id: DatabaseId::parse(&db).unwrap(),
            site: SiteHex::parse("0123456789abcdef0123456789abcdef").unwrap(),
            object_key: "k".into(),
            bytes: 1,
            from_cursor: "0.0".into(),
            to_cursor: "1.0".into(),
            actor: Actor::default(),
        })
        .await
        .unwrap();
    let claimed = cp.claim("w", std::time::Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    let row = RefusedRow {
        table: "t".into(),
        key: "'x<1>'".into(),
        sqlstate: "42501".into(),
        message: "new row violates row-level security policy for table \"t\"".into(),
    };
    cp.complete(job.id, "w", 0, std::slice::from_ref(&row)).await.unwrap();
    let page = get(&app, &format!("/admin/tenants/{tenant}/databases/{db}/jobs/{}", job.id), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = html(&page);
    assert!(body.contains("Rows refused by the database"), "{body}");
    assert!(
        body.contains("<code>&#x27;x&lt;1&gt;&#x27;</code>") || body.contains("<code>'x&lt;1&gt;'</code>"),
        "{body}"
    );
    assert!(body.contains("42501") && body.contains("row-level security policy"), "{body}");
    // The database's job list says so too.
    let list = html(&get(&app, &format!("/admin/tenants/{tenant}/databases/{db}"), Some(&cookie)).await);
    assert!(list.contains("1 row refused"), "{list}");
}

/// The provisioning form runs the same guard as the API: smuggled statements, file and
/// extension functions and subqueries are refused on the page (422, the reason shown)
/// and nothing is created, in a preview or for real.
#[tokio::test]
async fn the_provisioning_form_refuses_what_the_api_refuses() {
    let (app, _dir) = app().await;
    let (cookie, csrf) = sign_in(&app, TOKEN).await.unwrap();
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);").await;
    let uri = format!("/admin/tenants/{tenant}/databases/{db}/schema");
    for sql in [
        "/*CREATE TABLE*/ ATTACH DATABASE 'control.sqlite' AS cp; CREATE TABLE x (a)",
        "CREATE TABLE leak AS SELECT group_concat(file) FROM pragma_database_list",
        "CREATE TABLE x (id TEXT PRIMARY KEY NOT NULL, v TEXT DEFAULT (readfile('/etc/passwd')))",
        "CREATE TABLE x (id TEXT PRIMARY KEY NOT NULL, v TEXT CHECK (v IN (SELECT name FROM sqlite_master)))",
    ] {
        for action in ["preview", "apply"] {
            let form = format!(
                "csrf={csrf}&action={action}&algos=&sql={}",
                form_urlencoded::byte_serialize(sql.as_bytes()).collect::<String>()
            );
            let r = post(&app, &uri, Some(&cookie), &form).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {}", html(&r));
            assert!(html(&r).contains("id=\"f-sql-error\""), "{sql}");
        }
    }
    let (_, tables) = app.call("GET", &format!("/v1/tenants/{tenant}/databases/{db}/tables"), Some(TOKEN), None).await;
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["t"]);
}

/// The form's *Leave out* field: a malformed choice is refused on the page, and a SQLite
/// backend (which translates nothing) refuses any, keeping what was typed; nothing is
/// created. The page shows the schema version, which a real change counts.
#[tokio::test]
async fn the_provisioning_form_takes_choices_to_leave_out_and_shows_the_schema_version() {
    let (app, _dir) = app().await;
    let (cookie, csrf) = sign_in(&app, TOKEN).await.unwrap();
    let tenant = app.tenant("acme").await;
    let db = app.database(&tenant, "main", "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);").await;
    let page = html(&get(&app, &format!("/admin/tenants/{tenant}/databases/{db}"), Some(&cookie)).await);
    assert!(page.contains("id=\"f-omit\"") && page.contains("<dd id=\"schema-version\">1</dd>"), "{page}");
    let uri = format!("/admin/tenants/{tenant}/databases/{db}/schema");
    let sql = form_urlencoded::byte_serialize(b"CREATE TABLE u (id TEXT PRIMARY KEY NOT NULL)").collect::<String>();
    for (omit, says) in [("u.id", "expected `table.column:kind`"), ("u.id:check", "omit is for PostgreSQL backends")] {
        let form = format!("csrf={csrf}&action=apply&algos=&omit={omit}&sql={sql}");
        let r = post(&app, &uri, Some(&cookie), &form).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{omit}: {}", html(&r));
        assert!(html(&r).contains(says), "{omit}: {}", html(&r));
        assert!(html(&r).contains(&format!("value=\"{omit}\"")), "{omit}: the field keeps what was typed");
    }
    let (_, tables) = app.call("GET", &format!("/v1/tenants/{tenant}/databases/{db}/tables"), Some(TOKEN), None).await;
    assert_eq!(tables["tables"].as_array().unwrap().len(), 1, "{tables}");
    let r = post(&app, &uri, Some(&cookie), &format!("csrf={csrf}&action=apply&algos=&omit=&sql={sql}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    let page = html(&get(&app, &format!("/admin/tenants/{tenant}/databases/{db}"), Some(&cookie)).await);
    assert!(page.contains("<dd id=\"schema-version\">2</dd>"), "{page}");
}

#[tokio::test]
async fn the_operator_sets_a_tenants_quotas_its_admin_only_reads_them() {
    let (app, _dir) = app().await;
    let tenant = app.tenant("acme").await;
    let (cookie, csrf) = sign_in(&app, TOKEN).await.unwrap();
    let page = get(&app, &format!("/admin/tenants/{tenant}"), Some(&cookie)).await;
    assert!(html(&page).contains("Quotas") && html(&page).contains("(the node's default)"), "{}", html(&page));
    let r = post(
        &app,
        &format!("/admin/tenants/{tenant}/quotas"),
        Some(&cookie),
        &format!("csrf={csrf}&databases=3&devices=&long_polls=0&long_polls_per_credential=&transfer_mb_per_day=5"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    let (_, q) = app.call("GET", &format!("/v1/tenants/{tenant}/quotas"), Some(TOKEN), None).await;
    assert_eq!(q["overrides"], serde_json::json!({ "databases": 3, "long_polls": 0, "transfer_mb_per_day": 5 }), "{q}");
    // Every quota has its field, and what the byte quotas use is shown.
    let page = html(&get(&app, &format!("/admin/tenants/{tenant}"), Some(&cookie)).await);
    for label in ["MiB of sync transfer per day (UTC)", "Requests per second per user or key", "Transfer today (UTC)"] {
        assert!(page.contains(label), "{label}: {page}");
    }
    // Not a number: refused, nothing changed.
    let r = post(&app, &format!("/admin/tenants/{tenant}/quotas"), Some(&cookie), &format!("csrf={csrf}&devices=many"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (_, again) = app.call("GET", &format!("/v1/tenants/{tenant}/quotas"), Some(TOKEN), None).await;
    assert_eq!(again, q);

    // The tenant's own admin sees them, without the form, and cannot set them.
    let (_, admin_key) = app.key(&tenant, &["admin"]).await;
    let (cookie, csrf) = sign_in(&app, &admin_key).await.unwrap();
    let page = html(&get(&app, &format!("/admin/tenants/{tenant}"), Some(&cookie)).await);
    assert!(page.contains("(set for this tenant)") && !page.contains("Save quotas"), "{page}");
    let r =
        post(&app, &format!("/admin/tenants/{tenant}/quotas"), Some(&cookie), &format!("csrf={csrf}&databases=999"))
            .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, after) = app.call("GET", &format!("/v1/tenants/{tenant}/quotas"), Some(TOKEN), None).await;
    assert_eq!(after, q);
}
