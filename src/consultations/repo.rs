//! SQL for the `consultations` table, and the small reads of `patients`, `doctors` and
//! `camp_registrations` that assigning a doctor needs (those tables belong to other
//! modules; these queries only read them).

use super::model::{Consultation, ConsultationStatus};
use crate::db::{Db, Tx};
use crate::ids::{CampId, ConsultationId, DoctorId, PatientId, QueueEntryId};
use crate::queue::model::{Priority, QueueEntry, QueueStatus};
use crate::time::Timestamp;
use sqlx::{Any, Executor};

/// A consultation joined with its patient (book number, name) and its queue entry.
const VIEW: &str = "SELECT c.id, c.patient_id, p.book_no, p.name AS patient_name, c.doctor_id, c.camp_id, \
     c.complaint, c.diagnosis, c.notes, c.status, c.created_at, c.updated_at, \
     q.id AS queue_id, q.status AS queue_status, q.priority AS queue_priority, \
     q.created_at AS queue_created_at, q.updated_at AS queue_updated_at \
     FROM consultations c JOIN patients p ON p.id = c.patient_id JOIN queue_entries q ON q.consultation_id = c.id";

#[derive(sqlx::FromRow)]
struct Row {
    id: ConsultationId,
    patient_id: PatientId,
    book_no: String,
    patient_name: String,
    doctor_id: DoctorId,
    camp_id: CampId,
    complaint: Option<String>,
    diagnosis: Option<String>,
    notes: Option<String>,
    status: ConsultationStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    queue_id: QueueEntryId,
    queue_status: QueueStatus,
    queue_priority: Priority,
    queue_created_at: Timestamp,
    queue_updated_at: Timestamp,
}

impl From<Row> for Consultation {
    fn from(row: Row) -> Consultation {
        let queue_entry = QueueEntry {
            id: row.queue_id,
            consultation_id: row.id.clone(),
            camp_id: row.camp_id.clone(),
            doctor_id: row.doctor_id.clone(),
            patient_id: row.patient_id.clone(),
            book_no: row.book_no.clone(),
            patient_name: row.patient_name,
            status: row.queue_status,
            priority: row.queue_priority,
            created_at: row.queue_created_at,
            updated_at: row.queue_updated_at,
        };
        Consultation {
            id: row.id,
            patient_id: row.patient_id,
            book_no: row.book_no,
            doctor_id: row.doctor_id,
            camp_id: row.camp_id,
            complaint: row.complaint,
            diagnosis: row.diagnosis,
            notes: row.notes,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            queue_entry,
        }
    }
}

pub async fn patient_by_book_no(
    tx: &mut Tx,
    book_no: &str,
) -> Result<Option<PatientId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM patients WHERE book_no = $1")
        .bind(book_no)
        .fetch_optional(tx.conn())
        .await
}

pub async fn doctor_exists(tx: &mut Tx, id: &DoctorId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM doctors WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(found.is_some())
}

/// Whether the patient is registered at the camp. The registration row is locked
/// (PostgreSQL) so that two assignments of the same patient at the same camp take turns,
/// and the second sees the first one's open consultation.
pub async fn lock_registration(
    tx: &mut Tx,
    patient: &PatientId,
    camp: &CampId,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM camp_registrations WHERE patient_id = $1 AND camp_id = $2{}",
        tx.for_update()
    );
    let found: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(patient)
        .bind(camp)
        .fetch_optional(tx.conn())
        .await?;
    Ok(found.is_some())
}

/// The patient's consultation at the camp that is neither completed nor cancelled, if any.
pub async fn open_at_camp(
    tx: &mut Tx,
    patient: &PatientId,
    camp: &CampId,
) -> Result<Option<ConsultationId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM consultations WHERE patient_id = $1 AND camp_id = $2 AND status IN ('open', 'in_progress')",
    )
    .bind(patient)
    .bind(camp)
    .fetch_optional(tx.conn())
    .await
}

pub async fn insert(
    tx: &mut Tx,
    patient: &PatientId,
    doctor: &DoctorId,
    camp: &CampId,
    complaint: Option<&str>,
) -> Result<ConsultationId, sqlx::Error> {
    let id = ConsultationId::generate();
    sqlx::query(
        "INSERT INTO consultations (id, patient_id, doctor_id, camp_id, complaint, diagnosis, notes, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $7)",
    )
    .bind(&id)
    .bind(patient)
    .bind(doctor)
    .bind(camp)
    .bind(complaint)
    .bind(ConsultationStatus::Open)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(id)
}

async fn fetch<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &ConsultationId,
) -> Result<Option<Consultation>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE c.id = $1")))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    Ok(row.map(Consultation::from))
}

pub async fn get(db: &Db, id: &ConsultationId) -> Result<Option<Consultation>, sqlx::Error> {
    fetch(db.pool(), id).await
}

/// The consultation as this transaction sees it (after its own writes).
pub async fn get_in(tx: &mut Tx, id: &ConsultationId) -> Result<Option<Consultation>, sqlx::Error> {
    fetch(tx.conn(), id).await
}

/// The consultation, its row locked (PostgreSQL) for a read-then-modify.
pub async fn lock(tx: &mut Tx, id: &ConsultationId) -> Result<Option<Consultation>, sqlx::Error> {
    if !tx.lock_row("consultations", id.as_str()).await? {
        return Ok(None);
    }
    get_in(tx, id).await
}

/// Writes the clinical text fields (the caller merges the partial update first).
pub async fn set_text(
    tx: &mut Tx,
    id: &ConsultationId,
    complaint: Option<&str>,
    diagnosis: Option<&str>,
    notes: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE consultations SET complaint = $2, diagnosis = $3, notes = $4, updated_at = $5 WHERE id = $1")
        .bind(id)
        .bind(complaint)
        .bind(diagnosis)
        .bind(notes)
        .bind(Timestamp::now())
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn set_status(
    tx: &mut Tx,
    id: &ConsultationId,
    status: ConsultationStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE consultations SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(Timestamp::now())
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub struct ListFilter<'a> {
    pub book_no: Option<&'a str>,
    pub doctor: Option<&'a DoctorId>,
    pub camp: Option<&'a CampId>,
    pub status: Option<ConsultationStatus>,
}

/// Newest first.
pub async fn list(
    db: &Db,
    filter: &ListFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Consultation>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR p.book_no = $1) AND ($2 IS NULL OR c.doctor_id = $2) \
         AND ($3 IS NULL OR c.camp_id = $3) AND ($4 IS NULL OR c.status = $4)";
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE {FILTER} ORDER BY c.created_at DESC, c.id DESC LIMIT $5 OFFSET $6"
    )))
    .bind(filter.book_no)
    .bind(filter.doctor)
    .bind(filter.camp)
    .bind(filter.status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM consultations c JOIN patients p ON p.id = c.patient_id WHERE {FILTER}"
    )))
    .bind(filter.book_no)
    .bind(filter.doctor)
    .bind(filter.camp)
    .bind(filter.status)
    .fetch_one(db.pool())
    .await?;
    Ok((rows.into_iter().map(Consultation::from).collect(), total))
}
