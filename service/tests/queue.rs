//! The durable apply queue: ordering per database, parallelism across databases,
//! leases, retries with backoff, dead letters, operator retry and discard, and leases
//! released on shutdown — on both control-plane engines.

mod common;

use std::time::Duration;

use cloudsync_protocol::RefusedRow;
use cloudsync_service::actor::Actor;
use cloudsync_service::control::jobs::{JobState, NewJob, MAX_ATTEMPTS};
use cloudsync_service::control::ControlPlane;
use cloudsync_service::ids::{DatabaseId, SiteHex};
use cloudsync_service::model::BackendConfig;
use cloudsync_service::Error;

async fn two_databases(cp: &ControlPlane) -> Vec<DatabaseId> {
    let t = cp.create_tenant("t").await.unwrap();
    let mut dbs = Vec::new();
    for name in ["a", "b"] {
        dbs.push(cp.create_database(&t.id, name, BackendConfig::Sqlite).await.unwrap().id);
    }
    dbs
}

fn job(db: &DatabaseId, n: u64) -> NewJob {
    NewJob {
        database_id: db.clone(),
        site: SiteHex::parse("0102030405060708090a0b0c0d0e0f10").unwrap(),
        object_key: format!("k{n}"),
        bytes: 1,
        from_cursor: format!("{}.0", n - 1),
        to_cursor: format!("{n}.0"),
        actor: Actor {
            role: "authenticated".into(),
            user_id: Some("u1".into()),
            claims: serde_json::json!({ "sub": "u1", "role": "authenticated" }),
        },
    }
}

const LEASE: Duration = Duration::from_secs(30);

/// Runs `test` on a fresh store of each engine.
macro_rules! on_both {
    ($test:ident) => {
        for s in common::stores().await {
            eprintln!("-- {} on {}", stringify!($test), s.name);
            $test(&s.cp).await;
            s.finish().await;
        }
    };
}

async fn order_and_parallelism(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let a1 = cp.enqueue(job(&dbs[0], 1)).await.unwrap();
    let a2 = cp.enqueue(job(&dbs[0], 2)).await.unwrap();
    let b1 = cp.enqueue(job(&dbs[1], 1)).await.unwrap();
    // Two workers: one gets a1, the other b1 — never a2 while a1 runs.
    let w1 = cp.claim("w1", LEASE).await.unwrap().unwrap();
    let w2 = cp.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((w1.id, w2.id), (a1.id, b1.id));
    assert!(cp.claim("w3", LEASE).await.unwrap().is_none(), "a2 must wait for a1");
    cp.complete(a1.id, "w1", 3, &[]).await.unwrap();
    let next = cp.claim("w3", LEASE).await.unwrap().unwrap();
    assert_eq!((next.id, next.attempts), (a2.id, 1));
    // Completing with the wrong owner does nothing.
    cp.complete(a2.id, "someone-else", 1, &[]).await.unwrap();
    assert_eq!(cp.job(&dbs[0], a2.id).await.unwrap().state, JobState::Running);
}

#[tokio::test]
async fn jobs_of_a_database_run_in_order_and_databases_in_parallel() {
    on_both!(order_and_parallelism);
}

async fn tenants_share_the_workers(cp: &ControlPlane) {
    // Tenant A floods the queue across five databases; B's one job comes last.
    let a = cp.create_tenant("a").await.unwrap();
    let b = cp.create_tenant("b").await.unwrap();
    let mut flood = Vec::new();
    for i in 0..5 {
        let db = cp.create_database(&a.id, &format!("a{i}"), BackendConfig::Sqlite).await.unwrap().id;
        flood.push(cp.enqueue(job(&db, 1)).await.unwrap().id);
    }
    let db_b = cp.create_database(&b.id, "b", BackendConfig::Sqlite).await.unwrap().id;
    let late = cp.enqueue(job(&db_b, 1)).await.unwrap().id;
    // The first worker takes A's oldest; the second goes to B, which runs nothing, not
    // to A's next four older jobs.
    let first = cp.claim("w1", LEASE).await.unwrap().unwrap();
    let second = cp.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((first.id, second.id), (flood[0], late));
    // With nobody else waiting, A gets every other worker, oldest first.
    let third = cp.claim("w3", LEASE).await.unwrap().unwrap();
    assert_eq!(third.id, flood[1]);
    // B's job done, B runs nothing again: its next job goes before A's older ones.
    cp.complete(late, "w2", 1, &[]).await.unwrap();
    let db_b2 = cp.create_database(&b.id, "b2", BackendConfig::Sqlite).await.unwrap().id;
    let b2 = cp.enqueue(job(&db_b2, 1)).await.unwrap().id;
    let fourth = cp.claim("w4", LEASE).await.unwrap().unwrap();
    assert_eq!(fourth.id, b2, "B runs nothing, A runs two");
}

