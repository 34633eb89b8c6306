//! SQL for the `medicines` table.

use super::model::{Medicine, MedicineInput};
use crate::camps::repo::escape_like;
use crate::db::{Db, Tx};
use crate::ids::MedicineId;
use crate::time::Timestamp;

pub async fn insert(tx: &mut Tx, input: &MedicineInput) -> Result<Medicine, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO medicines (id, name, form, strength, stock_quantity, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
    )
    .bind(MedicineId::generate())
    .bind(&input.name)
    .bind(&input.form)
    .bind(&input.strength)
    .bind(input.stock_quantity)
    .bind(Timestamp::now())
    .fetch_one(tx.conn())
    .await
}

/// The id of the medicine with this name, form and strength.
pub async fn id_of(db: &Db, input: &MedicineInput) -> Result<Option<MedicineId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM medicines WHERE name = $1 AND form = $2 AND strength = $3")
        .bind(&input.name)
        .bind(&input.form)
        .bind(&input.strength)
        .fetch_optional(db.pool())
        .await
}

pub async fn get(db: &Db, id: &MedicineId) -> Result<Option<Medicine>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM medicines WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn exists(tx: &mut Tx, id: &MedicineId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM medicines WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(found.is_some())
}

/// The medicine as this transaction sees it.
pub async fn get_in(tx: &mut Tx, id: &MedicineId) -> Result<Option<Medicine>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM medicines WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// The medicine, locked for the rest of `tx` on PostgreSQL (SQLite's writer is alone).
pub async fn get_for_update(tx: &mut Tx, id: &MedicineId) -> Result<Option<Medicine>, sqlx::Error> {
    let sql = format!("SELECT * FROM medicines WHERE id = $1{}", tx.for_update());
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// The stock of a medicine as this transaction sees it (`None`: no such medicine).
pub async fn stock(tx: &mut Tx, id: &MedicineId) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT stock_quantity FROM medicines WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}

/// Takes `quantity` units out of stock if at least that many are there, in one
/// conditional UPDATE: two transactions taking the last unit cannot both succeed
/// (PostgreSQL re-checks the condition on the row the first one committed). Returns
/// whether the stock was taken.
pub async fn take_stock(tx: &mut Tx, id: &MedicineId, quantity: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE medicines SET stock_quantity = stock_quantity - $2, updated_at = $3 \
         WHERE id = $1 AND stock_quantity >= $2",
    )
    .bind(id)
    .bind(quantity)
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(
    db: &Db,
    name: Option<&str>,
    in_stock: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Medicine>, i64), sqlx::Error> {
    const FILTER: &str = "($1 IS NULL OR LOWER(name) LIKE '%' || LOWER($1) || '%' ESCAPE '\\') \
         AND stock_quantity >= $2 AND stock_quantity <= $3";
    // The stock filter as a range, so no nullable boolean parameter is needed.
    let (min, max) = match in_stock {
        Some(true) => (1, i64::MAX),
        Some(false) => (0, 0),
        None => (0, i64::MAX),
    };
    let name = name.map(escape_like);
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM medicines WHERE {FILTER} ORDER BY name, form, strength, id LIMIT $4 OFFSET $5"
    )))
    .bind(name.as_deref())
    .bind(min)
    .bind(max)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM medicines WHERE {FILTER}"
    )))
    .bind(name.as_deref())
    .bind(min)
    .bind(max)
    .fetch_one(db.pool())
    .await?;
    Ok((items, total))
}

pub async fn update(
    tx: &mut Tx,
    id: &MedicineId,
    input: &MedicineInput,
) -> Result<Option<Medicine>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE medicines SET name = $2, form = $3, strength = $4, stock_quantity = $5, updated_at = $6 \
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(&input.name)
    .bind(&input.form)
    .bind(&input.strength)
    .bind(input.stock_quantity)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await
}

/// Deletes the medicine; one that prescriptions refer to is refused by the foreign keys.
pub async fn delete(tx: &mut Tx, id: &MedicineId) -> Result<Option<Medicine>, sqlx::Error> {
    sqlx::query_as("DELETE FROM medicines WHERE id = $1 RETURNING *")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
}
