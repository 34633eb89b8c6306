//! SQL of the delivery engine: claiming due deliveries and releasing claims.
//!
//! New deliveries reach the dispatcher from the fan-out, already leased and in memory;
//! claiming is for the rest: retries coming due, a backlog the dispatcher had no room
//! for, re-enabled or recovered subscriptions, and leases of a crashed engine. A claim
//! is a lease in the row (`locked_until`, `locked_by`), so several processes on
//! PostgreSQL share the work and a crashed process's claims come back.
//!
//! A claim reads, per enabled subscription with free slots, that subscription's oldest due
//! deliveries through the `(subscription_id, status, next_attempt_at, sequence)` index —
//! so its cost does not grow with the backlog — then locks them with one conditional
//! UPDATE. The UPDATE differs by dialect (PostgreSQL adds `FOR UPDATE SKIP LOCKED`;
//! SQLite's single writer makes the plain conditional UPDATE atomic); both variants sit
//! here side by side.

use super::EngineConfig;
use super::lanes::Want;
use crate::db::{Backend, Db, now_ms};
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::time::Timestamp;

/// A claimed delivery with everything needed to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
    pub sequence: i64,
    pub attempts: i64,
    pub event_id: String,
    pub event_type: String,
    /// `None` once the retention period cleared it.
    pub payload: Option<String>,
    pub ids: String,
    pub created_at: Timestamp,
    pub url: String,
    pub payload_mode: String,
    pub secret_enc: String,
    pub previous_secret_enc: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// When this engine's lease on the row ends (`None`: held by the caller, who sends
    /// it at once).
    #[sqlx(default)]
    pub lease_until: Option<i64>,
}

/// A JSON array parameter expanded to rows, per dialect.
pub fn json_rows(backend: Backend, param: &str) -> String {
    match backend {
        Backend::Sqlite => format!("SELECT value FROM json_each({param})"),
        Backend::Postgres => format!("SELECT json_array_elements_text(CAST({param} AS json))"),
    }
}

/// What a claim brought.
#[derive(Debug, Default)]
pub struct Claims {
    pub claimed: Vec<Claimed>,
    /// Ordered subscriptions whose lowest pending delivery is still leased to this engine
    /// (sent, its outcome not recorded yet): claim them again after the recorder wrote.
    pub behind_own_lease: Vec<SubscriptionId>,
}

/// A pending delivery of an ordered subscription, with what decides whether it may go.
#[derive(sqlx::FromRow)]
struct InLine {
    #[sqlx(flatten)]
    claimed: Claimed,
    next_attempt_at: i64,
    locked_until: Option<i64>,
    locked_by: Option<String>,
}

const CLAIMED_COLUMNS: &str = "d.id AS delivery_id, d.message_id, d.subscription_id, d.sequence, d.attempts, \
     m.event_id, m.event_type, m.payload, m.ids, m.created_at, \
     s.url, s.payload_mode, s.secret_enc, s.previous_secret_enc, s.previous_secret_until";

