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
    let message_id = insert_message(tx, &event, now).await?;
    // Under Svix the relay hands the message over and Svix fans it out; local
    // subscriptions (left from the embedded engine) get nothing queued.
    if !tx.relays_outbox() {
        let sequences = next_sequences(tx, event.event_type.as_str()).await?;
        insert_deliveries(tx, &message_id, &sequences, now).await?;
    }
    metrics::counter!("ehrs_events_emitted_total", "event_type" => event.event_type.as_str())
        .increment(1);
    tx.mark_emitted();
    Ok(message_id)
}

/// Writes the message row of `event` (no deliveries).
pub async fn insert_message(
    tx: &mut Tx,
    event: &Event,
    now: Timestamp,
) -> Result<MessageId, sqlx::Error> {
    let message_id = MessageId::generate();
    let payload = serde_json::json!({ "data": event.data, "changed_fields": event.changed_fields });
    sqlx::query(
        "INSERT INTO webhook_messages (id, event_id, event_type, payload, ids, created_at, relayed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&message_id)
    .bind(EventId::generate())
    .bind(event.event_type.as_str())
    .bind(payload.to_string())
    .bind(event.id_only_data().to_string())
    .bind(now)
    // Nothing to hand over unless a relay (Svix) takes the message from here.
    .bind((!tx.relays_outbox()).then_some(now))
    .execute(tx.conn())
    .await?;
    Ok(message_id)
}

/// Takes the next sequence number of every enabled subscription whose filter is empty or
/// names `event_type`, in one statement. On PostgreSQL the UPDATE row-locks those
/// subscriptions until commit, so per-subscription sequence order is commit order.
async fn next_sequences(
    tx: &mut Tx,
    event_type: &str,
) -> Result<Vec<(SubscriptionId, i64)>, sqlx::Error> {
    // The filter is a JSON array of type names; a name is matched with its quotes, and
    // LIKE's `_` wildcard is escaped so only the exact name matches.
    // PostgreSQL: take the subscription row locks in id order first, the order the
    // delivery recorder uses too, so the two can never deadlock.
    if tx.backend() == crate::db::Backend::Postgres {
        sqlx::query(
            "SELECT id FROM webhook_subscriptions WHERE enabled = 1 ORDER BY id FOR UPDATE",
        )
        .execute(tx.conn())
        .await?;
    }
    let pattern = format!("%\"{}\"%", event_type.replace('_', "\\_"));
    let rows = sqlx::query(
        "UPDATE webhook_subscriptions SET last_sequence = last_sequence + 1 \
         WHERE enabled = 1 AND (event_types = '[]' OR event_types LIKE $1 ESCAPE '\\') \
         RETURNING id, last_sequence",
    )
    .bind(pattern)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("last_sequence")?)))
        .collect()
}

/// Queues `message_id` for each `(subscription, sequence)` in one multi-row INSERT.
async fn insert_deliveries(
    tx: &mut Tx,
    message_id: &MessageId,
    sequences: &[(SubscriptionId, i64)],
    due: Timestamp,
) -> Result<(), sqlx::Error> {
    if sequences.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..sequences.len())
        .map(|i| {
            let p = 3 + i * 3;
            format!(
                "(${}, $1, ${}, ${}, 'pending', 0, $2, $2, $2)",
                p,
                p + 1,
                p + 2
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO webhook_deliveries (id, message_id, subscription_id, sequence, status, attempts, \
         next_attempt_at, created_at, updated_at) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(message_id)
        .bind(due);
    for (subscription, sequence) in sequences {
        query = query
            .bind(DeliveryId::generate())
            .bind(subscription)
            .bind(*sequence);
    }
    query.execute(tx.conn()).await?;
    Ok(())
}

/// Queues `message_id` for one subscription with that subscription's next sequence number
/// (a test event, or a retry to a subscription made after the message). With `hold_until`
/// the delivery starts claimed, for a caller that sends it itself.
pub async fn queue_delivery(
    tx: &mut Tx,
    message_id: &MessageId,
    subscription: &SubscriptionId,
    due: Timestamp,
    hold_until: Option<i64>,
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
         next_attempt_at, locked_until, locked_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $5, $5)",
    )
    .bind(&id)
    .bind(message_id)
    .bind(subscription)
    .bind(sequence)
    .bind(due)
    .bind(hold_until)
    .bind(hold_until.map(|_| "inline"))
    .execute(tx.conn())
    .await?;
    Ok(id)
}
