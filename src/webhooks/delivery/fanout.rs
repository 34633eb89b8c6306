//! The fan-out: committed outbox messages become deliveries, one per matching enabled
//! subscription, each with that subscription's next sequence number. This is the only
//! place that hands out sequence numbers for emitted events, so the clinical transaction
//! writes one row and takes no lock (see `outbox::emit`).
//!
//! One batch is one transaction: read the oldest messages not handed off yet, read the
//! enabled subscriptions, advance each matching subscription's `last_sequence` once by
//! its count, insert the deliveries, mark the messages handed off (`relayed_at`).
//! Sequences are therefore gapless and follow the order the messages are read in, which
//! must be commit order, and no committed message may ever be passed over:
//!
//! - **SQLite** has one writer, so a message's rowid order is its commit order, and the
//!   batch's read runs inside the write transaction (`BEGIN IMMEDIATE`), after every
//!   earlier commit and before any later one.
//! - **PostgreSQL** assigns ids before commit, so a transaction that started first can
//!   commit last. Each message carries the id of the transaction that wrote it (`txid`,
//!   an `xid8` defaulting to `pg_current_xact_id()`), and the batch reads only messages
//!   whose `txid` is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
//!   below that horizon has finished, so no message can still appear below it. Messages
//!   are read in `(txid, position)` order; a later batch only ever finds transaction ids
//!   at or above the earlier batch's horizon, so the order is total and stable. A
//!   long-open write transaction delays the fan-out (never loses or reorders anything).
//!   Batches are serialised across instances by a transaction-scoped advisory lock
//!   taken with `pg_try_advisory_xact_lock`: one instance fans out at a time, the others
//!   skip the round, and writers never touch that lock, so any number of instances take
//!   writes at full speed.
//!
//! Deliveries the caller has room for (never those of an ordered subscription) are
//! inserted already leased to this engine and returned, so the dispatcher sends them
//! from memory without reading them back; the rest are inserted free, for the claim path
//! (`claim.rs`) of any engine.

use super::EngineConfig;
use super::claim::{Claimed, json_rows};
use crate::db::{Backend, Db};
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::time::Timestamp;
use std::collections::HashMap;

/// Messages fanned out per transaction.
pub const BATCH: i64 = 512;
/// Deliveries per multi-row INSERT (7 parameters each, within SQLite's limit).
const INSERT_CHUNK: usize = 128;
/// Key of the PostgreSQL advisory lock that makes one instance the fan-out leader for a
/// batch ("ehrsfan" in ASCII).
const FANOUT_LOCK: i64 = 0x0065_6872_7366_616e;

/// An enabled subscription as the fan-out and the sender need it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub id: SubscriptionId,
    pub url: String,
    pub payload_mode: String,
    pub event_types: String,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// Non-zero: ordered delivery (see `lanes.rs`).
    pub ordered: i64,
}

impl Target {
    /// The event types this subscription's filter names (empty: every type).
    fn filter(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }

    /// Whether this subscription's filter takes `event_type` (an empty filter takes all).
    #[cfg(test)]
    fn takes(&self, event_type: &str) -> bool {
        takes(&self.filter(), event_type)
    }
}

fn takes(filter: &[String], event_type: &str) -> bool {
    filter.is_empty() || filter.iter().any(|t| t == event_type)
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

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages handed off; 0 when there was nothing to do (or another instance leads).
    pub messages: usize,
    /// Deliveries leased to this engine, oldest first within each subscription.
    pub leased: Vec<Claimed>,
    /// Subscriptions that got deliveries the caller had no room for (claimable later).
    pub overflowed: Vec<SubscriptionId>,
    /// The enabled subscriptions when the batch ran (`None` if it read none).
    pub targets: Option<Vec<Target>>,
}

#[derive(sqlx::FromRow)]
struct Message {
    id: MessageId,
    event_id: String,
    event_type: String,
    payload: Option<String>,
    ids: String,
    created_at: Timestamp,
}

