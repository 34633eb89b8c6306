//! SQL for the `medical_camps` table.

use super::model::{Camp, CampInput};
use crate::db::{Db, Tx};
use crate::ids::CampId;
use crate::time::Timestamp;

pub async fn insert(tx: &mut Tx, input: &CampInput) -> Result<Camp, sqlx::Error> {
    let now = Timestamp::now();
    sqlx::query_as(
        "INSERT INTO medical_camps (id, name, location, start_date, end_date, attended_count, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6) RETURNING *",
    )
    .bind(CampId::generate())
    .bind(&input.name)
    .bind(&input.location)
    .bind(&input.start_date)
    .bind(&input.end_date)
    .bind(now)
    .fetch_one(tx.conn())
    .await
}

pub async fn get(db: &Db, id: &CampId) -> Result<Option<Camp>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM medical_camps WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// The camp, read and locked inside a write transaction.
pub async fn get_for_update(tx: &mut Tx, id: &CampId) -> Result<Option<Camp>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM medical_camps WHERE id = $1{}",
        tx.for_update()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

pub async fn exists(tx: &mut Tx, id: &CampId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM medical_camps WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(found.is_some())
}

pub async fn list(
    db: &Db,
    on_date: Option<&str>,
    location: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Camp>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR (start_date <= $1 AND end_date >= $1)) \
         AND ($2 IS NULL OR LOWER(location) LIKE '%' || LOWER($2) || '%' ESCAPE '\\')";
    let location = location.map(escape_like);
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM medical_camps WHERE {FILTER} ORDER BY start_date DESC, id LIMIT $3 OFFSET $4"
    )))
    .bind(on_date)
    .bind(location.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM medical_camps WHERE {FILTER}"
    )))
    .bind(on_date)
    .bind(location.as_deref())
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}

pub async fn update(
    tx: &mut Tx,
    id: &CampId,
    input: &CampInput,
) -> Result<Option<Camp>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE medical_camps SET name = $2, location = $3, start_date = $4, end_date = $5, updated_at = $6 \
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(&input.name)
    .bind(&input.location)
    .bind(&input.start_date)
    .bind(&input.end_date)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

pub async fn set_attendance(
    tx: &mut Tx,
    id: &CampId,
    count: i64,
) -> Result<Option<Camp>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE medical_camps SET attended_count = $2, updated_at = $3 WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(count)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

/// Deletes the camp; a camp that registrations or consultations refer to is refused by
/// the foreign keys (surfacing as a conflict).
pub async fn delete(tx: &mut Tx, id: &CampId) -> Result<Option<Camp>, sqlx::Error> {
    sqlx::query_as("DELETE FROM medical_camps WHERE id = $1 RETURNING *")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
