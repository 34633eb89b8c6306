//! SQL for the `prescriptions` table. Prescriptions are read joined with their
//! consultation's patient, for the book number.

use super::model::{DispatchStatus, NewPrescription, Prescription};
use crate::db::{Db, Tx};
use crate::ids::{ConsultationId, MedicineId, PrescriptionId};
use crate::time::Timestamp;
use sqlx::{Any, Executor};

const VIEW: &str = "SELECT r.id, r.consultation_id, p.book_no, r.medicine_id, r.dosage, r.frequency, r.days, r.quantity, \
     r.dispatch_status, r.replaced_by_medicine_id, r.created_at, r.updated_at \
     FROM prescriptions r JOIN consultations c ON c.id = r.consultation_id JOIN patients p ON p.id = c.patient_id";

pub async fn insert(
    tx: &mut Tx,
    consultation: &ConsultationId,
    medicine: &MedicineId,
    input: &NewPrescription,
) -> Result<PrescriptionId, sqlx::Error> {
    let id = PrescriptionId::generate();
    sqlx::query(
        "INSERT INTO prescriptions (id, consultation_id, medicine_id, dosage, frequency, days, quantity, dispatch_status, \
         replaced_by_medicine_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $9)",
    )
    .bind(&id)
    .bind(consultation)
    .bind(medicine)
    .bind(input.dosage.trim())
    .bind(input.frequency.trim())
    .bind(input.days)
    .bind(input.quantity)
    .bind(DispatchStatus::Pending)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(id)
}

async fn fetch<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &PrescriptionId,
) -> Result<Option<Prescription>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE r.id = $1")))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn get(db: &Db, id: &PrescriptionId) -> Result<Option<Prescription>, sqlx::Error> {
    fetch(db.pool(), id).await
}

/// The prescription as this transaction sees it (after its own writes).
pub async fn get_in(tx: &mut Tx, id: &PrescriptionId) -> Result<Option<Prescription>, sqlx::Error> {
    fetch(tx.conn(), id).await
}

/// The prescription, its row locked (PostgreSQL) for a read-then-modify: a second
/// dispenser of the same prescription waits here, then sees it `given`.
pub async fn lock(tx: &mut Tx, id: &PrescriptionId) -> Result<Option<Prescription>, sqlx::Error> {
    if !tx.lock_row("prescriptions", id.as_str()).await? {
        return Ok(None);
    }
    get_in(tx, id).await
}

/// Writes the dispatch state, only while the prescription is not `given` yet, so it is
/// never dispensed twice. Returns whether it was written.
pub async fn update(
    tx: &mut Tx,
    id: &PrescriptionId,
    status: DispatchStatus,
    replaced_by: Option<&MedicineId>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE prescriptions SET dispatch_status = $2, replaced_by_medicine_id = $3, updated_at = $4 \
         WHERE id = $1 AND dispatch_status <> 'given'",
    )
    .bind(id)
    .bind(status)
    .bind(replaced_by)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The prescriptions of one consultation, oldest first.
pub async fn list_for_consultation(
    db: &Db,
    consultation: &ConsultationId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Prescription>, i64), sqlx::Error> {
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE r.consultation_id = $1 ORDER BY r.created_at, r.id LIMIT $2 OFFSET $3"
    )))
    .bind(consultation)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM prescriptions WHERE consultation_id = $1")
        .bind(consultation)
        .fetch_one(db.pool())
        .await?;
    Ok((items, total))
}

/// Prescriptions across consultations, oldest first (the order a pharmacy serves them).
pub async fn list(
    db: &Db,
    status: Option<DispatchStatus>,
    book_no: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Prescription>, i64), sqlx::Error> {
    const FILTER: &str =
        "($1 IS NULL OR r.dispatch_status = $1) AND ($2 IS NULL OR p.book_no = $2)";
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE {FILTER} ORDER BY r.created_at, r.id LIMIT $3 OFFSET $4"
    )))
    .bind(status)
    .bind(book_no)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM prescriptions r JOIN consultations c ON c.id = r.consultation_id \
         JOIN patients p ON p.id = c.patient_id WHERE {FILTER}"
    )))
    .bind(status)
    .bind(book_no)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}
