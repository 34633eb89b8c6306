//! The transactional outbox: [`emit`] writes one message row inside the caller's
//! transaction, so the event commits with the clinical change or not at all. That row is
//! all an emission costs: no per-subscription rows, no subscription locks, no sequence
//! counters. After commit the engine fans the message out (`delivery::fanout`), or the
//! Svix relay hands it over.

use super::events::Event;
use super::store;
use crate::db::Tx;
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::time::Timestamp;

/// The commit signal woken when a transaction wrote outbox messages.
pub const OUTBOX_SIGNAL: &str = "webhooks.outbox";
/// The commit signal woken when a transaction made deliveries due again (retry, recover,
/// re-enable).
pub const REQUEUE_SIGNAL: &str = "webhooks.requeue";

/// Records `event` in the outbox of `tx`. The engine is woken when `tx` commits; nothing
/// is sent before.
pub async fn emit(tx: &mut Tx, event: Event) -> Result<MessageId, sqlx::Error> {
    let message_id = insert_message(tx, &event, Timestamp::now(), true).await?;
    metrics::counter!("ehrs_events_emitted_total", "event_type" => event.event_type.as_str())
        .increment(1);
    Ok(message_id)
}

/// Writes the message row of `event`. With `fan_out` it waits in the outbox for the
/// fan-out (or relay); without, it is written already handed off, for a caller that
/// queues its one delivery itself (a test event).
pub async fn insert_message(
    tx: &mut Tx,
    event: &Event,
    now: Timestamp,
    fan_out: bool,
) -> Result<MessageId, sqlx::Error> {
    let message_id = MessageId::generate();
    let mut payload =
        serde_json::json!({ "data": event.data, "changed_fields": event.changed_fields });
    if let Some(context) = &event.context {
        payload["context"] = context.clone();
    }
    store::insert_message(
        tx,
        &message_id,
        event.event_type.as_str(),
        &payload.to_string(),
        &event.id_only_data().to_string(),
        now,
        (!fan_out).then_some(now),
    )
    .await?;
    if fan_out {
        tx.notify_on_commit(OUTBOX_SIGNAL);
    }
    Ok(message_id)
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
    let sequence = store::advance_sequence(tx, subscription, 1).await?;
    let id = DeliveryId::generate();
    let row = store::NewDelivery {
        id: &id,
        message_id,
        subscription_id: subscription,
        sequence,
        locked_until: hold_until,
        locked_by: hold_until.map(|_| "inline"),
    };
    store::insert_deliveries(tx, std::slice::from_ref(&row), due).await?;
    Ok(id)
}
