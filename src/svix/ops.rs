//! Svix operational webhooks at `POST /api/v1/webhooks/internal/svix-ops`, verified with
//! `SVIX_OPS_WEBHOOK_SECRET`. They keep our per-endpoint failure counters, which drive
//! the same auto-pause as the embedded engine:
//!
//! - `message.attempt.failing` / `message.attempt.exhausted`: one more failure in a row
//!   (Svix sends these per message, not per attempt: see README "Using a Svix server").
//!   A message that is first `failing` and then `exhausted` counts once: the streak
//!   counts troubled messages. At `EHRS_WEBHOOK_AUTOPAUSE_AFTER` in a row the endpoint
//!   is disabled in Svix, once, with a `subscription.auto_paused` audit entry.
//! - `message.attempt.recovered`: a success; the streak is reset.
//! - `endpoint.disabled`: Svix disabled the endpoint itself; recorded (and audited) as
//!   auto-paused.
//! - `endpoint.enabled` resets, `endpoint.deleted` forgets; other types are acknowledged.
//!
//! Each webhook id is applied once (Svix retries operational webhooks too).

use super::SvixBackend;
use crate::db::{Db, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::ids::{AuditId, SubscriptionId};
use crate::outbound::Webhooks;
use crate::time::Timestamp;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sqlx::Row;
use std::collections::HashMap;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The operational-webhook route, for any application state that holds [`Webhooks`]. It
/// is served whatever the backend (and documented), and answered by the backend: only
/// the Svix backend takes these.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Webhooks: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(receive))
}

/// Our counters for one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealth {
    pub consecutive_failures: i64,
    pub last_failure_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub auto_paused: bool,
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
}

