//! Payload retention: message bodies and receivers' response bodies older than
//! `EHRS_WEBHOOK_RETENTION_DAYS` are cleared, so patient data does not pile up in the
//! webhook tables; ids, event types, statuses and attempt metadata stay for the logs.
//! Messages still waiting for a delivery (or for the Svix relay) keep their payload until
//! they are settled.

use super::store;
use crate::db::{Db, now_ms};

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

/// [`purge`] as of `now` (Unix ms): the engine passes its clock's time.
pub async fn purge_at(db: &Db, days: i64, now: i64) -> Result<Purged, sqlx::Error> {
    let cutoff = now - days.max(0) * 86_400_000;
    let mut tx = db.begin().await?;
    let payloads = store::clear_settled_payloads(&mut tx, cutoff).await?;
    let response_bodies = store::clear_response_bodies(&mut tx, cutoff).await?;
    // Svix operational-webhook ids are kept only to drop Svix's retries of them.
    sqlx::query("DELETE FROM svix_ops_seen WHERE received_at < $1")
        .bind(cutoff)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(Purged {
        payloads,
        response_bodies,
    })
}
