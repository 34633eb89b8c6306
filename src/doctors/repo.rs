//! SQL for the `doctors` table (and one read of `users`, to check a link).

use super::model::{Doctor, DoctorInput};
use crate::db::{Db, Tx};
use crate::ids::{DoctorId, UserId};
use crate::time::Timestamp;

pub async fn insert(
    tx: &mut Tx,
    input: &DoctorInput,
    user: Option<&UserId>,
) -> Result<Doctor, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO doctors (id, name, specialty, user_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
    )
    .bind(DoctorId::generate())
    .bind(&input.name)
    .bind(&input.specialty)
    .bind(user)
    .bind(Timestamp::now())
    .fetch_one(tx.conn())
    .await
}

/// The doctor linked to `user`, if any.
pub async fn linked_to(db: &Db, user: &UserId) -> Result<Option<DoctorId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM doctors WHERE user_id = $1")
        .bind(user)
        .fetch_optional(db.pool())
        .await
}

/// The doctor (a read outside any transaction).
pub async fn get(db: &Db, id: &DoctorId) -> Result<Option<Doctor>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM doctors WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// The doctor, read inside a write transaction (not locked).
pub async fn get_tx(tx: &mut Tx, id: &DoctorId) -> Result<Option<Doctor>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM doctors WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// Doctors by name; `specialty` matches the whole value, ignoring case.
pub async fn list(
    db: &Db,
    specialty: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Doctor>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR LOWER(specialty) = LOWER($1))";
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM doctors WHERE {FILTER} ORDER BY name, id LIMIT $2 OFFSET $3"
    )))
    .bind(specialty)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM doctors WHERE {FILTER}"
    )))
    .bind(specialty)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}

pub async fn update(
    tx: &mut Tx,
    id: &DoctorId,
    input: &DoctorInput,
    user: Option<&UserId>,
) -> Result<Option<Doctor>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE doctors SET name = $2, specialty = $3, user_id = $4, updated_at = $5 WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(&input.name)
    .bind(&input.specialty)
    .bind(user)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

/// Deletes the doctor; one that consultations or queue entries refer to is refused by
/// the foreign keys.
pub async fn delete(tx: &mut Tx, id: &DoctorId) -> Result<Option<Doctor>, sqlx::Error> {
    sqlx::query_as("DELETE FROM doctors WHERE id = $1 RETURNING *")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// Whether a user with this id exists (the `users` table belongs to `auth`; this only reads it).
pub async fn user_exists(tx: &mut Tx, id: &UserId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(found.is_some())
}
