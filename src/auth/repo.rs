//! SQL for the `users` table.

use super::model::{Role, User};
use crate::db::{Db, Tx};
use crate::ids::UserId;
use crate::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, username, role, is_active, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role '{role}'").into()))?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert(
    tx: &mut Tx,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, sqlx::Error> {
    let now = Timestamp::now();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, username, password_hash, role, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING {COLUMNS}"
    )))
    .bind(UserId::generate())
    .bind(username)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(tx.conn())
    .await?;
    user_from_row(&row)
}

/// Creates the first `admin`, but only while the table is empty. Several instances may
/// start at once on one empty database, and each may have seen no user: the one whose
/// insert lands first makes the admin; for the others `NOT EXISTS` (SQLite serialises
/// writers) or the unique username (PostgreSQL, where concurrent snapshots both see an
/// empty table) turns the insert into nothing. The conflict names no target: `username`
/// has two unique indexes (as written, and `users_username_ci` without regard to case),
/// and a targeted clause would let the other one's violation through as an error.
/// True when this call created it.
pub async fn insert_first_admin(tx: &mut Tx, password_hash: &str) -> Result<bool, sqlx::Error> {
    let created: Option<String> = sqlx::query_scalar(
        "INSERT INTO users (id, username, password_hash, role, is_active, created_at, updated_at) \
         SELECT $1, 'admin', $2, $3, 1, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM users) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(UserId::generate())
    .bind(password_hash)
    .bind(Role::Admin.as_str())
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await?;
    Ok(created.is_some())
}

pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await
}

/// What a login needs of an active user.
pub struct Credentials {
    pub id: UserId,
    pub role: Role,
    pub password_hash: String,
    pub token_generation: i64,
}

/// The credentials of the active user with this username (in any case: usernames are
/// unique without regard to case).
pub async fn credentials(db: &Db, username: &str) -> Result<Option<Credentials>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, role, password_hash, token_generation FROM users \
         WHERE lower(username) = lower($1) AND is_active = 1",
    )
    .bind(username)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let role: String = row.try_get("role")?;
        Ok(Credentials {
            id: row.try_get("id")?,
            role: Role::parse(&role).unwrap_or(Role::Volunteer),
            password_hash: row.try_get("password_hash")?,
            token_generation: row.try_get("token_generation")?,
        })
    })
    .transpose()
}

/// The role and token generation of an active user; `None` when the user is gone or
/// disabled.
pub async fn session(db: &Db, id: &UserId) -> Result<Option<Session>, sqlx::Error> {
    // Runs on every authenticated request: a key lookup, so inline on SQLite.
    let query = sqlx::query(
        "SELECT username, role, token_generation FROM users WHERE id = $1 AND is_active = 1",
    )
    .bind(id);
    let row = db.fetch_by_key(query).await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Session {
        username: row.try_get("username")?,
        role,
        generation: row.try_get("token_generation")?,
    }))
}

/// What a bearer token's user is now: checked on every request.
pub struct Session {
    pub username: String,
    pub role: Role,
    /// Tokens of an older generation are dead.
    pub generation: i64,
}

/// The user with this username, in any case.
pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE lower(username) = lower($1)"
    )))
    .bind(username)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn get(db: &Db, id: &UserId) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn list(db: &Db, limit: i64, offset: i64) -> Result<(Vec<User>, i64), sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
    Ok((users, count(db).await?))
}

/// Locks the user's row for a read-then-modify and returns it. With `admins`, first
/// locks every active admin's row (in id order, the one lock order of this table, so two
/// such updates cannot deadlock) and also returns how many active admins there are: on
/// PostgreSQL a concurrent demotion of another admin then waits for this transaction and
/// sees its outcome, instead of both counting each other as "the other admin" (SQLite's
/// write transactions already exclude each other).
pub async fn lock(
    tx: &mut Tx,
    id: &UserId,
    admins: bool,
) -> Result<Option<(User, usize)>, sqlx::Error> {
    let mut active_admins = 0;
    if admins {
        let sql = format!(
            "SELECT id FROM users WHERE role = 'admin' AND is_active = 1 ORDER BY id{}",
            tx.for_update()
        );
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(tx.conn())
            .await?;
        active_admins = ids.len();
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1{}",
        tx.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    row.as_ref()
        .map(user_from_row)
        .transpose()
        .map(|user| user.map(|user| (user, active_admins)))
}

/// Applies a change; `revoke` also moves the user to a new token generation, so every
/// token issued before stops working.
pub async fn update(
    tx: &mut Tx,
    id: &UserId,
    password_hash: Option<&str>,
    role: Option<Role>,
    is_active: Option<bool>,
    revoke: bool,
) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET password_hash = COALESCE($2, password_hash), role = COALESCE($3, role), \
         is_active = COALESCE($4, is_active), token_generation = token_generation + $6, \
         updated_at = $5 WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(password_hash)
    .bind(role.map(Role::as_str))
    .bind(is_active.map(i64::from))
    .bind(Timestamp::now())
    .bind(i64::from(revoke))
    .fetch_optional(tx.conn())
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Ends every token of the user (logout). False when there is no such user.
pub async fn revoke_tokens(tx: &mut Tx, id: &UserId) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE users SET token_generation = token_generation + 1 WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
    Ok(done.rows_affected() > 0)
}
