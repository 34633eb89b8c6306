//! Safe retries: every signed-in write accepts an `Idempotency-Key` header, as Stripe's
//! and Svix's APIs do. A tablet on flaky Wi-Fi whose `POST …/prescription` committed but
//! whose answer was lost retries with the same key and gets the first answer back; nothing
//! is written or emitted twice.
//!
//! - The router's layer ([`guard`]) reads the key, the caller and a fingerprint of the
//!   request (method, path and query, body). A key this user used in the last 24 h for
//!   the same request answers with the remembered answer (`Idempotency-Replayed: true`);
//!   for another request, 422 `idempotency_key_reused`; while the first is still running
//!   in this process, 409 `request_in_progress`.
//! - A fresh request runs with a [`Claim`] in its extensions. The handler takes it as
//!   [`IdempotencyKey`] and commits through [`IdempotencyKey::commit`], which writes the
//!   key and the answer in the write's own transaction: a crash keeps both or neither.
//!   Under PostgreSQL with several instances, the key's primary key settles a race that
//!   the in-process set cannot see: the second commit finds the first's row and answers
//!   409.
//! - A write whose transaction is not ours (the Svix backend's calls) is remembered by the
//!   layer after it answers, in a transaction of its own.
//! - Only successful (2xx) answers are remembered. A refused request changed nothing, so
//!   its retry simply runs again.

pub mod guard;
mod repo;

use crate::crypto::SecretBox;
use crate::db::{Db, Tx};
use crate::error::{ApiError, ApiResult};
use crate::ids::UserId;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// Set on a remembered answer given back to a retry.
pub const REPLAYED_HEADER: &str = "Idempotency-Replayed";
/// How long a key is remembered.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest key accepted (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// A fresh request holding its key: what the write's transaction records.
#[derive(Clone)]
pub struct Claim {
    user: UserId,
    key: String,
    fingerprint: String,
    secrets: SecretBox,
    /// Set once the answer is recorded, so the layer does not record it again.
    recorded: Arc<AtomicBool>,
    /// Held while the request runs: dropping the last clone frees the key in this process.
    _in_flight: Arc<InFlightEntry>,
}

/// The request's `Idempotency-Key`, when it sent one (and is signed in): taken by every
/// write handler, which commits through [`IdempotencyKey::commit`].
pub struct IdempotencyKey(Option<Claim>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(parts.extensions.get::<Claim>().cloned()))
    }
}

impl IdempotencyKey {
    /// Commits `tx` with `answer` remembered under the request's key (when it has one),
    /// then gives the answer. The key is written in `tx`, so the write and its key commit
    /// together. A key another instance committed meanwhile rolls the write back: 409.
    pub async fn commit(self, mut tx: Tx, answer: impl IntoResponse) -> ApiResult<Response> {
        let answer = answer.into_response();
        let Some(claim) = self.0 else {
            tx.commit().await?;
            return Ok(answer);
        };
        let (parts, body) = answer.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(ApiError::internal)?;
        if !repo::remember(&mut tx, &claim, parts.status.as_u16(), &body).await? {
            tx.rollback().await?;
            return Err(in_progress());
        }
        tx.commit().await?;
        claim.recorded.store(true, Ordering::Release);
        Ok(Response::from_parts(parts, axum::body::Body::from(body)))
    }
}

/// 409: the key's first request has not answered yet.
fn in_progress() -> ApiError {
    ApiError::conflict(
        "request_in_progress",
        "a request with this Idempotency-Key is still running; retry once it has answered",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// The keys whose requests are running in this process, per user.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<(UserId, String)>>>);

/// A key held by a running request; freed on drop (also when the client went away and
/// the request's future was dropped).
struct InFlightEntry {
    set: InFlight,
    entry: (UserId, String),
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.entry);
    }
}

impl InFlight {
    /// Holds `key` for `user`; `None` when a request holding it is running.
    fn hold(&self, user: &UserId, key: &str) -> Option<InFlightEntry> {
        let entry = (user.clone(), key.to_string());
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(entry.clone()).then(|| InFlightEntry {
            set: self.clone(),
            entry,
        })
    }
}

/// Forgets keys older than [`WINDOW`], hourly, until `stop`.
pub async fn run_purge(db: Db, mut stop: tokio::sync::watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_secs(3600);
    loop {
        let cutoff = crate::db::now_ms() - WINDOW.as_millis() as i64;
        if let Err(err) = repo::purge_before(&db, cutoff).await {
            tracing::warn!(error = %err, "forgetting old idempotency keys failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
