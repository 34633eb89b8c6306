//! The access audit: who saw or changed which patient's record, when, through which route
//! and from which address.
//!
//! - A clinical handler says what its answer shows with a [`Shown`] response part
//!   (`Shown::read(&user, book_no)`, `Shown::listed(&user, …)`, `Shown::wrote(…)`). Only
//!   the handler knows both the caller and the patients it answered with, so the rule
//!   sits where the route is, as the role checks do.
//! - The [`record`] layer, around every API route, turns a successful answer's `Shown`
//!   into an [`AccessEntry`] (adding the route, the method, the time and the client's
//!   address) and queues it. Failed requests showed nothing and are not recorded.
//! - The queue is bounded: when it is full, requests wait for room rather than drop an
//!   entry. [`writer::run`] writes the queue in batches, off the request path, and
//!   removes entries older than the retention.
//! - Reading: `GET /api/v1/audit/patient-access`, admins only. Nothing can change or
//!   delete an entry but the retention.
//!
//! What a crash loses: the entries queued and not yet written, at most the last
//! [`writer::LINGER`] of accesses before it (plus a batch being written).

mod model;
mod repo;
mod routes;
pub mod writer;

pub use model::{AccessEntry, AccessFilter, Action, Shown};
pub use routes::router;

use crate::auth::ClientAddr;
use crate::db::Db;
use crate::ids::AccessId;
use crate::time::Timestamp;
use axum::extract::{MatchedPath, State};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Entries queued and not yet written, at most: past this, requests wait for the writer.
const QUEUE: usize = 10_000;

/// The access audit's handle in the application state: the queue's sending end, and
/// what the writer and the report need.
#[derive(Clone)]
pub struct AccessLog {
    db: Db,
    queue: mpsc::Sender<AccessEntry>,
    /// The queue's receiving end, until the writer takes it.
    pending: Arc<Mutex<Option<mpsc::Receiver<AccessEntry>>>>,
    retention: Duration,
}

impl AccessLog {
    pub fn new(db: Db, retention: Duration) -> AccessLog {
        let (queue, pending) = mpsc::channel(QUEUE);
        AccessLog {
            db,
            queue,
            pending: Arc::new(Mutex::new(Some(pending))),
            retention,
        }
    }

    /// Removes the entries older than the retention; returns how many. The writer does
    /// this hourly.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let cutoff = Timestamp::now().millis() - self.retention.as_millis() as i64;
        repo::prune(&self.db, &AccessId::first_at(cutoff)).await
    }
}

/// The layer that records what a successful answer showed (see the module comment).
/// Runs after routing, so the route is the one declared.
pub async fn record(
    State(log): State<AccessLog>,
    ClientAddr(client): ClientAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let method = request.method().to_string();
    let mut response = next.run(request).await;
    let shown = response.extensions_mut().remove::<Shown>();
    if let (Some(shown), Some(route)) = (shown, route)
        && response.status().is_success()
    {
        let entry = AccessEntry {
            id: AccessId::generate(),
            at: Timestamp::now(),
            user_id: shown.user.id,
            username: shown.user.username,
            role: shown.user.role,
            action: shown.action,
            method,
            route,
            client_address: client.to_string(),
            book_nos: shown.book_nos,
        };
        // Fails only once the writer has stopped for good, when the server is closing.
        if log.queue.send(entry).await.is_err() {
            tracing::error!("the access audit's writer has stopped: an access went unrecorded");
            metrics::counter!("ehrs_access_audit_lost_total").increment(1);
        }
    }
    response
}