#[tokio::test]
async fn a_tenant_flooding_the_queue_does_not_hold_the_others_back() {
    on_both!(tenants_share_the_workers);
}

async fn retries_and_dead_letters(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let j1 = cp.enqueue(job(&dbs[0], 1)).await.unwrap();
    let j2 = cp.enqueue(job(&dbs[0], 2)).await.unwrap();

    // A transient failure: back to pending with its error, not claimable until due.
    let claimed = cp.claim("w", LEASE).await.unwrap().unwrap();
    let transient = Error::PayloadStore("bucket unreachable".into());
    assert_eq!(cp.fail(&claimed, "w", &transient).await.unwrap(), JobState::Pending);
    let stored = cp.job(&dbs[0], j1.id).await.unwrap();
    assert_eq!((stored.error_code.as_deref(), stored.retryable), (Some("payload_store_unavailable"), Some(true)));
    assert!(cp.claim("w", LEASE).await.unwrap().is_none(), "j1 backs off, and j2 waits behind it");

    // An operator retries it now; after MAX_ATTEMPTS a transient failure dead-letters.
    cp.retry_job(&dbs[0], j1.id).await.unwrap();
    let mut again = cp.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (j1.id, 1));
    again.attempts = MAX_ATTEMPTS;
    assert_eq!(cp.fail(&again, "w", &transient).await.unwrap(), JobState::Dead);

    // A dead letter keeps its error and no longer blocks the jobs behind it.
    let dead = cp.job(&dbs[0], j1.id).await.unwrap();
    assert_eq!((dead.state, dead.retryable), (JobState::Dead, Some(false)));
    // What devices read says what failed, without the node's detail (in the log).
    assert_eq!(dead.error_code.as_deref(), Some("payload_store_unavailable"));
    assert_eq!(dead.error_message.as_deref(), Some("the payload store is unavailable for now; retry later"));
    let next = cp.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(next.id, j2.id);

    // A permanent failure dead-letters at once; running jobs cannot be retried.
    assert!(matches!(cp.retry_job(&dbs[0], j2.id).await, Err(Error::Conflict(_))));
    let permanent = Error::Invalid("payload contains changes attributed to another site".into());
    assert_eq!(cp.fail(&next, "w", &permanent).await.unwrap(), JobState::Dead);
    assert_eq!(cp.job(&dbs[0], j2.id).await.unwrap().error_code.as_deref(), Some("invalid_request"));
    // Discarding a dead letter; a discarded job cannot be retried.
    assert_eq!(cp.discard_job(&dbs[0], j2.id).await.unwrap().state, JobState::Discarded);
    assert!(matches!(cp.retry_job(&dbs[0], j2.id).await, Err(Error::Conflict(_))));
    // Another database's job is not found through this one.
    assert!(matches!(cp.discard_job(&dbs[1], j1.id).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_and_stop_blocking() {
    on_both!(retries_and_dead_letters);
}

async fn leases(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let j = cp.enqueue(job(&dbs[0], 1)).await.unwrap();
    let claimed = cp.claim("crashed-node", Duration::from_millis(1)).await.unwrap().unwrap();
    assert_eq!(claimed.id, j.id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The owner died: its lease expired, another node takes the job over.
    let taken = cp.claim("survivor", LEASE).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.attempts), (j.id, 2));
    assert!(!cp.extend_lease(j.id, "crashed-node", LEASE).await.unwrap(), "the old owner lost it");
    assert!(cp.extend_lease(j.id, "survivor", LEASE).await.unwrap());
    // Graceful shutdown: the survivor releases it; it is claimable again at once.
    assert_eq!(cp.release("survivor").await.unwrap(), 1);
    let back = cp.claim("next", LEASE).await.unwrap().unwrap();
    assert_eq!((back.id, back.attempts), (j.id, 2), "a released attempt does not count");
}

#[tokio::test]
async fn expired_leases_are_reclaimed_and_release_returns_jobs() {
    on_both!(leases);
}

async fn status(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let site = SiteHex::parse("0102030405060708090a0b0c0d0e0f10").unwrap();
    let j1 = cp.enqueue(job(&dbs[0], 1)).await.unwrap();
    let _j2 = cp.enqueue(job(&dbs[0], 2)).await.unwrap();
    let s = cp.device_status(&dbs[0], &site).await.unwrap();
    assert_eq!((s.accepted.as_deref(), s.confirmed.as_deref(), s.pending), (Some("2.0"), None, 2));
    let c = cp.claim("w", LEASE).await.unwrap().unwrap();
    cp.complete(c.id, "w", 1, &[]).await.unwrap();
    let s = cp.device_status(&dbs[0], &site).await.unwrap();
    assert_eq!((s.confirmed.as_deref(), s.pending), (Some("1.0"), 1));
    let c = cp.claim("w", LEASE).await.unwrap().unwrap();
    cp.fail(&c, "w", &Error::Invalid("bad".into())).await.unwrap();
    let s = cp.device_status(&dbs[0], &site).await.unwrap();
    assert_eq!((s.confirmed.as_deref(), s.pending, s.failures.len()), (Some("2.0"), 0, 1));
    assert!(!s.failures[0].retryable);
    assert_ne!(s.failures[0].job, j1.id);
}

#[tokio::test]
async fn device_status_reports_accepted_confirmed_and_failures() {
    on_both!(status);
}

async fn pruning(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let site = SiteHex::parse("0102030405060708090a0b0c0d0e0f10").unwrap();
    // Site of database a: three jobs applied. Database b: one applied, one waiting.
    for n in 1..=3 {
        let j = cp.enqueue(job(&dbs[0], n)).await.unwrap();
        let c = cp.claim("w", LEASE).await.unwrap().unwrap();
        assert_eq!(c.id, j.id);
        cp.complete(j.id, "w", 1, &[]).await.unwrap();
    }
    let b1 = cp.enqueue(job(&dbs[1], 1)).await.unwrap();
    cp.claim("w", LEASE).await.unwrap().unwrap();
    cp.complete(b1.id, "w", 1, &[]).await.unwrap();
    cp.enqueue(job(&dbs[1], 2)).await.unwrap();
    let before_a = cp.device_status(&dbs[0], &site).await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(cp.prune_jobs(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The two older jobs of a go; a's newest stays, without its claims; b, with a job
    // waiting, keeps everything.
    assert_eq!(cp.prune_jobs(Duration::ZERO).await.unwrap(), 2);
    let after_a = cp.device_status(&dbs[0], &site).await.unwrap();
    assert_eq!((after_a.accepted, after_a.confirmed), (before_a.accepted, before_a.confirmed));
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, actor FROM jobs WHERE database_id = '{}' ORDER BY id",
        dbs[0]
    )))
    .fetch_all(&common::pool(cp))
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1.is_none(), "the kept job no longer holds the claims it acted with");
    let b: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM jobs WHERE database_id = '{}'", dbs[1])))
            .fetch_one(&common::pool(cp))
            .await
            .unwrap();
    assert_eq!(b, 2);
}

