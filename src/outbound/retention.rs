//! Payload retention: message bodies and receivers' response bodies older than
//! `EHRS_WEBHOOK_RETENTION_DAYS` are cleared, so patient data does not pile up in the
//! webhook tables; ids, event types, statuses and attempt metadata stay for the logs.
//! Messages still waiting for a delivery (or for the Svix relay) keep their payload until
//! they are settled. It runs for whichever backend delivers (the application starts
//! [`run`] beside the backend's workers), and each backend clears what only it keeps
//! ([`WebhookBackend::purge_before`]).

use super::backend::WebhookBackend;
use super::store;
use crate::db::{Db, now_ms};
use crate::time::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the purge runs.
const EVERY: Duration = Duration::from_secs(3600);

/// What one purge cleared.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub payloads: u64,
    pub response_bodies: u64,
}

/// Clears payloads of settled messages and response bodies older than `days`.
pub async fn purge(db: &Db, days: i64) -> Result<Purged, sqlx::Error> {
    purge_at(db, days, now_ms()).await
}

/// [`purge`] as of `now` (Unix ms).
pub async fn purge_at(db: &Db, days: i64, now: i64) -> Result<Purged, sqlx::Error> {
    let cutoff = cutoff(days, now);
    let mut tx = db.begin().await?;
    let payloads = store::clear_settled_payloads(&mut tx, cutoff).await?;
    let response_bodies = store::clear_response_bodies(&mut tx, cutoff).await?;
    tx.commit().await?;
    Ok(Purged {
        payloads,
        response_bodies,
    })
}

fn cutoff(days: i64, now: i64) -> i64 {
    now - days.max(0) * 86_400_000
}

/// Purges at start, then hourly and whenever a test moves `clock`, until `stop`.
pub async fn run(
    db: Db,
    backend: Arc<dyn WebhookBackend>,
    days: i64,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut clock_moved = clock.watch();
    loop {
        let now = clock.now_ms();
        match purge_at(&db, days, now).await {
            Ok(purged) if purged.payloads + purged.response_bodies > 0 => {
                tracing::info!(
                    payloads = purged.payloads,
                    response_bodies = purged.response_bodies,
                    "cleared expired webhook payloads"
                );
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "webhook payload retention failed; will retry")
            }
        }
        if let Err(err) = backend.purge_before(cutoff(days, now)).await {
            tracing::warn!(error = %err, backend = backend.name(), "the backend's retention failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = clock_moved.changed() => {}
            _ = stop.changed() => return,
        }
    }
}
