//! The transactional outbox: [`emit`] writes an event and its deliveries inside the
//! caller's transaction, so they commit with the clinical change or not at all.

use super::events::Event;
use crate::db::Tx;
use crate::ids::{DeliveryId, EventId, MessageId, SubscriptionId};
use crate::time::Timestamp;
use sqlx::Row;

/// Records `event` in the outbox of `tx` and queues one delivery, with the next sequence
/// number, for every enabled subscription whose filter matches. The delivery workers are
/// woken when `tx` commits; nothing is sent before.
pub async fn emit(tx: &mut Tx, event: Event) -> Result<MessageId, sqlx::Error> {
    let now = Timestamp::now();
    let message_id = MessageId::generate();
    let payload = serde_json::json!({ "data": event.data, "changed_fields": event.changed_fields });
    sqlx::query(
        "INSERT INTO webhook_messages (id, event_id, event_type, payload, ids, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&message_id)
    .bind(EventId::generate())
    .bind(event.event_type.as_str())
    .bind(payload.to_string())
    .bind(event.id_only_data().to_string())
    .bind(now)
    .execute(tx.conn())
    .await?;

    for subscription in matching_subscriptions(tx, event.event_type.as_str()).await? {
        queue_delivery(tx, &message_id, &subscription, now).await?;
    }
    metrics::counter!("ehrs_events_emitted_total", "event_type" => event.event_type.as_str())
        .increment(1);
    tx.mark_emitted();
    Ok(message_id)
}

/// Enabled subscriptions whose event-type filter is empty or names `event_type`.
async fn matching_subscriptions(
    tx: &mut Tx,
    event_type: &str,
) -> Result<Vec<SubscriptionId>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, event_types FROM webhook_subscriptions WHERE enabled = 1")
        .fetch_all(tx.conn())
        .await?;
    let mut matching = Vec::new();
    for row in rows {
        let filter: String = row.try_get("event_types")?;
        let types: Vec<String> = serde_json::from_str(&filter).unwrap_or_default();
        if types.is_empty() || types.iter().any(|t| t == event_type) {
            matching.push(row.try_get("id")?);
        }
    }
    Ok(matching)
}

/// Queues `message_id` for one subscription with that subscription's next sequence number.
/// On PostgreSQL the sequence update locks the subscription row until commit, so sequence
/// order is commit order.
pub async fn queue_delivery(
    tx: &mut Tx,
    message_id: &MessageId,
    subscription: &SubscriptionId,
    due: Timestamp,
) -> Result<DeliveryId, sqlx::Error> {
    let sequence: i64 = sqlx::query_scalar(
        "UPDATE webhook_subscriptions SET last_sequence = last_sequence + 1 WHERE id = $1 RETURNING last_sequence",
    )
    .bind(subscription)
    .fetch_one(tx.conn())
    .await?;
    let id = DeliveryId::generate();
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, message_id, subscription_id, sequence, status, attempts, \
         next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
    )
    .bind(&id)
    .bind(message_id)
    .bind(subscription)
    .bind(sequence)
    .bind(due)
    .execute(tx.conn())
    .await?;
    Ok(id)
}
