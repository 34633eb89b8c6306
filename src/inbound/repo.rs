//! SQL for `inbound_sources` and `inbound_events`.

use super::model::{InboundEventView, InboundSource};
use crate::db::{Db, Tx};
use crate::ids::{InboundEventId, InboundSourceId, JobId};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// A source as stored: JSON columns as text, the secret sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceRow {
    pub id: InboundSourceId,
    pub name: String,
    pub allowed_event_types: String,
    pub secret_enc: String,
    pub is_active: i64,
    pub action_mapping: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl SourceRow {
    /// The API view, without the secret. The JSON columns are only written by this module.
    pub fn to_source(&self) -> InboundSource {
        InboundSource {
            id: self.id.clone(),
            name: self.name.clone(),
            allowed_event_types: serde_json::from_str(&self.allowed_event_types)
                .unwrap_or_default(),
            is_active: self.is_active != 0,
            action_mapping: serde_json::from_str(&self.action_mapping).unwrap_or_default(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The writable fields of a source.
pub struct SourceFields<'a> {
    pub name: &'a str,
    pub allowed_event_types: &'a [String],
    pub is_active: bool,
    pub action_mapping: &'a BTreeMap<String, String>,
}

pub async fn insert_source(
    tx: &mut Tx,
    id: &InboundSourceId,
    fields: &SourceFields<'_>,
    secret_enc: &str,
) -> Result<SourceRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO inbound_sources (id, name, allowed_event_types, secret_enc, is_active, action_mapping, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
    )
    .bind(id)
    .bind(fields.name)
    .bind(serde_json::to_string(fields.allowed_event_types).unwrap_or_default())
    .bind(secret_enc)
    .bind(i64::from(fields.is_active))
    .bind(serde_json::to_string(fields.action_mapping).unwrap_or_default())
    .bind(Timestamp::now())
    .fetch_one(tx.conn())
    .await
}

pub async fn get_source(db: &Db, id: &InboundSourceId) -> Result<Option<SourceRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM inbound_sources WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn get_source_for_update(
    tx: &mut Tx,
    id: &InboundSourceId,
) -> Result<Option<SourceRow>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM inbound_sources WHERE id = $1{}",
        tx.for_update()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

pub async fn list_sources(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<(Vec<SourceRow>, i64), sqlx::Error> {
    let items =
        sqlx::query_as("SELECT * FROM inbound_sources ORDER BY created_at, id LIMIT $1 OFFSET $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(db.pool())
            .await?;
    Ok((items, count_sources(db).await?))
}

pub async fn count_sources(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM inbound_sources")
        .fetch_one(db.pool())
        .await
}

pub async fn update_source(
    tx: &mut Tx,
    id: &InboundSourceId,
    fields: &SourceFields<'_>,
) -> Result<Option<SourceRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE inbound_sources SET name = $2, allowed_event_types = $3, is_active = $4, action_mapping = $5, updated_at = $6 \
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(fields.name)
    .bind(serde_json::to_string(fields.allowed_event_types).unwrap_or_default())
    .bind(i64::from(fields.is_active))
    .bind(serde_json::to_string(fields.action_mapping).unwrap_or_default())
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

pub async fn set_secret(
    tx: &mut Tx,
    id: &InboundSourceId,
    secret_enc: &str,
) -> Result<Option<SourceRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE inbound_sources SET secret_enc = $2, updated_at = $3 WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(secret_enc)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

/// Deletes the source; its received events stay as history.
pub async fn delete_source(tx: &mut Tx, id: &InboundSourceId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM inbound_sources WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The job of an event already received from this source under `event_id`.
pub async fn find_received(
    tx: &mut Tx,
    source: &InboundSourceId,
    event_id: &str,
) -> Result<Option<JobId>, sqlx::Error> {
    sqlx::query_scalar("SELECT job_id FROM inbound_events WHERE source_id = $1 AND event_id = $2")
        .bind(source)
        .bind(event_id)
        .fetch_optional(tx.conn())
        .await
}

/// Like [`find_received`], outside a transaction.
pub async fn find_received_committed(
    db: &Db,
    source: &InboundSourceId,
    event_id: &str,
) -> Result<Option<JobId>, sqlx::Error> {
    sqlx::query_scalar("SELECT job_id FROM inbound_events WHERE source_id = $1 AND event_id = $2")
        .bind(source)
        .bind(event_id)
        .fetch_optional(db.pool())
        .await
}

/// A received event, as stored.
pub struct NewEvent<'a> {
    pub id: &'a InboundEventId,
    pub source_id: &'a InboundSourceId,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub action: &'a str,
    pub payload: &'a str,
    pub job_id: &'a JobId,
}

/// Fails with a unique violation when `(source_id, event_id)` was already received.
pub async fn insert_event(tx: &mut Tx, event: &NewEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO inbound_events (id, source_id, event_id, event_type, action, payload, job_id, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.id)
    .bind(event.source_id)
    .bind(event.event_id)
    .bind(event.event_type)
    .bind(event.action)
    .bind(event.payload)
    .bind(event.job_id)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(())
}

const EVENT_VIEW: &str = "SELECT e.id, e.source_id, s.name AS source_name, e.event_id, e.event_type, e.action, e.job_id, \
     COALESCE(j.status, 'unknown') AS status, COALESCE(j.attempts, 0) AS attempts, \
     COALESCE(j.max_attempts, 0) AS max_attempts, j.last_error, j.run_at, e.received_at \
     FROM inbound_events e LEFT JOIN inbound_sources s ON s.id = e.source_id LEFT JOIN jobs j ON j.id = e.job_id";

pub async fn get_event(
    db: &Db,
    id: &InboundEventId,
) -> Result<Option<InboundEventView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{EVENT_VIEW} WHERE e.id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Received events, newest first, with their jobs' state.
pub async fn list_events(
    db: &Db,
    source: Option<&InboundSourceId>,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<InboundEventView>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR e.source_id = $1) AND ($2 IS NULL OR j.status = $2)";
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{EVENT_VIEW} WHERE {FILTER} ORDER BY e.received_at DESC, e.id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(source.map(InboundSourceId::as_str))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM inbound_events e LEFT JOIN jobs j ON j.id = e.job_id WHERE {FILTER}"
    )))
    .bind(source.map(InboundSourceId::as_str))
    .bind(status)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}
