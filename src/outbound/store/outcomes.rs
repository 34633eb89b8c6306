//! Recording attempts: attempt rows and delivery outcomes, in the recorder's one
//! transaction per batch. (Failure streaks and the auto-pause are `outbound::health`'s.)

use super::DeliveryStatus;
use crate::db::Tx;
use crate::db::{json_ids, json_rows};
use crate::ids::{AttemptId, DeliveryId, MessageId, SubscriptionId};
use crate::outbound::outcome::FailureClass;
use std::collections::HashSet;

/// One attempt row to insert.
#[derive(Debug)]
pub struct NewAttempt<'a> {
    pub delivery_id: &'a DeliveryId,
    pub message_id: &'a MessageId,
    pub subscription_id: &'a SubscriptionId,
    pub attempted_at: i64,
    pub status_code: Option<u16>,
    pub response_body: Option<&'a str>,
    pub duration_ms: i64,
    pub error: Option<&'a str>,
    pub failure_class: Option<FailureClass>,
}

/// Which of `ids` still exist (a subscription deleted while its delivery was in flight
/// took the delivery row with it).
pub async fn existing_deliveries(
    tx: &mut Tx,
    ids: &[&DeliveryId],
) -> Result<HashSet<DeliveryId>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM webhook_deliveries WHERE id IN ({})",
        json_rows(tx.backend(), "$1")
    );
    let found: Vec<DeliveryId> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(json_ids(ids))
        .fetch_all(tx.conn())
        .await?;
    Ok(found.into_iter().collect())
}

/// Rows per multi-row INSERT: few statements per batch, and few distinct SQL texts for
/// the prepared-statement cache.
const INSERT_CHUNK: usize = 64;

pub async fn insert_attempts(tx: &mut Tx, attempts: &[NewAttempt<'_>]) -> Result<(), sqlx::Error> {
    for chunk in attempts.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 10;
                let params: Vec<String> = (1..=10).map(|k| format!("${}", p + k)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhook_attempts (id, delivery_id, message_id, subscription_id, attempted_at, status_code, \
             response_body, duration_ms, error, failure_class) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for attempt in chunk {
            query = query
                .bind(AttemptId::generate())
                .bind(attempt.delivery_id)
                .bind(attempt.message_id)
                .bind(attempt.subscription_id)
                .bind(attempt.attempted_at)
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.response_body)
                .bind(attempt.duration_ms)
                .bind(attempt.error)
                .bind(attempt.failure_class);
        }
        query.execute(tx.conn()).await?;
    }
    Ok(())
}

/// One UPDATE for all deliveries of a batch that succeeded with the same status code.
pub async fn mark_delivered(
    tx: &mut Tx,
    ids: &[&DeliveryId],
    code: u16,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE webhook_deliveries SET status = $4, attempts = attempts + 1, locked_until = NULL, \
         locked_by = NULL, last_status = $2, last_error = NULL, updated_at = $3 WHERE id IN ({})",
        json_rows(tx.backend(), "$1")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_ids(ids))
        .bind(i64::from(code))
        .bind(now)
        .bind(DeliveryStatus::Delivered)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// A failed attempt's effect on its delivery.
#[derive(Debug)]
pub struct Failure<'a> {
    pub delivery_id: &'a DeliveryId,
    /// `Pending` with a retry ahead, else `Exhausted`.
    pub status: DeliveryStatus,
    pub next_attempt_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Whether the attempt used up a step of the retry schedule (not when it was made
    /// while the camp's uplink was down).
    pub consumed: bool,
}

/// Records a failed attempt on its delivery and releases the lease.
pub async fn mark_failed(tx: &mut Tx, failure: Failure<'_>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + $7, next_attempt_at = $3, \
         locked_until = NULL, locked_by = NULL, last_status = $4, last_error = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(failure.delivery_id)
    .bind(failure.status)
    .bind(failure.next_attempt_at)
    .bind(failure.last_status.map(i64::from))
    .bind(failure.last_error)
    .bind(now)
    .bind(i64::from(failure.consumed))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The id of the latest attempt on `delivery`.
pub async fn latest_attempt_id(
    db: &crate::db::Db,
    delivery: &DeliveryId,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(delivery)
    .fetch_one(db.pool())
    .await
}
