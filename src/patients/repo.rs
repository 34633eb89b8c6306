//! SQL for the `patients` and `camp_registrations` tables.

use super::model::{BookNo, NewPatient, Patient, Registration};
use crate::camps::repo::escape_like;
use crate::db::{Db, Tx};
use crate::ids::{CampId, PatientId, RegistrationId, UserId};
use crate::time::Timestamp;

pub async fn insert(
    tx: &mut Tx,
    book_no: &BookNo,
    input: &NewPatient,
) -> Result<Patient, sqlx::Error> {
    let now = Timestamp::now();
    sqlx::query_as(
        "INSERT INTO patients (id, book_no, name, sex, age, birth_date, phone, address, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *",
    )
    .bind(PatientId::generate())
    .bind(book_no)
    .bind(&input.name)
    .bind(input.sex.as_str())
    .bind(input.age)
    .bind(input.birth_date.as_deref())
    .bind(input.phone.as_deref())
    .bind(input.address.as_deref())
    .bind(now)
    .fetch_one(tx.conn())
    .await
}

/// The patient with this book number (a read outside any transaction).
pub async fn get_by_book_no(db: &Db, book_no: &BookNo) -> Result<Option<Patient>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM patients WHERE book_no = $1")
        .bind(book_no)
        .fetch_optional(db.pool())
        .await
}

/// The patient with this book number, read inside a write transaction (not locked).
pub async fn get_by_book_no_tx(
    tx: &mut Tx,
    book_no: &BookNo,
) -> Result<Option<Patient>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM patients WHERE book_no = $1")
        .bind(book_no)
        .fetch_optional(tx.conn())
        .await
}

/// The patient, read and locked inside a write transaction that will modify it.
pub async fn get_for_update(tx: &mut Tx, book_no: &BookNo) -> Result<Option<Patient>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM patients WHERE book_no = $1{}",
        tx.for_update()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(book_no)
        .fetch_optional(tx.conn())
        .await
}

/// Patients newest first; `q` matches name or book number (case-insensitive), `camp`
/// keeps those registered at that camp.
pub async fn list(
    db: &Db,
    q: Option<&str>,
    camp: Option<&CampId>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Patient>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR LOWER(name) LIKE '%' || LOWER($1) || '%' ESCAPE '\\' \
             OR LOWER(book_no) LIKE '%' || LOWER($1) || '%' ESCAPE '\\') \
         AND ($2 IS NULL OR EXISTS (SELECT 1 FROM camp_registrations r WHERE r.patient_id = patients.id AND r.camp_id = $2))";
    let q = q.map(escape_like);
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM patients WHERE {FILTER} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(q.as_deref())
    .bind(camp)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM patients WHERE {FILTER}"
    )))
    .bind(q.as_deref())
    .bind(camp)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}

/// Writes every editable field of `patient` (found by id) and returns the stored row.
pub async fn update(tx: &mut Tx, patient: &Patient) -> Result<Patient, sqlx::Error> {
    sqlx::query_as(
        "UPDATE patients SET name = $2, sex = $3, age = $4, birth_date = $5, phone = $6, address = $7, \
         updated_at = $8 WHERE id = $1 RETURNING *",
    )
    .bind(&patient.id)
    .bind(&patient.name)
    .bind(patient.sex.as_str())
    .bind(patient.age)
    .bind(patient.birth_date.as_deref())
    .bind(patient.phone.as_deref())
    .bind(patient.address.as_deref())
    .bind(Timestamp::now())
    .fetch_one(tx.conn())
    .await
}

/// A registration joined with its patient's book number.
const REGISTRATIONS: &str = "SELECT r.id, r.patient_id, p.book_no, r.camp_id, r.registered_by, r.created_at \
     FROM camp_registrations r JOIN patients p ON p.id = r.patient_id";

/// Registers `patient` at `camp`; a second registration at the same camp breaks the
/// table's unique key (`UniqueViolation`).
pub async fn register(
    tx: &mut Tx,
    patient: &PatientId,
    camp: &CampId,
    by: &UserId,
) -> Result<Registration, sqlx::Error> {
    let id = RegistrationId::generate();
    sqlx::query(
        "INSERT INTO camp_registrations (id, patient_id, camp_id, registered_by, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(patient)
    .bind(camp)
    .bind(by)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{REGISTRATIONS} WHERE r.id = $1"
    )))
    .bind(&id)
    .fetch_one(tx.conn())
    .await
}

/// The id of `patient`'s registration at `camp`, if there is one.
pub async fn registration_id(
    db: &Db,
    patient: &PatientId,
    camp: &CampId,
) -> Result<Option<RegistrationId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM camp_registrations WHERE patient_id = $1 AND camp_id = $2")
        .bind(patient)
        .bind(camp)
        .fetch_optional(db.pool())
        .await
}

/// A patient's registrations, most recent camp first.
pub async fn registrations_of_patient(
    db: &Db,
    patient: &PatientId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Registration>, i64), sqlx::Error> {
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{REGISTRATIONS} WHERE r.patient_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(patient)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM camp_registrations WHERE patient_id = $1")
        .bind(patient)
        .fetch_one(db.pool())
        .await?;
    Ok((items, total))
}

/// A camp's registrations in arrival order, like the camp's register book.
pub async fn registrations_at_camp(
    db: &Db,
    camp: &CampId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Registration>, i64), sqlx::Error> {
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{REGISTRATIONS} WHERE r.camp_id = $1 ORDER BY r.created_at, r.id LIMIT $2 OFFSET $3"
    )))
    .bind(camp)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM camp_registrations WHERE camp_id = $1")
        .bind(camp)
        .fetch_one(db.pool())
        .await?;
    Ok((items, total))
}
