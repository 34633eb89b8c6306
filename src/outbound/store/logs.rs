//! What the embedded backend's admin API shows: pages of messages with their deliveries,
//! pages of attempts, and whether a message can still be sent again. Newest first, with
//! cursors (the ULID ids sort by time).

use super::DeliveryStatus;
use crate::db::Db;
use crate::db::json_rows;
use crate::ids::{MessageId, SubscriptionId};
use crate::outbound::backend::DisplayStatus;
use crate::outbound::backend::{AttemptLog, CursorPage, DeliveryState, MessageFilter, MessageLog};
use sqlx::Row;
use sqlx::any::AnyRow;

fn delivery_state(row: &AnyRow) -> Result<DeliveryState, sqlx::Error> {
    let status: DeliveryStatus = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeliveryState {
        subscription_id: row.try_get("subscription_id")?,
        sequence: Some(row.try_get("sequence")?),
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| row.try_get("next_attempt_at"))
            .transpose()?,
        status: DisplayStatus::of(status, attempts).as_str().to_string(),
        attempts: Some(attempts),
        last_status_code: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
    })
}

fn attempt_log(row: &AnyRow) -> Result<AttemptLog, sqlx::Error> {
    Ok(AttemptLog {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        subscription_id: row.try_get("subscription_id")?,
        attempted_at: row.try_get("attempted_at")?,
        status_code: row.try_get("status_code")?,
        response_body: row.try_get("response_body")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
        failure_class: row.try_get("failure_class")?,
    })
}

/// A page of messages matching `filter` (newest first, at most `limit`), with a delivery
/// in `status` when given, each with its deliveries (only `subscription`'s, when
/// given); the cursor leads on when more follow.
pub async fn messages_page(
    db: &Db,
    filter: &MessageFilter,
    status: Option<DisplayStatus>,
    subscription: Option<&SubscriptionId>,
    limit: i64,
) -> Result<CursorPage<MessageLog>, sqlx::Error> {
    let status_filter = match status {
        Some(status) => format!(
            "AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id AND {} \
                 AND ($5 IS NULL OR d.subscription_id = $5))",
            status.condition()
        ),
        None => String::new(),
    };
    let delivery_filter = format!(
        "AND ($5 IS NULL OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id \
             AND d.subscription_id = $5)) {status_filter}"
    );
    let sql = format!(
        "SELECT m.id, m.event_id, m.event_type, m.created_at FROM webhook_messages m \
             WHERE ($1 IS NULL OR m.event_type = $1) AND ($2 IS NULL OR m.created_at >= $2) \
               AND ($3 IS NULL OR m.created_at < $3) AND ($4 IS NULL OR m.id < $4) {delivery_filter} \
             ORDER BY m.id DESC LIMIT $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.event_type.as_deref())
        .bind(filter.since.map(|t| t.timestamp_millis()))
        .bind(filter.until.map(|t| t.timestamp_millis()))
        .bind(filter.cursor.as_deref())
        .bind(subscription)
        .bind(limit + 1)
        .fetch_all(db.pool())
        .await?;
    let more = rows.len() as i64 > limit;
    let mut items = rows
        .iter()
        .take(limit as usize)
        .map(|row| {
            Ok(MessageLog {
                id: row.try_get("id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                created_at: row.try_get("created_at")?,
                deliveries: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if !items.is_empty() {
        let ids = serde_json::to_string(&items.iter().map(|m| &m.id).collect::<Vec<_>>())
            .unwrap_or_default();
        let sql = format!(
            "SELECT message_id, subscription_id, sequence, status, attempts, next_attempt_at, last_status, last_error \
                 FROM webhook_deliveries WHERE message_id IN ({}) AND ($2 IS NULL OR subscription_id = $2) \
                 ORDER BY subscription_id",
            json_rows(db.backend(), "$1")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(subscription)
            .fetch_all(db.pool())
            .await?;
        for row in &rows {
            let message: MessageId = row.try_get("message_id")?;
            if let Some(item) = items.iter_mut().find(|m| m.id == message.as_str()) {
                item.deliveries.push(delivery_state(row)?);
            }
        }
    }
    let next_cursor = more
        .then(|| items.last().map(|m| m.id.to_string()))
        .flatten();
    Ok(CursorPage { items, next_cursor })
}

/// A page of `subscription`'s attempts (newest first, at most `limit`, before `cursor`);
/// the cursor leads on when more follow.
pub async fn attempts_page(
    db: &Db,
    subscription: &SubscriptionId,
    cursor: Option<&str>,
    limit: i64,
) -> Result<CursorPage<AttemptLog>, sqlx::Error> {
    let rows = sqlx::query(
            "SELECT id, message_id, subscription_id, attempted_at, status_code, response_body, duration_ms, error, failure_class \
             FROM webhook_attempts WHERE subscription_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(subscription)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(db.pool())
        .await?;
    let more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(attempt_log)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = more.then(|| items.last().map(|a| a.id.clone())).flatten();
    Ok(CursorPage { items, next_cursor })
}

/// Whether message `id` still has its payload (`None`: no such message): one the
/// retention period cleared cannot be sent again.
/// The message's event type, if the message exists.
pub async fn message_event_type(db: &Db, id: &MessageId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT event_type FROM webhook_messages WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn payload_kept(db: &Db, id: &MessageId) -> Result<Option<bool>, sqlx::Error> {
    let payload: Option<Option<String>> =
        sqlx::query_scalar("SELECT payload FROM webhook_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(payload.map(|payload| payload.is_some()))
}
