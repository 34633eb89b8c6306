//! The outbox and the fan-out's writes: message rows, per-subscription sequence numbers
//! and new deliveries. Why the fan-out reads messages the way it does (commit order on
//! both dialects) is told in `delivery/fanout.rs`; the statements are here.

use super::DeliveryStatus;
use crate::db::{Backend, Tx};
use crate::db::{json_ids, json_rows};
use crate::ids::{DeliveryId, EventId, MessageId, SubscriptionId};
use crate::outbound::payload::PayloadMode;
use crate::time::Timestamp;

/// Key of the PostgreSQL advisory lock that makes one instance the fan-out leader for a
/// batch ("ehrsfan" in ASCII).
pub const FANOUT_LOCK: i64 = 0x0065_6872_7366_616e;
/// Deliveries per multi-row INSERT (6 parameters each plus one, within SQLite's limit).
const INSERT_CHUNK: usize = 128;

/// An enabled subscription as the fan-out and the sender need it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub id: SubscriptionId,
    pub url: String,
    pub payload_mode: PayloadMode,
    pub event_types: String,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// Non-zero: ordered delivery (see `delivery/lanes.rs`).
    pub ordered: i64,
}

/// The enabled subscriptions, in id order.
pub async fn enabled_targets<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, url, payload_mode, event_types, secret_enc, previous_secret_enc, previous_secret_until, ordered \
         FROM webhook_subscriptions WHERE enabled = 1 ORDER BY id",
    )
    .fetch_all(conn)
    .await
}

/// A message waiting for the fan-out.
#[derive(Debug, sqlx::FromRow)]
pub struct Message {
    pub id: MessageId,
    pub event_id: String,
    pub event_type: String,
    pub payload: Option<String>,
    pub ids: String,
    pub created_at: Timestamp,
}

/// PostgreSQL: takes the fan-out leader's lock for this transaction; false when another
/// instance holds it. SQLite has one engine per file: always true.
pub async fn lead_fanout(tx: &mut Tx) -> Result<bool, sqlx::Error> {
    if tx.backend() == Backend::Sqlite {
        return Ok(true);
    }
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(FANOUT_LOCK)
        .fetch_one(tx.conn())
        .await
}

/// What the fan-out may hand off now.
#[derive(Debug, Default)]
pub struct Unrelayed {
    /// The oldest messages not handed off yet, in commit order.
    pub messages: Vec<Message>,
    /// PostgreSQL: messages committed above the horizon wait for an older transaction
    /// still open (see `delivery/fanout.rs`); the fan-out must look again soon, since
    /// that transaction's commit may wake nobody.
    pub held_back: bool,
}

/// PostgreSQL: a message row and whether it is below the snapshot horizon.
#[derive(sqlx::FromRow)]
struct HorizonRow {
    #[sqlx(flatten)]
    message: Message,
    settled: bool,
}

/// The oldest `limit` messages not handed off yet, in commit order.
pub async fn unrelayed(tx: &mut Tx, limit: i64) -> Result<Unrelayed, sqlx::Error> {
    match tx.backend() {
        // Left to itself SQLite walks the whole table in rowid order to satisfy the
        // ORDER BY (every batch reading every message ever kept); the partial index holds
        // only the unhanded messages, a few to sort.
        Backend::Sqlite => {
            let messages = sqlx::query_as(
                "SELECT id, event_id, event_type, payload, ids, created_at FROM webhook_messages \
                 INDEXED BY webhook_messages_unrelayed WHERE relayed_at IS NULL ORDER BY rowid LIMIT $1",
            )
            .bind(limit)
            .fetch_all(tx.conn())
            .await?;
            Ok(Unrelayed {
                messages,
                held_back: false,
            })
        }
        // Rows come in `(txid, position)` order, so those below the horizon come first;
        // the first one above it ends what may be handed off, and says some are held back.
        Backend::Postgres => {
            let rows: Vec<HorizonRow> = sqlx::query_as(
                "SELECT id, event_id, event_type, payload, ids, created_at, \
                 txid < pg_snapshot_xmin(pg_current_snapshot()) AS settled FROM webhook_messages \
                 WHERE relayed_at IS NULL ORDER BY txid, position LIMIT $1",
            )
            .bind(limit)
            .fetch_all(tx.conn())
            .await?;
            let held_back = rows.iter().any(|row| !row.settled);
            let messages = rows
                .into_iter()
                .take_while(|row| row.settled)
                .map(|row| row.message)
                .collect();
            Ok(Unrelayed {
                messages,
                held_back,
            })
        }
    }
}