/// Claims the due deliveries of `wants`, oldest first within a subscription so its
/// deliveries go out in sequence order. For an ordered subscription only an unbroken run
/// from its lowest pending sequence is claimed: the walk stops at the first delivery that
/// is not due (a retry waiting) or is leased (in flight here or at another engine), and
/// after locking, anything behind a delivery another engine locked first is let go.
pub async fn claim(db: &Db, config: &EngineConfig, wants: &[Want]) -> Result<Claims, sqlx::Error> {
    let now = now_ms();
    let mut candidates: Vec<Claimed> = Vec::new();
    let mut behind_own_lease = Vec::new();
    for want in wants {
        if want.ordered {
            let rows: Vec<InLine> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CLAIMED_COLUMNS}, d.next_attempt_at, d.locked_until, d.locked_by \
                 FROM webhook_deliveries d \
                 JOIN webhook_messages m ON m.id = d.message_id \
                 JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                 WHERE d.subscription_id = $1 AND d.status = 'pending' AND s.enabled = 1 \
                 ORDER BY d.sequence LIMIT $2"
            )))
            .bind(&want.subscription)
            .bind(want.count as i64)
            .fetch_all(db.pool())
            .await?;
            for row in rows {
                if row.locked_until.is_some_and(|until| until >= now) {
                    if row.locked_by.as_deref() == Some(config.instance.as_str()) {
                        behind_own_lease.push(want.subscription.clone());
                    }
                    break;
                }
                if row.next_attempt_at > now {
                    break;
                }
                candidates.push(row.claimed);
            }
            continue;
        }
        let rows: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS} \
             FROM webhook_deliveries d \
             JOIN webhook_messages m ON m.id = d.message_id \
             JOIN webhook_subscriptions s ON s.id = d.subscription_id \
             WHERE d.subscription_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
               AND (d.locked_until IS NULL OR d.locked_until < $2) AND s.enabled = 1 \
             ORDER BY d.next_attempt_at, d.sequence LIMIT $3"
        )))
        .bind(&want.subscription)
        .bind(now)
        .bind(want.count as i64)
        .fetch_all(db.pool())
        .await?;
        candidates.extend(rows);
    }
    if candidates.is_empty() {
        return Ok(Claims {
            claimed: candidates,
            behind_own_lease,
        });
    }
    let (locked, lease_until) = lock(db, config, &candidates, now).await?;
    // An ordered run keeps only its unbroken start: what another engine took first
    // would otherwise be overtaken.
    let ordered: Vec<&SubscriptionId> = wants
        .iter()
        .filter(|w| w.ordered)
        .map(|w| &w.subscription)
        .collect();
    let mut broken: Vec<SubscriptionId> = Vec::new();
    let mut claimed = Vec::new();
    let mut let_go = Vec::new();
    for candidate in candidates {
        let held = locked.contains(&candidate.delivery_id);
        if ordered.contains(&&candidate.subscription_id) {
            if broken.contains(&candidate.subscription_id) {
                if held {
                    let_go.push(candidate.delivery_id.clone());
                }
                continue;
            }
            if !held {
                broken.push(candidate.subscription_id.clone());
                continue;
            }
        } else if !held {
            continue;
        }
        claimed.push(Claimed {
            lease_until: Some(lease_until),
            ..candidate
        });
    }
    release(db, &config.instance, &let_go).await?;
    Ok(Claims {
        claimed,
        behind_own_lease,
    })
}

/// One delivery with everything needed to send it, whatever its subscription's state
/// (the admin test route sends to disabled subscriptions too).
pub async fn by_id(db: &Db, id: &DeliveryId) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLAIMED_COLUMNS} \
         FROM webhook_deliveries d \
         JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

/// Takes the lease on those candidates still free; returns the ids this engine now holds
/// and when the lease ends.
async fn lock(
    db: &Db,
    config: &EngineConfig,
    candidates: &[Claimed],
    now: i64,
) -> Result<(Vec<DeliveryId>, i64), sqlx::Error> {
    let backend = db.backend();
    let wanted = serde_json::to_string(
        &candidates
            .iter()
            .map(|c| &c.delivery_id)
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let still_free = "status = 'pending' AND (locked_until IS NULL OR locked_until < $4)";
    let ids = json_rows(backend, "$1");
    let sql = match backend {
        Backend::Sqlite => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN ({ids}) AND {still_free} RETURNING id"
        ),
        Backend::Postgres => format!(
            "UPDATE webhook_deliveries SET locked_until = $2, locked_by = $3 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE id IN ({ids}) AND {still_free} \
                          FOR UPDATE SKIP LOCKED) RETURNING id"
        ),
    };
    let lease_end = now + config.lease().as_millis() as i64;
    let mut tx = db.begin().await?;
    let locked = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(wanted)
        .bind(lease_end)
        .bind(&config.instance)
        .bind(now)
        .fetch_all(tx.conn())
        .await?;
    tx.commit().await?;
    Ok((locked, lease_end))
}

/// Releases the claims of engine `instance` that were not finished (graceful stop).
pub async fn release_unfinished(db: &Db, instance: &str) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released = sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE locked_by = $1 AND status = 'pending'",
    )
    .bind(instance)
    .execute(tx.conn())
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

/// Releases this engine's leases on `ids` (deliveries it will not send after all: their
/// subscription was disabled or changed while they waited in memory).
pub async fn release(db: &Db, instance: &str, ids: &[DeliveryId]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE id IN ({}) AND locked_by = $2 AND status = 'pending'",
        json_rows(db.backend(), "$1")
    );
    let mut tx = db.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .bind(instance)
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// SQLite, at the start of the one engine allowed to deliver for the file: every lease
/// in it belongs to a process that is gone (a crash), so all are released at once
/// instead of waiting for them to run out.
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released = sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
         WHERE locked_until IS NOT NULL AND status = 'pending'",
    )
    .execute(tx.conn())
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}
