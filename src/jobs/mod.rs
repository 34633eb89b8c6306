//! Durable background jobs in the `jobs` table: inbound webhook actions today, maintenance
//! work later. Owns the `jobs` table and nothing else; what a job *does* belongs to the
//! module that registers its handler (the application builds the registry, in `application.rs`).
//!
//! Life of a job:
//!
//! ```text
//! enqueue (inside the caller's transaction) → queued
//! claim (lease: status running, locked_until = now + lease, attempts + 1) → running
//! handler Ok  → succeeded
//! handler Err → queued again at now + backoff (5 s, 10 s, 20 s, … capped at 1 h),
//!               or failed (last_error kept) when permanent or out of attempts
//! ```
//!
//! A worker that dies mid-job leaves the row `running`; once its lease has passed the row
//! is claimable again (or `failed`, when that was its last attempt). Claiming is a single
//! `UPDATE … RETURNING` over a `FOR UPDATE SKIP LOCKED` sub-select on PostgreSQL, so
//! several `ehrs serve` processes on one database never hold the same job at once; on
//! SQLite the write transactions already exclude each other. The attempt count doubles as
//! a fencing token: a worker whose lease was taken over cannot record an outcome.
//!
//! Delivery is at least once. A handler whose whole effect is a database write can make it
//! exactly once by committing [`finish_in`] in the same transaction as its write.

mod kind;
mod queue;
mod runner;

pub use kind::JobKind;
pub use queue::{claim, enqueue, finish_in, get, record_failure, record_success, requeue_failed};
pub use runner::{
    BATCH_SIZE, HandlerFuture, JobHandler, LEASE, POLL_INTERVAL, Registry, notify_enqueued, run,
    run_jobs_due_by,
};

use crate::db::Db;
use crate::ids::JobId;
use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// What a job handler may use: the database, and nothing of the HTTP side. (A handler
/// that needs more gets a field here, not the application's whole state.)
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
}

/// One row of the `jobs` table.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    /// The handler's input, JSON text.
    pub payload: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts started so far (a claim counts one).
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the job is next due.
    pub run_at: Timestamp,
    /// While `running`: the end of the current worker's lease (Unix ms).
    pub locked_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Job {
    /// The payload parsed as `T`; a payload that does not parse is a permanent failure.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_str(&self.payload).map_err(|err| {
            JobError::permanent(format!(
                "the job payload is not valid for {}: {err}",
                self.kind
            ))
        })
    }
}

/// Job states as stored.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [QUEUED, RUNNING, SUCCEEDED, FAILED];
}

/// Why a job attempt failed. A permanent error (the input can never succeed, e.g. the
/// patient does not exist) goes straight to `failed`; any other is retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub permanent: bool,
}

impl JobError {
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            permanent: true,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            permanent: false,
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Database trouble is transient: retry.
impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        JobError::retryable(format!("database error: {err}"))
    }
}

impl From<anyhow::Error> for JobError {
    fn from(err: anyhow::Error) -> Self {
        JobError::retryable(format!("{err:#}"))
    }
}

/// Delay before retrying after failed attempt number `attempt` (1-based): 5 s doubling,
/// capped at one hour.
pub fn backoff(attempt: i64) -> Duration {
    let exponent = attempt.clamp(1, 20) as u32 - 1;
    Duration::from_secs(5u64.saturating_mul(1u64 << exponent)).min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(3600));
        assert_eq!(backoff(0), Duration::from_secs(5));
    }
}
