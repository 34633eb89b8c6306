//! SQL of the delivery engine: claiming due deliveries and releasing claims. The claim
//! differs by dialect (PostgreSQL adds `FOR UPDATE SKIP LOCKED`; SQLite's single writer
//! makes the plain conditional UPDATE atomic); both variants sit here side by side.

use super::EngineConfig;
use crate::db::{Backend, Db, now_ms};
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::time::Timestamp;

/// A claimed delivery with everything needed to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
    pub sequence: i64,
    pub attempts: i64,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub ids: String,
    pub created_at: Timestamp,
    pub url: String,
    pub payload_mode: String,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
}

/// A JSON array parameter expanded to rows, per dialect.
fn json_rows(backend: Backend, param: &str) -> String {
    match backend {
        Backend::Sqlite => format!("SELECT value FROM json_each({param})"),
        Backend::Postgres => format!("SELECT json_array_elements_text(CAST({param} AS json))"),
    }
}

/// Claims up to `limit` due deliveries of enabled subscriptions, at most
/// `endpoint_concurrency` per subscription and none of `saturated`, oldest first (so a
/// subscription's deliveries go out in sequence order).
pub async fn claim(
    db: &Db,
    config: &EngineConfig,
    limit: usize,
    saturated: &[SubscriptionId],
) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = now_ms();
    let backend = db.backend();
    let candidates_sql = format!(
        "SELECT d.id AS delivery_id, d.message_id, d.subscription_id, d.sequence, d.attempts, \
                m.event_id, m.event_type, m.payload, m.ids, m.created_at, \
                s.url, s.payload_mode, s.secret_enc, s.previous_secret_enc, s.previous_secret_until \
         FROM (SELECT id, next_attempt_at AS due, sequence AS seq, \
                      ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_attempt_at, sequence) AS place \
               FROM webhook_deliveries \
               WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1 \
                 AND (locked_until IS NULL OR locked_until < $1) \
                 AND subscription_id IN (SELECT id FROM webhook_subscriptions WHERE enabled = 1) \
                 AND subscription_id NOT IN ({excluded})) ranked \
         JOIN webhook_deliveries d ON d.id = ranked.id \
         JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE ranked.place <= $3 \
         ORDER BY ranked.due, ranked.seq LIMIT $4",
        excluded = json_rows(backend, "$2"),
    );
    let excluded = serde_json::to_string(saturated).unwrap_or_else(|_| "[]".into());
    let candidates: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(candidates_sql))
        .bind(now)
        .bind(excluded)
        .bind(config.endpoint_concurrency as i64)
        .bind(limit as i64)
        .fetch_all(db.pool())
        .await?;
    if candidates.is_empty() {
        return Ok(candidates);
    }

    let wanted = serde_json::to_string(
        &candidates
            .iter()
            .map(|c| &c.delivery_id)
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let still_free =
        "status IN ('pending', 'failed') AND (locked_until IS NULL OR locked_until < $4)";
    let lock_sql = match backend {
        Backend::Sqlite => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN ({ids}) AND {still_free} RETURNING id",
            ids = json_rows(backend, "$1")
        ),
        Backend::Postgres => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE id IN ({ids}) AND {still_free} \
                          FOR UPDATE SKIP LOCKED) RETURNING id",
            ids = json_rows(backend, "$1")
        ),
    };
    let lease_end = now + config.lease().as_millis() as i64;
    let mut tx = db.begin().await?;
    let locked: Vec<DeliveryId> = sqlx::query_scalar(sqlx::AssertSqlSafe(lock_sql))
        .bind(wanted)
        .bind(lease_end)
        .bind(&config.instance)
        .bind(now)
        .fetch_all(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(candidates
        .into_iter()
        .filter(|c| locked.contains(&c.delivery_id))
        .collect())
}

/// When the earliest waiting (unclaimed) delivery of an enabled subscription is due.
pub async fn next_due(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries \
         WHERE status IN ('pending', 'failed') AND locked_until IS NULL \
           AND subscription_id IN (SELECT id FROM webhook_subscriptions WHERE enabled = 1)",
    )
    .fetch_one(db.pool())
    .await
}

/// Releases the claims of engine `instance` that were not finished (graceful stop).
pub async fn release_unfinished(db: &Db, instance: &str) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released = sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE locked_by = $1 AND status IN ('pending', 'failed')",
    )
    .bind(instance)
    .execute(tx.conn())
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}