/// Fans out one batch. `room` says how many deliveries per subscription the caller can
/// take into memory now; the rest are inserted unleased.
pub async fn run_batch(
    db: &Db,
    config: &EngineConfig,
    room: &(dyn Fn(&SubscriptionId) -> usize + Sync),
) -> Result<Batch, sqlx::Error> {
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(FANOUT_LOCK)
            .fetch_one(tx.conn())
            .await?;
        if !leader {
            tx.rollback().await?;
            return Ok(Batch::default());
        }
    }
    let read = match db.backend() {
        // Left to itself SQLite walks the whole table in rowid order to satisfy the
        // ORDER BY (every batch reading every message ever kept); the partial index holds
        // only the unhanded messages, a few to sort.
        Backend::Sqlite => {
            "SELECT id, event_id, event_type, payload, ids, created_at FROM webhook_messages \
             INDEXED BY webhook_messages_unrelayed WHERE relayed_at IS NULL ORDER BY rowid LIMIT $1"
        }
        Backend::Postgres => {
            "SELECT id, event_id, event_type, payload, ids, created_at FROM webhook_messages \
             WHERE relayed_at IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY txid, position LIMIT $1"
        }
    };
    let messages: Vec<Message> = sqlx::query_as(read)
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
    if messages.is_empty() {
        tx.rollback().await?;
        return Ok(Batch::default());
    }
    let targets = enabled_targets(tx.conn()).await?;

    // Which subscriptions take which messages, in message order (filters parsed once).
    let filters: Vec<Vec<String>> = targets.iter().map(Target::filter).collect();
    let mut per_target: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for (m, message) in messages.iter().enumerate() {
        for (t, filter) in filters.iter().enumerate() {
            if takes(filter, &message.event_type) {
                per_target[t].push(m);
            }
        }
    }

    let now = Timestamp::now();
    let lease_until = now.millis() + config.lease().as_millis() as i64;
    let mut rows: Vec<NewDelivery> = Vec::new();
    let mut batch = Batch {
        messages: messages.len(),
        ..Batch::default()
    };
    // Subscription rows are updated in id order (the order `targets` is in), the order
    // the recorder locks them in too, so the two never deadlock.
    for (target, taken) in targets.iter().zip(&per_target) {
        if taken.is_empty() {
            continue;
        }
        let last: i64 = sqlx::query_scalar(
            "UPDATE webhook_subscriptions SET last_sequence = last_sequence + $2 WHERE id = $1 \
             RETURNING last_sequence",
        )
        .bind(&target.id)
        .bind(taken.len() as i64)
        .fetch_one(tx.conn())
        .await?;
        let first = last - taken.len() as i64 + 1;
        // An ordered subscription's deliveries always go through the claim path, which
        // takes them strictly in sequence (`lanes.rs`).
        let room = if target.ordered != 0 {
            0
        } else {
            room(&target.id)
        };
        if taken.len() > room {
            batch.overflowed.push(target.id.clone());
        }
        for (i, &m) in taken.iter().enumerate() {
            rows.push(NewDelivery {
                id: DeliveryId::generate(),
                message: m,
                target: target.id.clone(),
                sequence: first + i as i64,
                leased: i < room,
            });
        }
    }
    insert_deliveries(
        &mut tx,
        &messages,
        &rows,
        now,
        lease_until,
        &config.instance,
    )
    .await?;
    let handed: Vec<&MessageId> = messages.iter().map(|m| &m.id).collect();
    let sql = format!(
        "UPDATE webhook_messages SET relayed_at = $2 WHERE id IN ({})",
        json_rows(db.backend(), "$1")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(&handed).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;

    let by_id: HashMap<&SubscriptionId, &Target> = targets.iter().map(|t| (&t.id, t)).collect();
    for row in rows.into_iter().filter(|r| r.leased) {
        let message = &messages[row.message];
        let target = by_id[&row.target];
        batch.leased.push(Claimed {
            delivery_id: row.id,
            message_id: message.id.clone(),
            subscription_id: row.target,
            sequence: row.sequence,
            attempts: 0,
            event_id: message.event_id.clone(),
            event_type: message.event_type.clone(),
            payload: message.payload.clone(),
            ids: message.ids.clone(),
            created_at: message.created_at,
            url: target.url.clone(),
            payload_mode: target.payload_mode.clone(),
            secret_enc: target.secret_enc.clone(),
            previous_secret_enc: target.previous_secret_enc.clone(),
            previous_secret_until: target.previous_secret_until,
            lease_until: Some(lease_until),
        });
    }
    batch.targets = Some(targets);
    Ok(batch)
}

struct NewDelivery {
    id: DeliveryId,
    /// Index into the batch's messages.
    message: usize,
    target: SubscriptionId,
    sequence: i64,
    leased: bool,
}

async fn insert_deliveries(
    tx: &mut crate::db::Tx,
    messages: &[Message],
    rows: &[NewDelivery],
    now: Timestamp,
    lease_until: i64,
    instance: &str,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 2 + i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, 'pending', 0, $1, ${}, ${}, $1, $1)",
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
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for row in chunk {
            query = query
                .bind(&row.id)
                .bind(&messages[row.message].id)
                .bind(&row.target)
                .bind(row.sequence)
                .bind(row.leased.then_some(lease_until))
                .bind(row.leased.then_some(instance));
        }
        query.execute(tx.conn()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(event_types: &str) -> Target {
        Target {
            id: SubscriptionId::generate(),
            url: String::new(),
            payload_mode: "full".into(),
            event_types: event_types.into(),
            secret_enc: String::new(),
            previous_secret_enc: None,
            previous_secret_until: None,
            ordered: 0,
        }
    }

    #[test]
    fn an_empty_filter_takes_every_type_and_a_list_only_its_own() {
        assert!(target("[]").takes("camp.created"));
        assert!(target(r#"["camp.created"]"#).takes("camp.created"));
        assert!(!target(r#"["camp.created"]"#).takes("camp.deleted"));
        assert!(!target(r#"["camp_created"]"#).takes("camp.created"));
    }
}
