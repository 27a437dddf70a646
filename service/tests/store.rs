//! The control-plane store itself, on both engines: versioned migrations, and a store
//! without a secrets key refusing to keep an HS256 secret it could not seal.

mod common;

use cloudsync_service::control::identity::{IdentityInput, Method};
use cloudsync_service::control::{latest_version, ControlPlane};
use cloudsync_service::Error;

#[tokio::test]
async fn migrations_are_versioned_and_idempotent() {
    for s in common::stores().await {
        assert_eq!(s.cp.schema_version().await.unwrap(), latest_version(), "{}", s.name);
        assert_eq!(s.cp.migrate().await.unwrap(), 0, "{}: nothing left to apply", s.name);
        let again = ControlPlane::open(&s.url).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), latest_version());
        again.close().await;
        s.finish().await;
    }
}

#[tokio::test]
async fn hs256_secrets_need_a_secrets_key() {
    for s in common::stores().await {
        let t = s.cp.create_tenant("t").await.unwrap();
        let input = IdentityInput {
            method: Method::Hs256,
            secret: Some("x".repeat(40)),
            public_key: None,
            jwks_url: None,
            algorithm: None,
            issuer: "i".into(),
            audience: "a".into(),
            leeway_s: None,
            user_claim: None,
            role_claim: None,
        };
        let err = s.cp.set_identity(&t.id, input, &Default::default()).await.unwrap_err();
        assert!(matches!(&err, Error::Invalid(m) if m.contains("secrets key")), "{}: {err}", s.name);
        s.finish().await;
    }
}

#[tokio::test]
async fn urls_are_checked_and_passwords_redacted() {
    let err = ControlPlane::connect("mysql://u:p@h/db").await.unwrap_err();
    assert!(err.to_string().contains("sqlite:// or postgres://") && !err.to_string().contains(":p@"), "{err}");
    assert_eq!(cloudsync_service::control::redact("postgres://u:secret@h:5432/d"), "postgres://u:***@h:5432/d");
}
