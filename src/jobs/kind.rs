//! Typed job kinds: a kind is a type that names itself in the `jobs` table, says what
//! its payload is, and runs one attempt. The module that queues a kind defines it; the
//! application registers it ([`Registry::with`]); [`JobKind::enqueue`] writes its row. So a
//! kind's name, its payload and its handler cannot drift apart.

use super::{Job, JobContext, JobError, Registry};
use crate::db::Tx;
use crate::ids::JobId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

/// A kind of durable job.
pub trait JobKind: Send + Sync + 'static {
    /// The `kind` column. Stable across releases: queued jobs outlive the process.
    const NAME: &'static str;
    /// The job's input, stored as JSON in `payload`.
    type Payload: Serialize + DeserializeOwned + Send + 'static;

    /// One attempt. It may complete the job inside its own transaction
    /// ([`super::finish_in`]) to make its effect exactly once.
    fn run(
        context: JobContext,
        job: Job,
        payload: Self::Payload,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Queues a job of this kind inside `tx`: it commits with the caller's write.
    fn enqueue(
        tx: &mut Tx,
        payload: &Self::Payload,
        max_attempts: i64,
    ) -> impl Future<Output = Result<JobId, sqlx::Error>> + Send {
        let payload =
            serde_json::to_value(payload).map_err(|err| sqlx::Error::Encode(Box::new(err)));
        async move { super::queue::enqueue(tx, Self::NAME, &payload?, max_attempts).await }
    }
}

impl Registry {
    /// Adds kind `K`: its payload is parsed (a payload that does not parse fails the job
    /// for good), then [`JobKind::run`] is called.
    pub fn with<K: JobKind>(self) -> Self {
        self.register(K::NAME, |context, job: Job| async move {
            let payload = job.payload_as::<K::Payload>()?;
            K::run(context, job, payload).await
        })
    }
}
