//! Payload retention: message bodies and receivers' response bodies older than
//! `EHRS_WEBHOOK_RETENTION_DAYS` are cleared, so patient data does not pile up in the
//! webhook tables; ids, event types, statuses and attempt metadata stay for the logs.
//! Messages still waiting for a delivery (or for the Svix relay) keep their payload until
//! they are settled.

use crate::db::{Db, now_ms};

/// What one purge cleared.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub payloads: u64,
    pub response_bodies: u64,
}

/// Clears payloads of settled messages and response bodies older than `days`.
pub async fn purge(db: &Db, days: i64) -> Result<Purged, sqlx::Error> {
    let cutoff = now_ms() - days.max(0) * 86_400_000;
    let mut tx = db.begin().await?;
    let payloads = sqlx::query(
        "UPDATE webhook_messages SET payload = NULL \
         WHERE created_at < $1 AND payload IS NOT NULL AND relayed_at IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = webhook_messages.id AND d.status = 'pending')",
    )
    .bind(cutoff)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let response_bodies = sqlx::query(
        "UPDATE webhook_attempts SET response_body = NULL WHERE attempted_at < $1 AND response_body IS NOT NULL",
    )
    .bind(cutoff)
    .execute(tx.conn())
    .await?
    .rows_affected();
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
