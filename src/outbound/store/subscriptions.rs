//! `webhook_subscriptions` for the embedded backend: who receives which events, where,
//! signed with which sealed secret. (Under Svix the subscriptions live in Svix.) The
//! health columns are written by `outbound::health`.

use crate::crypto::SecretBox;
use crate::db::{Db, Tx};
use crate::ids::SubscriptionId;
use crate::outbound::backend::FailureStats;
use crate::outbound::health::{self, Ledger};
use crate::outbound::subscriptions::{
    NewSubscription, Subscription, SubscriptionUpdate, heartbeat_ms, show_interval,
};
use crate::time::Timestamp;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, url, description, event_types, payload_mode, ordered, heartbeat_interval_ms, enabled, paused_reason, paused_at, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let event_types: String = row.try_get("event_types")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
        payload: row.try_get("payload_mode")?,
        ordered: row.try_get::<i64, _>("ordered")? != 0,
        heartbeat_interval: row
            .try_get::<Option<i64>, _>("heartbeat_interval_ms")?
            .map(show_interval),
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        paused_at: row.try_get("paused_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a subscription with a sealed copy of `secret`.
pub async fn insert(
    tx: &mut Tx,
    input: &NewSubscription,
    secret: &str,
    secrets: &SecretBox,
) -> Result<Subscription, sqlx::Error> {
    let id = SubscriptionId::generate();
    let now = Timestamp::now();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_subscriptions (id, url, description, event_types, payload_mode, secret_enc, enabled, \
         consecutive_failures, last_sequence, created_at, updated_at, ordered, heartbeat_interval_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, 0, 0, $7, $7, $8, $9) RETURNING {COLUMNS}"
    )))
    .bind(&id)
    .bind(&input.url)
    .bind(&input.description)
    .bind(json!(input.event_types).to_string())
    .bind(input.payload)
    .bind(secrets.seal(secret, id.as_str()))
    .bind(now)
    .bind(i64::from(input.ordered))
    .bind(input.heartbeat_ms())
    .fetch_one(tx.conn())
    .await?;
    from_row(&row)
}

pub async fn get(db: &Db, id: &SubscriptionId) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Subscription>, i64), sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_subscriptions")
        .fetch_one(db.pool())
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}

pub async fn update(
    tx: &mut Tx,
    id: &SubscriptionId,
    input: &SubscriptionUpdate,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET url = COALESCE($2, url), description = COALESCE($3, description), \
         event_types = COALESCE($4, event_types), payload_mode = COALESCE($5, payload_mode), updated_at = $6, \
         ordered = COALESCE($7, ordered), \
         heartbeat_interval_ms = CASE WHEN $8 = 1 THEN $9 ELSE heartbeat_interval_ms END \
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(input.url.as_deref())
    .bind(input.description.as_deref())
    .bind(input.event_types.as_ref().map(|t| json!(t).to_string()))
    .bind(input.payload)
    .bind(Timestamp::now())
    .bind(input.ordered.map(i64::from))
    .bind(i64::from(input.heartbeat_interval.is_some()))
    .bind(
        input
            .heartbeat_interval
            .as_ref()
            .and_then(|interval| interval.as_deref())
            .and_then(|raw| heartbeat_ms(raw).ok()),
    )
    .fetch_optional(tx.conn())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes the subscription with its deliveries and attempts (messages stay).
pub async fn delete(tx: &mut Tx, id: &SubscriptionId) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM webhook_attempts WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    let deleted = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

/// Enables or disables. Enabling clears the pause and the failure streak and makes the
/// held deliveries due `now` (the engine's clock), so they go out in sequence order.
pub async fn set_enabled(
    tx: &mut Tx,
    id: &SubscriptionId,
    enabled: bool,
    now: Timestamp,
) -> Result<Option<Subscription>, sqlx::Error> {
    if enabled {
        health::reset(tx, Ledger::Subscriptions, id, now.millis()).await?;
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET enabled = $3, updated_at = $2 WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .bind(i64::from(enabled))
    .fetch_optional(tx.conn())
    .await?;
    if enabled && row.is_some() {
        super::make_due(tx, id, now).await?;
    }
    row.as_ref().map(from_row).transpose()
}

/// Replaces the secret; the previous one keeps signing until `overlap_until`.
pub async fn rotate_secret(
    tx: &mut Tx,
    id: &SubscriptionId,
    new_secret: &str,
    overlap_until: Timestamp,
    secrets: &SecretBox,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET previous_secret_enc = secret_enc, previous_secret_until = $3, \
         secret_enc = $2, updated_at = $4 WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(secrets.seal(new_secret, id.as_str()))
    .bind(overlap_until)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Failure streak, pause state and backlog of one subscription.
pub async fn failure_stats(
    db: &Db,
    id: &SubscriptionId,
) -> Result<Option<FailureStats>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.consecutive_failures, s.last_failure_at, s.last_success_at, s.enabled, s.paused_reason, s.paused_at, \
         (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.status = $2) AS pending \
         FROM webhook_subscriptions s WHERE s.id = $1",
    )
    .bind(id)
    .bind(super::DeliveryStatus::Pending)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let paused_reason: Option<String> = row.try_get("paused_reason")?;
        Ok(FailureStats {
            subscription_id: id.clone(),
            consecutive_failures: row.try_get("consecutive_failures")?,
            last_failure_at: row.try_get("last_failure_at")?,
            last_success_at: row.try_get("last_success_at")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            auto_paused: paused_reason.is_some(),
            paused_reason,
            paused_at: row.try_get("paused_at")?,
            pending_deliveries: row.try_get("pending")?,
        })
    })
    .transpose()
}

