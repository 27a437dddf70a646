//! Every control-plane test runs against both engines: a SQLite file and a fresh
//! PostgreSQL database on the server `cargo xtask test` starts
//! (`CLOUDSYNC_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(dead_code)]

use cloudsync_service::control::ControlPlane;
use sqlx::Executor;

/// A control plane under test, and what to clean up afterwards.
pub struct TestStore {
    pub name: &'static str,
    pub cp: ControlPlane,
    /// The store's URL (to open a second pool on it).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestStore {
    /// Drops the PostgreSQL test database (call at the end of a test).
    pub async fn finish(self) {
        if let Some((admin, db)) = &self.pg {
            self.cp.close().await;
            if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await {
                let _ = c.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))).await;
            }
        }
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("CLOUDSYNC_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh store of each engine.
pub async fn stores() -> Vec<TestStore> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.path().join("control.sqlite").display());
    let sqlite = ControlPlane::open(&sqlite_url).await.unwrap();
    let admin = pg_admin_url();
    let db = format!("cs_test_{}", uuid::Uuid::now_v7().simple());
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin} ({e}); run the tests with `cargo xtask test`, which starts it")
    });
    c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\""))).await.unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{db}", &admin[..i]),
        None => panic!("bad PostgreSQL URL {admin}"),
    };
    let pg = ControlPlane::open(&url).await.unwrap();
    vec![
        TestStore { name: "sqlite", cp: sqlite, url: sqlite_url, _dir: Some(dir), pg: None },
        TestStore { name: "postgres", cp: pg, url, _dir: None, pg: Some((admin, db)) },
    ]
}

/// The pool behind a store, for tests that inspect what is stored.
pub fn pool(cp: &ControlPlane) -> sqlx::AnyPool {
    cp.pool().clone()
}
