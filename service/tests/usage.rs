//! Device accounting and usage at the store level, on both engines: counters survive
//! a flush, a failed flush keeps them, and counters of deleted databases are dropped.

mod common;

use cloudsync_service::control::devices::{Activity, UsageRecorder};
use cloudsync_service::control::ControlPlane;
use cloudsync_service::ids::{now_ms, SiteHex};
use cloudsync_service::model::BackendConfig;
use cloudsync_service::page::PageRequest;

#[tokio::test]
async fn usage_is_flushed_counted_and_kept_on_failure() {
    for s in common::stores().await {
        eprintln!("-- on {}", s.name);
        let cp = &s.cp;
        let t = cp.create_tenant("t").await.unwrap();
        let db = cp.create_database(&t.id, "d", BackendConfig::Sqlite).await.unwrap();
        let gone = cp.create_database(&t.id, "gone", BackendConfig::Sqlite).await.unwrap();
        let a = SiteHex::parse("0102030405060708090a0b0c0d0e0f10").unwrap();
        let b = SiteHex::parse("1102030405060708090a0b0c0d0e0f10").unwrap();
        let rec = UsageRecorder::default();
        rec.record(&t.id, &db.id, a, Activity { bytes_in: 10, changes_in: 2, ..Activity::default() });
        rec.record(
            &t.id,
            &db.id,
            a,
            Activity { bytes_out: 5, changes_out: 1, download_after: Some("3.0".into()), ..Activity::default() },
        );
        rec.record(&t.id, &db.id, b, Activity { user_id: Some("u".into()), ..Activity::default() });
        rec.record(&t.id, &gone.id, b, Activity::default());
        cp.delete_database_row(&gone.id).await.unwrap();
        assert_eq!(rec.flush(cp).await.unwrap(), 3);
        assert_eq!(rec.flush(cp).await.unwrap(), 0, "nothing left to write");
        let devices = cp.devices(&db.id, &PageRequest::first(10)).await.unwrap();
        assert_eq!(devices.items.len(), 2);
        let da = &devices.items[0];
        assert_eq!((da.requests, da.bytes_in, da.bytes_out, da.changes_in, da.changes_out), (2, 10, 5, 2, 1));
        assert_eq!(da.confirmed_download.as_deref(), Some("3.0"));
        assert_eq!(devices.items[1].user_id.as_deref(), Some("u"));
        let u = cp.usage(&t.id, None, 0, now_ms() + 1).await.unwrap();
        assert_eq!(
            (u.requests, u.bytes_in, u.bytes_out, u.changes_in, u.changes_out, u.active_devices),
            (4, 10, 5, 2, 1, 2)
        );
        // The deleted database's request stays in the tenant's history, not in the
        // remaining database's.
        let u = cp.usage(&t.id, Some(&db.id), 0, now_ms() + 1).await.unwrap();
        assert_eq!(u.requests, 3);
        // A second flush adds to the counters.
        rec.record(&t.id, &db.id, a, Activity { bytes_in: 1, ..Activity::default() });
        rec.flush(cp).await.unwrap();
        let u = cp.usage(&t.id, None, 0, now_ms() + 1).await.unwrap();
        assert_eq!((u.requests, u.bytes_in, u.active_devices), (5, 11, 2));
        // A failed flush (store closed) keeps the counters.
        rec.record(&t.id, &db.id, a, Activity { bytes_in: 100, ..Activity::default() });
        let closed = cp.clone();
        closed.close().await;
        assert!(rec.flush(&closed).await.is_err());
        let reopened = ControlPlane::connect(&s.url).await.unwrap();
        assert_eq!(rec.flush(&reopened).await.unwrap(), 1, "the failed flush's counters were kept");
        let u = reopened.usage(&t.id, None, 0, now_ms() + 1).await.unwrap();
        assert_eq!((u.requests, u.bytes_in), (6, 111));
        reopened.close().await;
        s.finish().await;
    }
}
