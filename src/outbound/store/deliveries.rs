//! Claims, leases and requeues on `webhook_deliveries`.
//!
//! A claim is a lease in the row (`locked_until`, `locked_by`), so several processes on
//! PostgreSQL share the work and a crashed process's claims come back. Due deliveries
//! are read per subscription through the `(subscription_id, status, next_attempt_at,
//! sequence)` index, so a claim's cost does not grow with the backlog, then locked with
//! one conditional UPDATE that differs by dialect (PostgreSQL adds `FOR UPDATE SKIP
//! LOCKED`; SQLite's single writer makes the plain conditional UPDATE atomic).
//!
//! Every time is a parameter: the engine's clock decides what is due and when a lease
//! ends, not the database's.

use super::DeliveryStatus;
use crate::db::{Backend, Db, Tx};
use crate::db::{json_ids, json_rows};
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::outbound::payload::PayloadMode;
use crate::time::Timestamp;

const PENDING: DeliveryStatus = DeliveryStatus::Pending;

/// A delivery with everything needed to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
    pub sequence: i64,
    pub attempts: i64,
    pub event_id: String,
    pub event_type: String,
    /// `None` once the retention period cleared it.
    pub payload: Option<String>,
    pub ids: String,
    pub created_at: Timestamp,
    pub url: String,
    pub payload_mode: PayloadMode,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// When this engine's lease on the row ends (`None`: held by the caller, who sends
    /// it at once).
    #[sqlx(default)]
    pub lease_until: Option<i64>,
}

/// A pending delivery of an ordered subscription, with what decides whether it may go.
#[derive(sqlx::FromRow)]
pub struct InLine {
    #[sqlx(flatten)]
    pub claimed: Claimed,
    pub next_attempt_at: i64,
    pub locked_until: Option<i64>,
    pub locked_by: Option<String>,
}

const CLAIMED_COLUMNS: &str = "d.id AS delivery_id, d.message_id, d.subscription_id, d.sequence, d.attempts, \
     m.event_id, m.event_type, m.payload, m.ids, m.created_at, \
     s.url, s.payload_mode, s.secret_enc, s.previous_secret_enc, s.previous_secret_until";

/// The lowest `limit` pending deliveries of an enabled ordered subscription, in sequence
/// order, due or not, leased or not: the caller walks the unbroken run.
pub async fn pending_in_line(
    db: &Db,
    subscription: &SubscriptionId,
    limit: usize,
) -> Result<Vec<InLine>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLAIMED_COLUMNS}, d.next_attempt_at, d.locked_until, d.locked_by \
         FROM webhook_deliveries d \
         JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.subscription_id = $1 AND d.status = $3 AND s.enabled = 1 \
         ORDER BY d.sequence LIMIT $2"
    )))
    .bind(subscription)
    .bind(limit as i64)
    .bind(PENDING)
    .fetch_all(db.pool())
    .await
}

/// The oldest `limit` pending deliveries of an enabled subscription that are due at `now`
/// and not leased.
pub async fn due(
    db: &Db,
    subscription: &SubscriptionId,
    now: i64,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLAIMED_COLUMNS} \
         FROM webhook_deliveries d \
         JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.subscription_id = $1 AND d.status = $4 AND d.next_attempt_at <= $2 \
           AND (d.locked_until IS NULL OR d.locked_until < $2) AND s.enabled = 1 \
         ORDER BY d.next_attempt_at, d.sequence LIMIT $3"
    )))
    .bind(subscription)
    .bind(now)
    .bind(limit as i64)
    .bind(PENDING)
    .fetch_all(db.pool())
    .await
}

/// One delivery with everything needed to send it, whatever its subscription's state
/// (the admin test route sends to disabled subscriptions too).
pub async fn by_id(db: &Db, id: &DeliveryId) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLAIMED_COLUMNS} \
         FROM webhook_deliveries d \
         JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

/// Leases those of `ids` still pending and free at `now` to `instance` until
/// `lease_end`; returns the ids it took.
pub async fn lock(
    db: &Db,
    ids: &[&DeliveryId],
    instance: &str,
    now: i64,
    lease_end: i64,
) -> Result<Vec<DeliveryId>, sqlx::Error> {
    let backend = db.backend();
    let still_free = "status = $5 AND (locked_until IS NULL OR locked_until < $4)";
    let rows = json_rows(backend, "$1");
    let sql = match backend {
        Backend::Sqlite => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN ({rows}) AND {still_free} RETURNING id"
        ),
        Backend::Postgres => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE id IN ({rows}) AND {still_free} \
                          FOR UPDATE SKIP LOCKED) RETURNING id"
        ),
    };
    let mut tx = db.begin().await?;
    let locked = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(json_ids(ids))
        .bind(lease_end)
        .bind(instance)
        .bind(now)
        .bind(PENDING)
        .fetch_all(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(locked)
}