/// A subscription that has gone a heartbeat interval without a delivery.
#[derive(Debug, sqlx::FromRow)]
pub struct DueHeartbeat {
    pub id: SubscriptionId,
    #[sqlx(rename = "heartbeat_interval_ms")]
    pub interval_ms: i64,
    created_at: i64,
    last_success_at: Option<i64>,
    last_heartbeat_at: Option<i64>,
}

impl DueHeartbeat {
    /// The last time the receiver heard from us: a delivery, a heartbeat, or creation.
    fn last_heard(&self) -> i64 {
        self.created_at
            .max(self.last_success_at.unwrap_or(0))
            .max(self.last_heartbeat_at.unwrap_or(0))
    }
}

/// The enabled subscriptions with heartbeats, nothing pending, and nothing sent for an
/// interval at `now`.
pub async fn due_heartbeats(db: &Db, now: Timestamp) -> Result<Vec<DueHeartbeat>, sqlx::Error> {
    let candidates: Vec<DueHeartbeat> = sqlx::query_as(
        "SELECT s.id, s.heartbeat_interval_ms, s.created_at, s.last_success_at, s.last_heartbeat_at \
         FROM webhook_subscriptions s \
         WHERE s.enabled = 1 AND s.heartbeat_interval_ms IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.status = $1)",
    )
    .bind(super::DeliveryStatus::Pending)
    .fetch_all(db.pool())
    .await?;
    Ok(candidates
        .into_iter()
        .filter(|due| due.last_heard() + due.interval_ms <= now.millis())
        .collect())
}

/// Takes the heartbeat `due` at `now` for this transaction (none when another engine
/// took it, or the setting changed meanwhile): the subscription's last sequence number.
pub async fn claim_heartbeat(
    tx: &mut Tx,
    due: &DueHeartbeat,
    now: Timestamp,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_subscriptions SET last_heartbeat_at = $3 \
         WHERE id = $1 AND enabled = 1 AND heartbeat_interval_ms = $2 \
         AND (last_heartbeat_at IS NULL OR last_heartbeat_at + heartbeat_interval_ms <= $3) \
         RETURNING last_sequence",
    )
    .bind(&due.id)
    .bind(due.interval_ms)
    .bind(now)
    .fetch_optional(tx.conn())
    .await
}
