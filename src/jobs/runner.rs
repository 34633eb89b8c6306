//! Runs jobs: the registry of handlers by kind, one claim-and-run pass
//! ([`run_jobs_due_by`], which tests call instead of sleeping), and the background runner
//! task of `ehrs serve` ([`run`]). Which kinds exist is the application's choice: it
//! builds the [`Registry`] from the modules that queue jobs.

use super::{Job, JobContext, JobError, queue};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a claimed job is reserved for its worker. A handler gets half of it to finish
/// (then its attempt counts as failed), so a live worker never loses its lease.
pub const LEASE: Duration = Duration::from_secs(300);
/// How often the runner looks for due jobs when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Jobs claimed (and run concurrently) per pass.
pub const BATCH_SIZE: i64 = 10;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
/// A job handler: does the work of one job. It may call [`super::finish_in`] inside its own
/// transaction to complete the job together with its write.
pub type JobHandler = Arc<dyn Fn(JobContext, Job) -> HandlerFuture + Send + Sync>;

/// Which handler runs which job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, JobHandler>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the handler of `kind`; `handler` is typically an `async fn`.
    pub fn register<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(JobContext, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler: JobHandler = Arc::new(move |state, job| Box::pin(handler(state, job)));
        self.handlers.insert(kind.to_string(), handler);
        self
    }

    pub fn get(&self, kind: &str) -> Option<JobHandler> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }
}

/// Wakes this process's runner. A signal rather than state: waking an idle runner with
/// nothing to do costs one query, so one process-wide signal suffices (and AppState stays
/// free of it).
static ENQUEUED: Notify = Notify::const_new();

/// Call after committing a transaction that enqueued a job, so it runs at once instead
/// of at the next poll. The wake is kept when the runner is busy, so it is never lost.
pub fn notify_enqueued() {
    ENQUEUED.notify_one();
}

/// Runs every job due at `now` with `registry`'s handlers, until none is left; returns
/// how many attempts were made. Jobs that fail are rescheduled with backoff, so they are
/// not due again within the same call.
pub async fn run_jobs_due_by(
    state: &JobContext,
    registry: &Registry,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let ran = run_batch(state, registry, now).await?;
        if ran == 0 {
            return Ok(total);
        }
        total += ran;
    }
}

/// Claims up to [`BATCH_SIZE`] due jobs and runs them concurrently, each in its own task so
/// a panicking handler fails its job instead of the runner.
async fn run_batch(
    state: &JobContext,
    registry: &Registry,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let jobs = queue::claim(&state.db, BATCH_SIZE, LEASE, now).await?;
    let count = jobs.len();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let handler = registry.get(&job.kind);
            let state = state.clone();
            tokio::spawn(async move { run_one(state, handler, job, now).await })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(count)
}

/// Runs one claimed job and records its outcome; retries are scheduled from `now`, the
/// clock the job was claimed by.
async fn run_one(state: JobContext, handler: Option<JobHandler>, job: Job, now: Timestamp) {
    let outcome = match handler {
        None => Err(JobError::permanent(format!(
            "no handler for job kind '{}'",
            job.kind
        ))),
        Some(handler) => {
            let attempt = tokio::spawn(tokio::time::timeout(
                LEASE / 2,
                handler(state.clone(), job.clone()),
            ));
            match attempt.await {
                Ok(Ok(result)) => result,
                Ok(Err(_elapsed)) => Err(JobError::retryable(format!(
                    "timed out: the job did not finish within {}",
                    crate::time::seconds(LEASE / 2)
                ))),
                Err(_panic) => Err(JobError::retryable("the job handler panicked")),
            }
        }
    };
    let recorded = match &outcome {
        Ok(()) => queue::record_success(&state.db, &job)
            .await
            .map(|_| Some("succeeded")),
        Err(error) => queue::record_failure(&state.db, &job, error, now).await,
    };
    match (recorded, outcome) {
        (Ok(Some(status)), Err(error)) => {
            tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, status, error = %error, "job attempt failed");
        }
        (Ok(_), _) => tracing::debug!(job_id = %job.id, kind = %job.kind, "job finished"),
        (Err(err), _) => {
            // The lease runs out and the job is claimed again: at-least-once.
            tracing::error!(job_id = %job.id, error = %err, "could not record a job outcome");
        }
    }
}

/// The background runner of `ehrs serve`: runs due jobs whenever [`notify_enqueued`] fires
/// and at least every [`POLL_INTERVAL`] (which is how jobs queued by other processes and
/// retries come due). When `shutdown` turns true (or its sender is dropped) it finishes
/// the jobs in hand and stops; unfinished work stays queued in the database.
pub async fn run(state: JobContext, registry: Registry, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(kinds = ?registry.kinds(), "job runner started");
    while !*shutdown.borrow() {
        match run_batch(&state, &registry, Timestamp::now()).await {
            Ok(ran) if ran > 0 => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "job runner pass failed; retrying"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = ENQUEUED.notified() => {}
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    tracing::info!("job runner stopped");
}
