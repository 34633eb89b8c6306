//! SQL for the `vitals` table.

use super::model::{Vitals, VitalsInput};
use crate::db::NullableReal;
use crate::db::{Db, Tx};
use crate::ids::{CampId, PatientId, UserId, VitalsId};
use crate::patients::BookNo;
use crate::time::Timestamp;

/// Vitals joined with their patient's book number.
const VIEW: &str = "SELECT v.id, v.patient_id, p.book_no, v.camp_id, v.bp, v.pulse, v.temperature, v.weight, \
     v.height, v.spo2, v.blood_sugar, v.extra_note, v.recorded_by, v.created_at, v.updated_at \
     FROM vitals v JOIN patients p ON p.id = v.patient_id";

/// Newest first; the id breaks ties between records made in the same millisecond.
const NEWEST_FIRST: &str = "ORDER BY v.created_at DESC, v.id DESC";

pub async fn insert(
    tx: &mut Tx,
    patient: &PatientId,
    camp: Option<&CampId>,
    input: &VitalsInput,
    by: &UserId,
) -> Result<Vitals, sqlx::Error> {
    let id = VitalsId::generate();
    sqlx::query(
        "INSERT INTO vitals (id, patient_id, camp_id, bp, pulse, temperature, weight, height, spo2, blood_sugar, \
         extra_note, recorded_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(&id)
    .bind(patient)
    .bind(camp)
    .bind(input.normalized_bp())
    .bind(input.pulse)
    .bind(NullableReal(input.temperature))
    .bind(NullableReal(input.weight))
    .bind(NullableReal(input.height))
    .bind(input.spo2)
    .bind(NullableReal(input.blood_sugar))
    .bind(input.extra_note.as_deref())
    .bind(by)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    get_tx(tx, &id).await?.ok_or(sqlx::Error::RowNotFound)
}

pub async fn get(db: &Db, id: &VitalsId) -> Result<Option<Vitals>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE v.id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

async fn get_tx(tx: &mut Tx, id: &VitalsId) -> Result<Option<Vitals>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE v.id = $1")))
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// A patient's vitals, newest first.
pub async fn list_for_patient(
    db: &Db,
    patient: &PatientId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Vitals>, i64), sqlx::Error> {
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE v.patient_id = $1 {NEWEST_FIRST} LIMIT $2 OFFSET $3"
    )))
    .bind(patient)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM vitals WHERE patient_id = $1")
        .bind(patient)
        .fetch_one(db.pool())
        .await?;
    Ok((items, total))
}

/// Appends `note` on a new line to the note of the patient's most recent vitals, kept
/// within the limit the API enforces ([`super::model::fit_note`], with `cut_marker` where
/// it cuts). `None` when the patient is unknown or has no vitals. The row is read and
/// written under a lock (PostgreSQL; SQLite's writer is alone), so concurrent appends
/// cannot lose one. For the inbound `lab.result.ready` job.
pub async fn append_note_to_latest(
    tx: &mut Tx,
    book_no: &BookNo,
    note: &str,
    cut_marker: &str,
) -> Result<Option<Vitals>, sqlx::Error> {
    let sql = format!(
        "SELECT v.id, v.extra_note FROM vitals v \
         WHERE v.patient_id = (SELECT id FROM patients WHERE book_no = $1) {NEWEST_FIRST} LIMIT 1{}",
        tx.for_update()
    );
    let latest: Option<(VitalsId, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(book_no)
        .fetch_optional(tx.conn())
        .await?;
    let Some((id, existing)) = latest else {
        return Ok(None);
    };
    let joined = match existing.filter(|existing| !existing.is_empty()) {
        Some(existing) => format!("{existing}\n{note}"),
        None => note.to_string(),
    };
    sqlx::query("UPDATE vitals SET extra_note = $2, updated_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(super::model::fit_note(joined, cut_marker))
        .bind(Timestamp::now())
        .execute(tx.conn())
        .await?;
    get_tx(tx, &id).await
}