#[tokio::test]
async fn finished_jobs_are_pruned_but_each_sites_positions_stay() {
    on_both!(pruning);
}

async fn concurrent_claims(cp: &ControlPlane) {
    // Many workers racing: each job is claimed by exactly one of them.
    let dbs = two_databases(cp).await;
    for n in 1..=5 {
        cp.enqueue(job(&dbs[0], n)).await.unwrap();
        cp.enqueue(job(&dbs[1], n)).await.unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let cp = cp.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let mut done = Vec::new();
            for _ in 0..50 {
                match cp.claim(&owner, LEASE).await.unwrap() {
                    Some(j) => {
                        cp.complete(j.id, &owner, 1, &[]).await.unwrap();
                        done.push(j.id);
                    }
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            done
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a job was applied by two workers");
    assert_eq!(all.len(), 10, "every job was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_share_a_job() {
    on_both!(concurrent_claims);
}

async fn actor_and_refusals(cp: &ControlPlane) {
    let dbs = two_databases(cp).await;
    let queued = cp.enqueue(job(&dbs[0], 1)).await.unwrap();
    let claimed = cp.claim("w", LEASE).await.unwrap().unwrap();
    // The uploader's identity travels with the job, to whichever node applies it.
    assert_eq!(claimed.id, queued.id);
    assert_eq!(claimed.actor, Some(job(&dbs[0], 1).actor));
    let refused = vec![RefusedRow {
        table: "todos".into(),
        key: "'x1'".into(),
        sqlstate: "42501".into(),
        message: "new row violates row-level security policy for table \"todos\"".into(),
    }];
    cp.complete(claimed.id, "w", 2, &refused).await.unwrap();
    let done = cp.job(&dbs[0], claimed.id).await.unwrap();
    assert_eq!((done.state, done.applied, done.refused.clone()), (JobState::Done, Some(2), refused.clone()));
    let site = SiteHex::parse("0102030405060708090a0b0c0d0e0f10").unwrap();
    let status = cp.device_status(&dbs[0], &site).await.unwrap();
    assert_eq!(status.refused.len(), 1);
    let r = &status.refused[0];
    assert_eq!((r.job, &r.row, r.retryable), (claimed.id, &refused[0], false));
    assert!(status.failures.is_empty(), "a refused row is not a failed upload");
    // Another database's device status is untouched.
    assert!(cp.device_status(&dbs[1], &site).await.unwrap().refused.is_empty());
}

#[tokio::test]
async fn jobs_carry_their_actor_and_record_refused_rows() {
    on_both!(actor_and_refusals);
}
