//! The audit trail of administrative actions on subscriptions: who did what, when. The
//! details never carry secrets (the routes pass only non-secret fields).

use crate::db::{Db, Tx};
use crate::ids::{AuditId, SubscriptionId, UserId};
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: AuditId,
    /// The user's id; absent for automatic actions.
    pub actor_id: Option<UserId>,
    /// Username, or `system` for automatic actions such as auto-pause.
    pub actor: String,
    pub action: String,
    pub subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Object)]
    pub details: Value,
    pub created_at: Timestamp,
}

/// Appends an entry; returns its id.
pub async fn record(
    tx: &mut Tx,
    actor_id: Option<&UserId>,
    actor: &str,
    action: &str,
    subscription: Option<&SubscriptionId>,
    details: &Value,
) -> Result<AuditId, sqlx::Error> {
    let id = AuditId::generate();
    sqlx::query(
        "INSERT INTO webhook_audit (id, actor_id, actor, action, subscription_id, details, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(actor_id)
    .bind(actor)
    .bind(action)
    .bind(subscription)
    .bind(details.to_string())
    .bind(Timestamp::now())
    .execute(tx.conn())
    .await?;
    Ok(id)
}

/// Removes an entry written in `tx`'s transaction for an action that was then taken
/// back (a pause the delivery service could not carry out).
pub async fn remove(tx: &mut Tx, id: &AuditId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_audit WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Newest first, optionally for one subscription.
pub async fn list(
    db: &Db,
    subscription: Option<&SubscriptionId>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, actor_id, actor, action, subscription_id, details, created_at FROM webhook_audit \
         WHERE ($1 IS NULL OR subscription_id = $1) ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(subscription)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_audit WHERE ($1 IS NULL OR subscription_id = $1)",
    )
    .bind(subscription)
    .fetch_one(db.pool())
    .await?;
    let entries = rows
        .iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            Ok(AuditEntry {
                id: row.try_get("id")?,
                actor_id: row.try_get("actor_id")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                subscription_id: row.try_get("subscription_id")?,
                details: serde_json::from_str(&details).unwrap_or(Value::Null),
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((entries, total))
}
