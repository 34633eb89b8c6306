//! Retention and counts: what the hourly purge clears and the queue depth the metrics
//! show.

use super::DeliveryStatus;
use crate::db::{Db, Tx};

/// Clears the payloads of messages created before `cutoff` that are handed off and have
/// no pending delivery left; returns how many.
pub async fn clear_settled_payloads(tx: &mut Tx, cutoff: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_messages SET payload = NULL \
         WHERE created_at < $1 AND payload IS NOT NULL AND relayed_at IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = webhook_messages.id AND d.status = $2)",
    )
    .bind(cutoff)
    .bind(DeliveryStatus::Pending)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Clears receivers' response bodies of attempts made before `cutoff`; returns how many.
pub async fn clear_response_bodies(tx: &mut Tx, cutoff: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_attempts SET response_body = NULL WHERE attempted_at < $1 AND response_body IS NOT NULL",
    )
    .bind(cutoff)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Deliveries waiting to be attempted (first attempts and scheduled retries).
pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = $1")
        .bind(DeliveryStatus::Pending)
        .fetch_one(db.pool())
        .await
}
