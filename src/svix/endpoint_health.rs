//! `svix_endpoint_health`: our counters for each Svix endpoint (the subscription's
//! failure streak and auto-pause, which Svix does not keep), read by the admin API and
//! written through the shared mechanism in `crate::outbound::health`, plus what only
//! this backend needs (when an endpoint was disabled).

use crate::db::{Db, Tx, now_ms};
use crate::ids::SubscriptionId;
use crate::outbound::health::{self, Ledger};
use crate::time::Timestamp;
use sqlx::Row;
use std::collections::HashMap;

/// Our counters for one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealth {
    pub consecutive_failures: i64,
    pub last_failure_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub auto_paused: bool,
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
}

const COLUMNS: &str = "subscription_id, consecutive_failures, last_failure_at, last_success_at, auto_paused, paused_reason, paused_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<EndpointHealth, sqlx::Error> {
    Ok(EndpointHealth {
        consecutive_failures: row.try_get("consecutive_failures")?,
        last_failure_at: row.try_get("last_failure_at")?,
        last_success_at: row.try_get("last_success_at")?,
        auto_paused: row.try_get::<i64, _>("auto_paused")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        paused_at: row.try_get("paused_at")?,
    })
}

pub async fn read(db: &Db, id: &SubscriptionId) -> Result<Option<EndpointHealth>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM svix_endpoint_health WHERE subscription_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every endpoint's counters, by subscription id.
pub async fn read_all(db: &Db) -> Result<HashMap<String, EndpointHealth>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM svix_endpoint_health");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("subscription_id")?, from_row(row)?)))
        .collect()
}

/// Makes sure the endpoint has a row, inside `tx`.
pub(super) async fn ensure_row(tx: &mut Tx, id: &SubscriptionId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO svix_endpoint_health (subscription_id, updated_at) VALUES ($1, $2) \
         ON CONFLICT (subscription_id) DO NOTHING",
    )
    .bind(id)
    .bind(now_ms())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Runs one counter update (`$1` = subscription id, `$2` = now) on the endpoint's row.
async fn update_row(db: &Db, id: &SubscriptionId, sql: &'static str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    ensure_row(&mut tx, id).await?;
    sqlx::query(sql)
        .bind(id)
        .bind(now_ms())
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// Re-enabled: the streak and the pause are over.
pub async fn reset(db: &Db, id: &SubscriptionId) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    ensure_row(&mut tx, id).await?;
    health::reset(&mut tx, Ledger::SvixEndpoints, id, now_ms()).await?;
    tx.commit().await
}

/// Disabled by an admin: remembered so that re-enabling replays what Svix skipped.
pub async fn note_disabled(db: &Db, id: &SubscriptionId) -> Result<(), sqlx::Error> {
    update_row(
        db,
        id,
        "UPDATE svix_endpoint_health SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 \
         WHERE subscription_id = $1",
    )
    .await
}

pub async fn forget(db: &Db, id: &SubscriptionId) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    remove(&mut tx, id).await?;
    tx.commit().await
}

/// Deletes the endpoint's row inside `tx`.
pub(super) async fn remove(tx: &mut Tx, id: &SubscriptionId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM svix_endpoint_health WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}