/// Releases the claims of engine `instance` that were not finished (graceful stop).
pub async fn release_unfinished(db: &Db, instance: &str) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released = sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE locked_by = $1 AND status = $2",
    )
    .bind(instance)
    .bind(PENDING)
    .execute(tx.conn())
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

/// Releases the leases of engine `instance` on `ids`.
pub async fn release(db: &Db, instance: &str, ids: &[DeliveryId]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE id IN ({}) AND locked_by = $2 AND status = $3",
        json_rows(db.backend(), "$1")
    );
    let mut tx = db.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_ids(ids))
        .bind(instance)
        .bind(PENDING)
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// Releases every lease in the database (SQLite, at the start of its one engine).
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released = sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE locked_until IS NOT NULL AND status = $1",
    )
    .bind(PENDING)
    .execute(tx.conn())
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

/// Makes the free deliveries of `message` due at `now`: with `subscription` that one
/// (even if delivered), otherwise every one not delivered. Returns their subscriptions.
pub async fn requeue_message(
    tx: &mut Tx,
    message: &MessageId,
    subscription: Option<&SubscriptionId>,
    now: i64,
) -> Result<Vec<SubscriptionId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_deliveries SET status = $4, next_attempt_at = $3, updated_at = $3 \
         WHERE message_id = $1 AND locked_until IS NULL \
           AND (($2 IS NULL AND status <> $5) OR subscription_id = $2) \
         RETURNING subscription_id",
    )
    .bind(message)
    .bind(subscription)
    .bind(now)
    .bind(PENDING)
    .bind(DeliveryStatus::Delivered)
    .fetch_all(tx.conn())
    .await
}

/// Whether `message` has a delivery to `subscription`.
pub async fn delivery_exists(
    tx: &mut Tx,
    message: &MessageId,
    subscription: &SubscriptionId,
) -> Result<bool, sqlx::Error> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE message_id = $1 AND subscription_id = $2",
    )
    .bind(message)
    .bind(subscription)
    .fetch_optional(tx.conn())
    .await?;
    Ok(existing.is_some())
}

/// Makes the free failed or exhausted deliveries of `subscription` whose message was
/// created in `[since, until)`, still has its payload, and is of a type `filter` takes
/// (its filter now: it may have narrowed since the first send) due at `now`; returns how
/// many.
pub async fn recover(
    tx: &mut Tx,
    subscription: &SubscriptionId,
    since: Timestamp,
    until: Option<Timestamp>,
    filter: &[String],
    now: i64,
) -> Result<u64, sqlx::Error> {
    let types = if filter.is_empty() {
        String::new()
    } else {
        let places: Vec<String> = (0..filter.len()).map(|i| format!("${}", i + 7)).collect();
        format!(" AND event_type IN ({})", places.join(", "))
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET status = $5, next_attempt_at = $4, updated_at = $4 \
         WHERE subscription_id = $1 AND locked_until IS NULL \
           AND (status = $6 OR (status = $5 AND attempts > 0)) \
           AND message_id IN (SELECT id FROM webhook_messages WHERE created_at >= $2 \
                              AND ($3 IS NULL OR created_at < $3) AND payload IS NOT NULL{types})"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(subscription)
        .bind(since)
        .bind(until)
        .bind(now)
        .bind(PENDING)
        .bind(DeliveryStatus::Exhausted);
    for event_type in filter {
        query = query.bind(event_type);
    }
    Ok(query.execute(tx.conn()).await?.rows_affected())
}

/// Re-enabled: the free pending deliveries of `subscription` that came due while it was
/// disabled are all made due at `now`, so they tie and go out oldest sequence first
/// (otherwise the one that came due first would lead). One whose retry is still ahead
/// keeps its time: re-enabling is not a retry.
pub async fn make_due(
    tx: &mut Tx,
    subscription: &SubscriptionId,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $2 \
         WHERE subscription_id = $1 AND status = $3 AND locked_until IS NULL \
           AND next_attempt_at <= $2",
    )
    .bind(subscription)
    .bind(now)
    .bind(PENDING)
    .execute(tx.conn())
    .await?;
    Ok(())
}
