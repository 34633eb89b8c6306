//! SQL for the `jobs` table. The only place where the two databases differ is [`claim`],
//! and both variants sit side by side there.

use super::{Job, JobError, backoff, status};
use crate::db::{Backend, Db, Tx};
use crate::ids::JobId;
use crate::time::Timestamp;
use std::time::Duration;

/// Queues a job inside the caller's transaction, due now: it exists exactly when the
/// caller's write commits. Call [`super::notify_enqueued`] after the commit to wake this
/// process's runner at once (other processes find it at their next poll).
pub async fn enqueue(
    tx: &mut Tx,
    kind: &str,
    payload: &serde_json::Value,
    max_attempts: i64,
) -> Result<JobId, sqlx::Error> {
    let now = Timestamp::now();
    let id = JobId::generate();
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5, $5)",
    )
    .bind(&id)
    .bind(kind)
    .bind(payload.to_string())
    .bind(max_attempts.max(1))
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(id)
}

pub async fn get(db: &Db, id: &JobId) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Which rows a claim takes: due queued jobs, and running jobs whose worker's lease has
/// passed (that worker crashed or hung) with attempts left.
const CLAIMABLE: &str = "(status = 'queued' AND run_at <= $1) \
     OR (status = 'running' AND locked_until < $1 AND attempts < max_attempts)";

/// Leases up to `limit` due jobs to the caller until `now + lease`, counting one attempt
/// each, oldest due first. Two claimers never receive the same job while its lease runs.
pub async fn claim(
    db: &Db,
    limit: i64,
    lease: Duration,
    now: Timestamp,
) -> Result<Vec<Job>, sqlx::Error> {
    let locked_until = now.millis() + lease.as_millis() as i64;
    // PostgreSQL: rows another claimer has locked are skipped rather than waited for, and
    // a row it claimed meanwhile no longer matches when re-checked under the lock.
    // SQLite: the write transaction (BEGIN IMMEDIATE) already excludes other claimers.
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = $2, updated_at = $1 \
         WHERE id IN (SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY run_at, id LIMIT $3{lock}) \
         RETURNING *"
    );
    let mut tx = db.begin().await?;
    fail_abandoned(&mut tx, now).await?;
    let mut jobs: Vec<Job> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(locked_until)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
    tx.commit().await?;
    jobs.sort_by(|a, b| (a.run_at, &a.id).cmp(&(b.run_at, &b.id)));
    Ok(jobs)
}

/// A job whose worker vanished during its last allowed attempt will not be retried: fail
/// it, saying why, instead of leaving it `running` forever.
async fn fail_abandoned(tx: &mut Tx, now: Timestamp) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'failed', locked_until = NULL, updated_at = $1, \
         last_error = 'the worker stopped during the last attempt (lease expired)' \
         WHERE status = 'running' AND locked_until < $1 AND attempts >= max_attempts",
    )
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

/// Marks `job` succeeded inside the handler's own transaction, so its effect and its
/// completion commit together. `false` means the lease was lost (another worker took the
/// job over): the caller must roll back.
pub async fn finish_in(tx: &mut Tx, job: &Job) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', locked_until = NULL, last_error = NULL, updated_at = $3 \
         WHERE id = $1 AND status = 'running' AND attempts = $2",
    )
    .bind(&job.id)
    .bind(job.attempts)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a successful attempt (a no-op when the handler already did with [`finish_in`]).
pub async fn record_success(db: &Db, job: &Job) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    finish_in(&mut tx, job).await?;
    tx.commit().await
}

/// Records a failed attempt: back to `queued` after a backoff, or `failed` when the error
/// is permanent or the attempts are used up. Returns the status written (`None` when the
/// lease was lost and nothing was written).
pub async fn record_failure(
    db: &Db,
    job: &Job,
    error: &JobError,
    now: Timestamp,
) -> Result<Option<&'static str>, sqlx::Error> {
    let give_up = error.permanent || job.attempts >= job.max_attempts;
    let (new_status, run_at) = if give_up {
        (status::FAILED, job.run_at)
    } else {
        (
            status::QUEUED,
            Timestamp(now.millis() + backoff(job.attempts).as_millis() as i64),
        )
    };
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE jobs SET status = $3, run_at = $4, last_error = $5, locked_until = NULL, updated_at = $6 \
         WHERE id = $1 AND status = 'running' AND attempts = $2",
    )
    .bind(&job.id)
    .bind(job.attempts)
    .bind(new_status)
    .bind(run_at)
    .bind(truncate(&error.message, 2000))
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok((done.rows_affected() == 1).then_some(new_status))
}

/// Queues a `failed` job again, due now, for a fresh round of `attempts_allowed`
/// attempts: the count starts again from 0, so "attempts of max" reads the same before
/// and after a retry ("1 of 5", never "2 of 6"). The last error is kept until the next
/// attempt replaces it. `None` when the job is not failed.
pub async fn requeue_failed(
    tx: &mut Tx,
    id: &JobId,
    attempts_allowed: i64,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'queued', run_at = $2, attempts = 0, max_attempts = $3, \
         locked_until = NULL, updated_at = $2 WHERE id = $1 AND status = 'failed' RETURNING *",
    )
    .bind(id)
    .bind(Timestamp::now())
    .bind(attempts_allowed.max(1))
    .fetch_optional(tx.conn())
    .await
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
