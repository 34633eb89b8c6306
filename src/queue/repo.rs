//! SQL for the `queue_entries` table. Entries are read joined with their consultation
//! and patient, for the patient's book number and name.

use super::model::{Priority, QueueEntry, QueueStatus};
use crate::db::{Db, Tx};
use crate::ids::{CampId, ConsultationId, DoctorId, QueueEntryId};
use crate::time::Timestamp;
use sqlx::{Any, Executor};

const VIEW: &str = "SELECT q.id, q.consultation_id, q.camp_id, q.doctor_id, c.patient_id, p.book_no, \
     p.name AS patient_name, q.status, q.priority, q.created_at, q.updated_at \
     FROM queue_entries q JOIN consultations c ON c.id = q.consultation_id JOIN patients p ON p.id = c.patient_id";

/// Emergency first, then high, then normal; the oldest entry first within a priority.
const QUEUE_ORDER: &str =
    "CASE q.priority WHEN 'emergency' THEN 0 WHEN 'high' THEN 1 ELSE 2 END, q.created_at, q.id";

pub async fn insert(
    tx: &mut Tx,
    consultation: &ConsultationId,
    camp: &CampId,
    doctor: &DoctorId,
    priority: Priority,
) -> Result<QueueEntryId, sqlx::Error> {
    let id = QueueEntryId::generate();
    sqlx::query(
        "INSERT INTO queue_entries (id, consultation_id, camp_id, doctor_id, status, priority, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(consultation)
    .bind(camp)
    .bind(doctor)
    .bind(QueueStatus::Waiting)
    .bind(priority)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(id)
}

async fn fetch<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &QueueEntryId,
) -> Result<Option<QueueEntry>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE q.id = $1")))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn get(db: &Db, id: &QueueEntryId) -> Result<Option<QueueEntry>, sqlx::Error> {
    fetch(db.pool(), id).await
}

/// The entry as this transaction sees it (after its own writes).
pub async fn get_in(tx: &mut Tx, id: &QueueEntryId) -> Result<Option<QueueEntry>, sqlx::Error> {
    fetch(tx.conn(), id).await
}

/// The entry, its row locked (PostgreSQL) for a read-then-modify.
pub async fn lock(tx: &mut Tx, id: &QueueEntryId) -> Result<Option<QueueEntry>, sqlx::Error> {
    if !tx.lock_row("queue_entries", id.as_str()).await? {
        return Ok(None);
    }
    get_in(tx, id).await
}

/// Moves the entry from `from` to `to`, only if it is still in `from`: of two concurrent
/// moves from the same status, one finds nothing to update. Returns whether it moved.
pub async fn set_status(
    tx: &mut Tx,
    id: &QueueEntryId,
    from: QueueStatus,
    to: QueueStatus,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE queue_entries SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets the priority of an entry that is not closed. Returns whether it was set.
pub async fn set_priority(
    tx: &mut Tx,
    id: &QueueEntryId,
    priority: Priority,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE queue_entries SET priority = $2, updated_at = $3 WHERE id = $1 AND status IN ('waiting', 'in_consultation')",
    )
    .bind(id)
    .bind(priority)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(
    db: &Db,
    camp: Option<&CampId>,
    doctor: Option<&DoctorId>,
    status: Option<QueueStatus>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<QueueEntry>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR q.camp_id = $1) AND ($2 IS NULL OR q.doctor_id = $2) AND ($3 IS NULL OR q.status = $3)";
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE {FILTER} ORDER BY {QUEUE_ORDER} LIMIT $4 OFFSET $5"
    )))
    .bind(camp)
    .bind(doctor)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM queue_entries q WHERE {FILTER}"
    )))
    .bind(camp)
    .bind(doctor)
    .bind(status)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}

/// The complaint and diagnosis of an entry's consultation, which the FHIR form of a queue
/// event carries so that its Encounter is whole (see `Event::context`).
pub async fn encounter_context(
    tx: &mut Tx,
    consultation_id: &ConsultationId,
) -> Result<serde_json::Value, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT complaint, diagnosis FROM consultations WHERE id = $1")
            .bind(consultation_id)
            .fetch_optional(tx.conn())
            .await?;
    let (complaint, diagnosis) = row.unwrap_or_default();
    Ok(serde_json::json!({ "complaint": complaint, "diagnosis": diagnosis }))
}
