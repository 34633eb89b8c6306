//! Svix operational webhooks at `POST /api/v1/webhooks/internal/svix-ops`, verified with
//! `SVIX_OPS_WEBHOOK_SECRET`. They keep our per-endpoint failure counters, which drive
//! the same auto-pause as the embedded engine:
//!
//! - `message.attempt.failing` / `message.attempt.exhausted`: one more failure in a row
//!   (Svix sends these per message, not per attempt: see docs/svix.md).
//!   A message that is first `failing` and then `exhausted` counts once: the streak
//!   counts troubled messages. At `EHRS_WEBHOOK_AUTOPAUSE_AFTER` in a row the endpoint
//!   is disabled in Svix, once, with a `subscription.auto_paused` audit entry.
//! - `message.attempt.recovered`: a success; the streak is reset.
//! - `endpoint.disabled`: Svix disabled the endpoint itself; recorded (and audited) as
//!   auto-paused.
//! - `endpoint.enabled` resets, `endpoint.deleted` forgets; other types are acknowledged.
//!
//! Each webhook id is applied once (Svix retries operational webhooks too).

use super::{SvixBackend, endpoint_health};
use crate::db::{Tx, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::ids::{AuditId, SubscriptionId};
use crate::outbound::Webhooks;
use crate::outbound::health::{self, Ledger, Streak};
use crate::outbound::outcome::Outcome;
use crate::time::Timestamp;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
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
    let event: OpsEvent = serde_json::from_slice(body).map_err(ApiError::malformed_json)?;
    let webhook_id = ["webhook-id", "svix-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .unwrap_or_default()
        .to_string();
    apply(backend, &webhook_id, &event).await
}

/// What one event does to the counters.
enum Effect {
    /// An attempt Svix reported: a message failing or exhausted, or recovered.
    Attempt {
        outcome: Outcome,
        status: Option<i64>,
        at: Timestamp,
        msg_id: Option<String>,
    },
    DisabledBySvix {
        reason: String,
    },
    Enabled,
    Deleted,
}

/// The outcome of the last attempt Svix reports with a failure, by its HTTP status. With
/// no HTTP answer Svix reports 0 and does not say why (timeout, refused, TLS): that is
/// taken as a rejection, since all that matters here is that it counts as a failure.
fn failed_attempt(status: Option<i64>) -> Outcome {
    match status
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| *s > 0)
    {
        Some(code) if Outcome::of_answer(code).is_failure() => Outcome::of_answer(code),
        _ => Outcome::Rejected,
    }
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
    let status = event
        .data
        .last_attempt
        .as_ref()
        .and_then(|a| a.response_status_code);
    Some(match event.event_type.as_str() {
        "message.attempt.failing" | "message.attempt.exhausted" => Effect::Attempt {
            outcome: failed_attempt(status),
            msg_id: event.data.msg_id.clone(),
            status,
            at: attempt_at(),
        },
        "message.attempt.recovered" => Effect::Attempt {
            outcome: Outcome::Delivered,
            msg_id: None,
            status,
            at: attempt_at(),
        },
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
    if !first_time(&mut tx, webhook_id, now).await? {
        return Ok(());
    }
    endpoint_health::ensure_row(&mut tx, &id).await?;
    let mut pause_claim = None;
    match effect {
        Effect::Attempt {
            outcome,
            status,
            at,
            msg_id,
        } => {
            // Svix reports a message `failing` (4th attempt failed) and later `exhausted`
            // (last attempt failed): one troubled message, counted once. The mark lives
            // with the webhook ids, and is purged with them.
            let counted = match (&msg_id, outcome.is_failure()) {
                (Some(msg), true) => {
                    first_time(&mut tx, &format!("troubled:{id}:{msg}"), now).await?
                }
                _ => true,
            };
            let mut streak = Streak::default();
            if counted {
                streak.add(outcome);
            }
            health::record(&mut tx, Ledger::SvixEndpoints, &id, streak, at.millis()).await?;
            if outcome.is_failure() {
                let reason = format!(
                    "{} consecutive failed deliveries: Svix reported that many messages in a row failing or exhausted (last status: {})",
                    backend.autopause_after,
                    status
                        .filter(|s| *s > 0)
                        .map_or("no answer".to_string(), |s| s.to_string())
                );
                // The audit entry commits with the claim, before Svix is asked: the pause
                // shows (flag set and Svix's endpoint disabled) only once its entry is
                // there too.
                let threshold = Some(backend.autopause_after);
                if let Some(entry) =
                    health::pause_once(&mut tx, Ledger::SvixEndpoints, &id, &reason, threshold, now)
                        .await?
                {
                    pause_claim = Some((reason, entry));
                }
            }
        }
        Effect::DisabledBySvix { reason } => {
            health::pause_once(&mut tx, Ledger::SvixEndpoints, &id, &reason, None, now).await?;
        }
        Effect::Enabled => health::reset(&mut tx, Ledger::SvixEndpoints, &id, now).await?,
        Effect::Deleted => endpoint_health::remove(&mut tx, &id).await?,
    }
    tx.commit().await?;
    if let Some((reason, entry)) = pause_claim {
        pause(backend, &id, webhook_id, &reason, &entry).await?;
    }
    Ok(())
}

/// Forgets the operational webhooks (and troubled-message marks) seen before `cutoff`.
pub(super) async fn forget_seen_before(db: &crate::db::Db, cutoff: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM svix_ops_seen WHERE received_at < $1")
        .bind(cutoff)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Marks `key` seen; true the first time only.
async fn first_time(tx: &mut Tx, key: &str, now: i64) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO svix_ops_seen (webhook_id, received_at) VALUES ($1, $2) \
         ON CONFLICT (webhook_id) DO NOTHING",
    )
    .bind(key)
    .bind(now)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(inserted == 1)
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
            health::paused(id, reason);
            Ok(())
        }
        Err(err) => {
            let mut tx = backend.db.begin().await?;
            health::undo_pause(&mut tx, Ledger::SvixEndpoints, id, audit_entry).await?;
            sqlx::query("DELETE FROM svix_ops_seen WHERE webhook_id = $1")
                .bind(webhook_id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            Err(super::api_error(err, "subscription", id.as_str()))
        }
    }
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
