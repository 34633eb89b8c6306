//! The durable job queue: backoff and final failure, lease expiry after a crash, exclusive
//! claims across two "processes" (two pools on one database), and the background runner.

use crate::support::TestApp;
use crate::support::inbound::*;
use ehrs::db::Db;
use ehrs::jobs::{self, Job, JobContext, JobError, Registry};
use ehrs::time::Timestamp;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

async fn always_fails(_context: JobContext, _job: Job) -> Result<(), JobError> {
    Err(JobError::retryable("partner system unreachable"))
}

async fn succeeds(_context: JobContext, _job: Job) -> Result<(), JobError> {
    Ok(())
}

async fn enqueue(app: &TestApp, kind: &str, max_attempts: i64) -> ehrs::ids::JobId {
    let mut tx = app.state.db.begin().await.unwrap();
    let id = jobs::enqueue(&mut tx, kind, &json!({"n": 1}), max_attempts)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn job(app: &TestApp, id: &ehrs::ids::JobId) -> Job {
    jobs::get(&app.state.db, id).await.unwrap().unwrap()
}

fn at(base: Timestamp, plus: Duration) -> Timestamp {
    Timestamp(base.millis() + plus.as_millis() as i64)
}

db_test!(async fn failing_jobs_back_off_then_fail_with_their_error(app) {
    let registry = Registry::new().register("test.flaky", always_fails);
    let id = enqueue(&app, "test.flaky", 3).await;
    let start = Timestamp::now();

    assert_eq!(jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, start).await.unwrap(), 1);
    let after_one = job(&app, &id).await;
    assert_eq!((after_one.status.as_str(), after_one.attempts), ("queued", 1));
    assert_eq!(after_one.last_error.as_deref(), Some("partner system unreachable"));
    assert!(after_one.run_at.millis() >= start.millis() + 5_000, "first retry after about 5 s");
    assert_eq!(jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, at(start, Duration::from_secs(4))).await.unwrap(), 0, "not due yet");

    let later = at(after_one.run_at, Duration::ZERO);
    assert_eq!(jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, later).await.unwrap(), 1);
    let after_two = job(&app, &id).await;
    assert_eq!((after_two.status.as_str(), after_two.attempts), ("queued", 2));
    assert!(after_two.run_at.millis() - after_one.run_at.millis() >= 9_000, "the delay doubles");

    assert_eq!(jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, after_two.run_at).await.unwrap(), 1);
    let failed = job(&app, &id).await;
    assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 3));
    assert_eq!(failed.last_error.as_deref(), Some("partner system unreachable"));
    assert!(failed.locked_until.is_none());
    assert_eq!(jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, at(start, Duration::from_secs(86_400))).await.unwrap(), 0);

    // Unknown kinds fail at once, saying so.
    let orphan = enqueue(&app, "test.nobody", 5).await;
    jobs::run_jobs_due_by(&ehrs::testing::job_context(&app.state), &registry, Timestamp::now()).await.unwrap();
    let orphan = job(&app, &orphan).await;
    assert_eq!(orphan.status, "failed");
    assert_eq!(orphan.last_error.as_deref(), Some("no handler for job kind 'test.nobody'"));
});

db_test!(async fn a_crashed_workers_job_is_claimed_again_after_its_lease(app) {
    let id = enqueue(&app, "test.ok", 2).await;
    let now = Timestamp::now();
    let lease = Duration::from_secs(60);
    let claimed = jobs::claim(&app.state.db, 10, lease, now).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].status, "running");
    // The worker "crashes" here: no outcome is recorded.
    assert!(jobs::claim(&app.state.db, 10, lease, at(now, Duration::from_secs(59))).await.unwrap().is_empty());
    let reclaimed = jobs::claim(&app.state.db, 10, lease, at(now, Duration::from_secs(61))).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!((reclaimed[0].id.clone(), reclaimed[0].attempts), (id.clone(), 2));
    // The first worker comes back late: its outcome is not recorded over the new lease.
    jobs::record_success(&app.state.db, &claimed[0]).await.unwrap();
    assert_eq!(job(&app, &id).await.status, "running");
    // The second worker also dies, on the last allowed attempt: the job fails, saying why.
    assert!(jobs::claim(&app.state.db, 10, lease, at(now, Duration::from_secs(200))).await.unwrap().is_empty());
    let abandoned = job(&app, &id).await;
    assert_eq!(abandoned.status, "failed");
    assert!(abandoned.last_error.unwrap().contains("lease expired"));
});

db_test!(async fn two_processes_never_claim_the_same_job(app) {
    for _ in 0..50 {
        enqueue(&app, "test.ok", 3).await;
    }
    let url = app.state.settings.database_url();
    // Two pools on one database stand for two `ehrs serve` processes.
    let (one, two) = (Db::connect(&url, 3, None).await.unwrap(), Db::connect(&url, 3, None).await.unwrap());
    let claimer = |db: Db| {
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let batch = jobs::claim(&db, 5, jobs::LEASE, Timestamp::now()).await.unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|job| job.id));
                tokio::task::yield_now().await;
            }
        })
    };
    let (a, b) = (claimer(one.clone()), claimer(two.clone()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let all: HashSet<_> = a.iter().chain(b.iter()).cloned().collect();
    assert_eq!(a.len() + b.len(), 50, "every job claimed exactly once ({} + {})", a.len(), b.len());
    assert_eq!(all.len(), 50);
    let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running' AND attempts = 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(running, 50);
    one.close().await;
    two.close().await;
});

db_test!(async fn the_runner_picks_up_new_jobs_and_stops_gracefully(app) {
    let medicine = seed_medicine(&app, 1).await;
    let source = default_source(&app).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let context = ehrs::testing::job_context(&app.state);
    let runner = tokio::spawn(jobs::run(context, ehrs::application::job_registry(), stopped));
    send_event(&app, &source, &stock_event("s-1", &medicine, 77)).await.expect(202);
    let mut stock = 0;
    for _ in 0..100 {
        stock = medicine_stock(&app, &medicine).await;
        if stock == 77 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stock, 77, "the runner ran the job");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), runner).await.expect("runner stops").unwrap();
    assert_eq!(events(&app, "?status=succeeded").await["total"], 1);
    let _ = succeeds;
});