const COLUMNS: &str = "subscription_id, consecutive_failures, last_failure_at, last_success_at, auto_paused, paused_reason, paused_at, disabled_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<EndpointHealth, sqlx::Error> {
    Ok(EndpointHealth {
        consecutive_failures: row.try_get("consecutive_failures")?,
        last_failure_at: row.try_get("last_failure_at")?,
        last_success_at: row.try_get("last_success_at")?,
        auto_paused: row.try_get::<i64, _>("auto_paused")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        paused_at: row.try_get("paused_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

pub async fn health(db: &Db, id: &SubscriptionId) -> Result<Option<EndpointHealth>, sqlx::Error> {
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
pub async fn all_health(db: &Db) -> Result<HashMap<String, EndpointHealth>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM svix_endpoint_health");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("subscription_id")?, from_row(row)?)))
        .collect()
}

/// Makes sure the endpoint has a row, inside `tx`.
async fn ensure_row(tx: &mut crate::db::Tx, id: &SubscriptionId) -> Result<(), sqlx::Error> {
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
    update_row(db, id, RESET).await
}

const RESET: &str = "UPDATE svix_endpoint_health SET consecutive_failures = 0, auto_paused = 0, \
     paused_reason = NULL, paused_at = NULL, disabled_at = NULL, updated_at = $2 \
     WHERE subscription_id = $1";

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
    sqlx::query("DELETE FROM svix_endpoint_health WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// An operational webhook: `{"type": …, "data": {…}}`. Every field of `data` is optional
/// here: each type carries a different subset.
#[derive(Debug, Deserialize)]
pub struct OpsEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: OpsData,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpsData {
    pub app_id: Option<String>,
    pub app_uid: Option<String>,
    pub endpoint_id: Option<String>,
    pub endpoint_uid: Option<String>,
    pub msg_id: Option<String>,
    pub last_attempt: Option<LastAttempt>,
    pub fail_since: Option<chrono::DateTime<chrono::Utc>>,
    pub trigger: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAttempt {
    pub response_status_code: Option<i64>,
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

/// Svix operational webhooks (WEBHOOK_BACKEND=svix): point a Svix operational-webhook
/// endpoint here. Signed with `SVIX_OPS_WEBHOOK_SECRET` (Standard Webhooks headers).
#[utoipa::path(post, path = "/api/v1/webhooks/internal/svix-ops", tag = "webhooks",
    request_body(content = Object, description = "`{\"type\": \"message.attempt.failing\" | \"message.attempt.exhausted\" | \"message.attempt.recovered\" | \"endpoint.disabled\" | …, \"data\": {…}}`"),
    responses((status = 204, description = "applied (or already applied, or not about an EHRS endpoint)"),
        (status = 401, body = crate::error::ErrorBody, description = "signature missing or wrong, or no secret configured"),
        (status = 404, body = crate::error::ErrorBody, description = "the Svix backend is not in use"),
        (status = 502, body = crate::error::ErrorBody, description = "Svix could not be reached to pause the endpoint; Svix will send the webhook again")))]
pub async fn receive(
    State(webhooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    webhooks
        .backend
        .operational_webhook(&headers, &body)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Verifies and applies one operational webhook for `backend`.
pub(super) async fn receive_verified(
    backend: &SvixBackend,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<()> {
    let Some(secret) = &backend.ops_secret else {
        return Err(ApiError::unauthorized(
            "SVIX_OPS_WEBHOOK_SECRET is not set, so no operational webhook can be verified",
        ));
    };
    let verifier = svix::webhooks::Webhook::new(secret).map_err(|_| {
        ApiError::internal(anyhow::anyhow!(
            "SVIX_OPS_WEBHOOK_SECRET is not a whsec_ secret"
        ))
    })?;
    if verifier.verify(body, headers).is_err() {
        return Err(ApiError::unauthorized(
            "missing, stale or wrong webhook signature",
        ));
    }
    let event: OpsEvent = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request("malformed_json", err.to_string()))?;
    let webhook_id = ["webhook-id", "svix-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .unwrap_or_default()
        .to_string();
    apply(backend, &webhook_id, &event).await
}

/// What one event does to the counters.
enum Effect {
    Failure {
        status: Option<i64>,
        at: Timestamp,
        msg_id: Option<String>,
    },
    Success {
        at: Timestamp,
    },
    DisabledBySvix {
        reason: String,
    },
    Enabled,
    Deleted,
}

fn effect(event: &OpsEvent) -> Option<Effect> {
    let attempt_at = || {
        event
            .data
            .last_attempt
            .as_ref()
            .and_then(|a| a.timestamp)
            .map(Timestamp::from)
            .unwrap_or_else(Timestamp::now)
    };
    Some(match event.event_type.as_str() {
        "message.attempt.failing" | "message.attempt.exhausted" => Effect::Failure {
            msg_id: event.data.msg_id.clone(),
            status: event
                .data
                .last_attempt
                .as_ref()
                .and_then(|a| a.response_status_code),
            at: attempt_at(),
        },
        "message.attempt.recovered" => Effect::Success { at: attempt_at() },
        "endpoint.disabled" => Effect::DisabledBySvix {
            reason: match event.data.fail_since {
                Some(since) => format!(
                    "disabled by Svix ({}): failing since {}",
                    event.data.trigger.as_deref().unwrap_or("automatic"),
                    Timestamp::from(since).to_rfc3339()
                ),
                None => format!(
                    "disabled by Svix ({})",
                    event.data.trigger.as_deref().unwrap_or("automatic")
                ),
            },
        },
        "endpoint.enabled" => Effect::Enabled,
        "endpoint.deleted" => Effect::Deleted,
        _ => return None,
    })
}

/// Applies one event (once per webhook id); pauses the endpoint in Svix when the streak
/// reaches the limit.
async fn apply(backend: &SvixBackend, webhook_id: &str, event: &OpsEvent) -> ApiResult<()> {
    let Some(effect) = effect(event) else {
        return Ok(());
    };
    let ours = [&event.data.app_uid, &event.data.app_id]
        .iter()
        .any(|app| app.as_deref().is_none_or(|app| app == backend.app));
    if !ours {
        return Ok(());
    }
    let Some(id) = subscription_of(backend, &event.data).await? else {
        return Ok(()); // an endpoint not made through EHRS
    };
    let now = now_ms();
    let mut tx = backend.db.begin().await?;
    let first_time = sqlx::query(
        "INSERT INTO svix_ops_seen (webhook_id, received_at) VALUES ($1, $2) \
         ON CONFLICT (webhook_id) DO NOTHING",
    )
    .bind(webhook_id)
    .bind(now)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        return Ok(());
    }
    ensure_row(&mut tx, &id).await?;
    let mut pause_claim = None;
    match effect {
        Effect::Failure { status, at, msg_id } => {
            // Svix reports a message `failing` (4th attempt failed) and later `exhausted`
            // (last attempt failed): one troubled message, counted once. The mark lives
            // with the webhook ids, and is purged with them.
            let counted = match &msg_id {
                Some(msg) => {
                    sqlx::query(
                        "INSERT INTO svix_ops_seen (webhook_id, received_at) VALUES ($1, $2) \
                         ON CONFLICT (webhook_id) DO NOTHING",
                    )
                    .bind(format!("troubled:{id}:{msg}"))
                    .bind(now)
                    .execute(tx.conn())
                    .await?
                    .rows_affected()
                        == 1
                }
                None => true,
            };
            sqlx::query(
                "UPDATE svix_endpoint_health SET consecutive_failures = consecutive_failures + $4, \
                 last_failure_at = $2, updated_at = $3 WHERE subscription_id = $1",
            )
            .bind(&id)
            .bind(at)
            .bind(now)
            .bind(i64::from(counted))
            .execute(tx.conn())
            .await?;
            let reason = format!(
                "{} consecutive failed deliveries: Svix reported that many messages in a row failing or exhausted (last status: {})",
                backend.autopause_after,
                status
                    .filter(|s| *s > 0)
                    .map_or("no answer".to_string(), |s| s.to_string())
            );
            // Exactly once, however many failures arrive together: only the update that
            // flips auto_paused from 0 returns a row.
            let paused: Option<String> = sqlx::query_scalar(
                "UPDATE svix_endpoint_health SET auto_paused = 1, paused_reason = $2, paused_at = $3, \
                 disabled_at = COALESCE(disabled_at, $3) \
                 WHERE subscription_id = $1 AND auto_paused = 0 AND consecutive_failures >= $4 \
                 RETURNING subscription_id",
            )
            .bind(&id)
            .bind(&reason)
            .bind(now)
            .bind(backend.autopause_after)
            .fetch_optional(tx.conn())
            .await?;
            // The audit entry commits with the claim, before Svix is asked: the pause shows
            // (flag set and Svix's endpoint disabled) only once its entry is there too.
            if paused.is_some() {
                let entry = audit_pause(&mut tx, &id, &reason).await?;
                pause_claim = Some((reason, entry));
            }
        }
        Effect::Success { at } => {
            sqlx::query(
                "UPDATE svix_endpoint_health SET consecutive_failures = 0, last_success_at = $2, \
                 updated_at = $3 WHERE subscription_id = $1",
            )
            .bind(&id)
            .bind(at)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        Effect::DisabledBySvix { reason } => {
            let changed = sqlx::query(
                "UPDATE svix_endpoint_health SET auto_paused = 1, paused_reason = $2, paused_at = $3, \
                 disabled_at = COALESCE(disabled_at, $3), updated_at = $3 \
                 WHERE subscription_id = $1 AND auto_paused = 0",
            )
            .bind(&id)
            .bind(&reason)
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if changed == 1 {
                audit_pause(&mut tx, &id, &reason).await?;
            }
        }
        Effect::Enabled => {
            sqlx::query(RESET)
                .bind(&id)
                .bind(now)
                .execute(tx.conn())
                .await?;
        }
        Effect::Deleted => {
            sqlx::query("DELETE FROM svix_endpoint_health WHERE subscription_id = $1")
                .bind(&id)
                .execute(tx.conn())
                .await?;
        }
    }
    tx.commit().await?;
    if let Some((reason, entry)) = pause_claim {
        pause(backend, &id, webhook_id, &reason, &entry).await?;
    }
    Ok(())
}

/// Disables the endpoint in Svix. If Svix cannot be reached, the pause, its audit entry
/// and the webhook's "seen" mark are undone and the error answered, so Svix sends the
/// webhook again (its message stays counted once: the troubled mark is kept).
async fn pause(
    backend: &SvixBackend,
    id: &SubscriptionId,
    webhook_id: &str,
    reason: &str,
    audit_entry: &AuditId,
) -> ApiResult<()> {
    let patch = svix::models::EndpointPatch {
        disabled: Some(true),
        ..Default::default()
    };
    let result = backend
        .client
        .endpoint()
        .patch(backend.app.clone(), id.to_string(), patch)
        .await;
    match result {
        Ok(_) => {
            tracing::warn!(subscription = %id, reason, "auto-paused a Svix endpoint");
            metrics::counter!("ehrs_webhook_autopaused_total").increment(1);
            Ok(())
        }
        Err(err) => {
            let mut tx = backend.db.begin().await?;
            sqlx::query(
                "UPDATE svix_endpoint_health SET auto_paused = 0, paused_reason = NULL, paused_at = NULL \
                 WHERE subscription_id = $1",
            )
            .bind(id)
            .execute(tx.conn())
            .await?;
            sqlx::query("DELETE FROM svix_ops_seen WHERE webhook_id = $1")
                .bind(webhook_id)
                .execute(tx.conn())
                .await?;
            sqlx::query("DELETE FROM webhook_audit WHERE id = $1")
                .bind(audit_entry)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            Err(super::api_error(err, "subscription", id.as_str()))
        }
    }
}

/// The audit entry the embedded engine writes for its auto-pause, by `system`.
async fn audit_pause(
    tx: &mut crate::db::Tx,
    id: &SubscriptionId,
    reason: &str,
) -> Result<AuditId, sqlx::Error> {
    let details = serde_json::json!({ "reason": reason });
    crate::outbound::audit::record(
        tx,
        None,
        "system",
        "subscription.auto_paused",
        Some(id),
        &details,
    )
    .await
}

/// The subscription an event is about: its endpoint uid, or the uid Svix gives for its
/// endpoint id. `None` for endpoints without an EHRS uid.
async fn subscription_of(
    backend: &SvixBackend,
    data: &OpsData,
) -> ApiResult<Option<SubscriptionId>> {
    if let Some(uid) = &data.endpoint_uid {
        return Ok(SubscriptionId::parse(uid));
    }
    let Some(endpoint_id) = &data.endpoint_id else {
        return Ok(None);
    };
    match backend
        .client
        .endpoint()
        .get(backend.app.clone(), endpoint_id.clone())
        .await
    {
        Ok(endpoint) => Ok(endpoint.uid.as_deref().and_then(SubscriptionId::parse)),
        Err(err) if super::svix_status(&err).map(|s| s.as_u16()) == Some(404) => Ok(None),
        Err(err) => Err(super::api_error(err, "endpoint", endpoint_id)),
    }
}
