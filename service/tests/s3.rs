//! The S3 payload store against a real S3-compatible server over HTTP on loopback:
//! `s3s-fs`, run in-process, which checks SigV4 signatures.

mod s3_server;

use std::time::Duration;

use cloudsync_service::payloads::{Op, PayloadStore, S3Config, S3Store};
use cloudsync_service::Error;

const ACCESS: &str = "AKIACLOUDSYNCTEST";
const SECRET: &str = "cloudsync-test-secret-key";

fn server(root: &std::path::Path) -> String {
    s3_server::s3_server(root, ACCESS, SECRET)
}

fn store(endpoint: &str, secret: &str) -> S3Store {
    S3Store::new(S3Config {
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        bucket: "payloads".into(),
        prefix: "cloudsync".into(),
        access_key: ACCESS.into(),
        secret_key: secret.into(),
        path_style: true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_roundtrip_presign_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = server(dir.path());
    let s = store(&endpoint, SECRET);
    s.check().await.unwrap();

    s.put("db/site/one.csyn", b"payload one".to_vec()).await.unwrap();
    assert_eq!(s.get("db/site/one.csyn").await.unwrap(), b"payload one");
    assert!(matches!(s.get("db/site/missing.csyn").await, Err(Error::NotFound { .. })));
    assert!(s.put("../escape", vec![]).await.is_err());

    // Presigned URLs work with a plain HTTP client and nothing else.
    let body = b"uploaded through a presigned URL";
    let put_url =
        s.presign("db/site/two.csyn", Op::Put { len: body.len() as u64 }, Duration::from_secs(300)).await.unwrap();
    // The length is part of the signature: a longer body is refused.
    let longer = put_url.clone();
    let status = tokio::task::spawn_blocking(move || match ureq::put(&longer).send(&[0u8; 64][..]) {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(c)) => c,
        Err(e) => panic!("{e}"),
    })
    .await
    .unwrap();
    assert_eq!(status, 403);
    let status = tokio::task::spawn_blocking(move || ureq::put(&put_url).send(&body[..]).map(|r| r.status().as_u16()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(s.get("db/site/two.csyn").await.unwrap(), b"uploaded through a presigned URL");
    let get_url = s.presign("db/site/two.csyn", Op::Get, Duration::from_secs(300)).await.unwrap();
    let body =
        tokio::task::spawn_blocking(move || ureq::get(&get_url).call().unwrap().body_mut().read_to_vec().unwrap())
            .await
            .unwrap();
    assert_eq!(body, b"uploaded through a presigned URL");
    // A presigned URL does not grant another key.
    let tampered =
        s.presign("db/site/two.csyn", Op::Get, Duration::from_secs(300)).await.unwrap().replace("two.csyn", "one.csyn");
    let code = tokio::task::spawn_blocking(move || match ureq::get(&tampered).call() {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(c)) => c,
        Err(e) => panic!("{e}"),
    })
    .await
    .unwrap();
    assert_eq!(code, 403);

    s.delete("db/site/one.csyn").await.unwrap();
    assert!(matches!(s.get("db/site/one.csyn").await, Err(Error::NotFound { .. })));
    // Retention: everything older than zero seconds goes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.expire(Duration::from_secs(0)).await.unwrap(), 1);
    assert!(matches!(s.get("db/site/two.csyn").await, Err(Error::NotFound { .. })));
    // Deleting a database's payloads removes its prefix only (`db/` is not `db2/`).
    for key in ["db/a/1.csyn", "db/b/2.csyn", "db2/a/3.csyn"] {
        s.put(key, b"x".to_vec()).await.unwrap();
    }
    assert_eq!(s.delete_prefix("db").await.unwrap(), 2);
    assert_eq!(s.get("db2/a/3.csyn").await.unwrap(), b"x");
    assert!(s.delete_prefix("../db").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = server(dir.path());
    let bad = store(&endpoint, "not-the-secret");
    let e = bad.put("db/site/x.csyn", b"x".to_vec()).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("S3 put") && msg.to_lowercase().contains("signature"), "{msg}");
    assert!(e.retryable(), "a store failure is retried by the queue");
    assert!(bad.check().await.is_err());
    // Nothing was written.
    assert!(matches!(store(&endpoint, SECRET).get("db/site/x.csyn").await, Err(Error::NotFound { .. })));
}
