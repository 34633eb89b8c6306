//! The catch-up feed's reads: one subscription's deliveries in sequence order, with what
//! renders and signs them again. Every page walks the `UNIQUE (subscription_id,
//! sequence)` index of `webhook_deliveries` from the cursor and stops after `limit` rows,
//! so its cost does not grow with the table (the plans are in docs/webhooks.md).

use super::DeliveryStatus;
use crate::db::Db;
use crate::ids::{MessageId, SubscriptionId};
use crate::outbound::payload::PayloadMode;
use crate::time::Timestamp;

/// What the feed needs of its subscription: how to render, and the sealed secrets that
/// sign (and that the partner's feed token is derived from).
#[derive(Debug, sqlx::FromRow)]
pub struct FeedSubscription {
    pub payload_mode: PayloadMode,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// The highest sequence given so far.
    pub last_sequence: i64,
}

/// One delivery of the feed with its message.
#[derive(Debug, sqlx::FromRow)]
pub struct FeedRow {
    pub sequence: i64,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub message_id: MessageId,
    pub event_id: String,
    pub event_type: String,
    /// `None` once the retention period cleared it.
    pub payload: Option<String>,
    pub ids: String,
    pub created_at: Timestamp,
}

pub async fn feed_subscription(
    db: &Db,
    id: &SubscriptionId,
) -> Result<Option<FeedSubscription>, sqlx::Error> {
    sqlx::query_as(
        "SELECT payload_mode, secret_enc, previous_secret_enc, previous_secret_until, last_sequence \
         FROM webhook_subscriptions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

/// The page query: at most `limit` deliveries of `subscription` after sequence `after`,
/// in sequence order.
pub const FEED_PAGE_SQL: &str = "SELECT d.sequence, d.status, d.attempts, d.message_id, \
     m.event_id, m.event_type, m.payload, m.ids, m.created_at \
     FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
     WHERE d.subscription_id = $1 AND d.sequence > $2 \
     ORDER BY d.sequence LIMIT $3";

pub async fn feed_page(
    db: &Db,
    subscription: &SubscriptionId,
    after: i64,
    limit: i64,
) -> Result<Vec<FeedRow>, sqlx::Error> {
    sqlx::query_as(FEED_PAGE_SQL)
        .bind(subscription)
        .bind(after)
        .bind(limit)
        .fetch_all(db.pool())
        .await
}

/// The lowest sequence after `after` whose message still has its payload (`None`: no
/// later one has). Walks the same index from `after`; it runs only to answer a 410, and
/// stops at the first message retention left.
pub async fn first_held_after(
    db: &Db,
    subscription: &SubscriptionId,
    after: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT d.sequence FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
         WHERE d.subscription_id = $1 AND d.sequence > $2 AND m.payload IS NOT NULL \
         ORDER BY d.sequence LIMIT 1",
    )
    .bind(subscription)
    .bind(after)
    .fetch_optional(db.pool())
    .await
}
