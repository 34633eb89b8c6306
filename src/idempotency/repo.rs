//! The `idempotency_keys` table: remembered answers, sealed under the server key.

use super::{Claim, WINDOW};
use crate::crypto::SecretBox;
use crate::db::{Db, Tx, now_ms};
use crate::ids::UserId;

/// A remembered answer, as read back for a retry.
pub struct Remembered {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    status: i64,
    answer_sealed: String,
    created_at: i64,
}

/// What binds a sealed answer to its row, so it opens nowhere else.
fn context(user: &UserId, key: &str) -> String {
    format!("idempotency:{user}:{key}")
}

/// Records the answer under the claim's key in `tx`. False when the key is already held
/// by a request committed within the window (another instance's, or one whose answer
/// this process has not seen yet); an expired row is replaced.
pub async fn remember(
    tx: &mut Tx,
    claim: &Claim,
    status: u16,
    body: &[u8],
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let sealed = claim.secrets.seal(
        &String::from_utf8_lossy(body),
        &context(&claim.user, &claim.key),
    );
    let done = sqlx::query(
        "INSERT INTO idempotency_keys \
         (user_id, idempotency_key, fingerprint, status, answer_sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, idempotency_key) DO UPDATE SET \
         fingerprint = excluded.fingerprint, status = excluded.status, \
         answer_sealed = excluded.answer_sealed, created_at = excluded.created_at \
         WHERE idempotency_keys.created_at < $7",
    )
    .bind(claim.user.as_str())
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(i64::from(status))
    .bind(sealed)
    .bind(now)
    .bind(now - WINDOW.as_millis() as i64)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The answer remembered for `key` of `user` within the window, opened.
pub async fn find(
    db: &Db,
    secrets: &SecretBox,
    user: &UserId,
    key: &str,
) -> anyhow::Result<Option<Remembered>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT fingerprint, status, answer_sealed, created_at FROM idempotency_keys \
         WHERE user_id = $1 AND idempotency_key = $2 AND created_at >= $3",
    )
    .bind(user.as_str())
    .bind(key)
    .bind(now_ms() - WINDOW.as_millis() as i64)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Remembered {
        body: secrets.open(&row.answer_sealed, &context(user, key))?,
        fingerprint: row.fingerprint,
        status: u16::try_from(row.status)?,
        created_at: row.created_at,
    }))
}

/// Deletes the keys remembered before `cutoff` (Unix ms).
pub async fn purge_before(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(cutoff)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