/// Marks messages `ids` handed off (to the fan-out or to Svix) at `now`.
pub async fn mark_relayed<T: serde::Serialize>(
    tx: &mut Tx,
    ids: &[T],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE webhook_messages SET relayed_at = $2 WHERE id IN ({})",
        json_rows(tx.backend(), "$1")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_ids(ids))
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Advances `subscription`'s `last_sequence` by `count`; returns the new last one.
pub async fn advance_sequence(
    tx: &mut Tx,
    subscription: &SubscriptionId,
    count: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_subscriptions SET last_sequence = last_sequence + $2 WHERE id = $1 \
         RETURNING last_sequence",
    )
    .bind(subscription)
    .bind(count)
    .fetch_one(tx.conn())
    .await
}

/// A delivery to insert, pending with no attempt yet.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub id: &'a DeliveryId,
    pub message_id: &'a MessageId,
    pub subscription_id: &'a SubscriptionId,
    pub sequence: i64,
    /// Leased from the start: when the lease ends and to whom.
    pub locked_until: Option<i64>,
    pub locked_by: Option<&'a str>,
}

/// Inserts pending deliveries due, created and updated at `now`.
pub async fn insert_deliveries(
    tx: &mut Tx,
    rows: &[NewDelivery<'_>],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 3 + i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, $2, 0, $1, ${}, ${}, $1, $1)",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, message_id, subscription_id, sequence, status, attempts, \
             next_attempt_at, locked_until, locked_by, created_at, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(DeliveryStatus::Pending);
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.message_id)
                .bind(row.subscription_id)
                .bind(row.sequence)
                .bind(row.locked_until)
                .bind(row.locked_by);
        }
        query.execute(tx.conn()).await?;
    }
    Ok(())
}

/// Writes a message row; `relayed_at` set means it is already handed off.
pub async fn insert_message(
    tx: &mut Tx,
    id: &MessageId,
    event_type: &str,
    payload: &str,
    ids: &str,
    now: Timestamp,
    relayed_at: Option<Timestamp>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_messages (id, event_id, event_type, payload, ids, created_at, relayed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(EventId::generate())
    .bind(event_type)
    .bind(payload)
    .bind(ids)
    .bind(now)
    .bind(relayed_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The event id of outbox message `id` and when it was handed off, if it exists (the
/// Svix backend addresses Svix's copy by that event id).
pub async fn relayed_event_id(
    db: &crate::db::Db,
    id: &MessageId,
) -> Result<Option<(String, Option<i64>)>, sqlx::Error> {
    sqlx::query_as("SELECT event_id, relayed_at FROM webhook_messages WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// An outbox message as the Svix relay hands it over.
#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    /// `None` once the retention period cleared it.
    pub payload: Option<String>,
    pub ids: String,
    pub created_at: Timestamp,
}

/// The oldest `limit` messages not handed off yet (the Svix relay's next batch).
pub async fn unrelayed_messages(
    db: &crate::db::Db,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_id, event_type, payload, ids, created_at FROM webhook_messages \
         WHERE relayed_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Messages not handed off yet (the Svix backend's queue depth).
pub async fn unrelayed_count(db: &crate::db::Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE relayed_at IS NULL")
        .fetch_one(db.pool())
        .await
}
