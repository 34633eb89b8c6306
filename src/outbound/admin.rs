//! The administration API of SPEC §5 (admin role only). Handlers talk to the configured
//! [`WebhookBackend`], never to tables, so the embedded engine and Svix serve the same
//! routes; what every backend shares (validation, the SSRF check, the audit trail) is
//! done here.

use super::Webhooks;
use super::audit::{self, AuditEntry};
use super::backend::{
    AttemptLog, CursorPage, FailureStats, MessageFilter, MessageLog, Requeued, TestDelivery,
    UplinkStatus,
};
use super::ssrf;
use super::subscriptions::{
    NewSubscription, Subscription, SubscriptionUpdate, SubscriptionWithSecret,
};
use crate::auth::AuthState;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, OptionalJson, Page, PageParams, parse_id};
use crate::ids::SubscriptionId;
use crate::time::Timestamp;
use axum::Json;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The administration routes, for any application state that holds [`Webhooks`] and an
/// [`AuthState`].
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Webhooks: FromRef<S>,
    AuthState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions, create_subscription))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(toggle_subscription))
        .routes(routes!(test_subscription))
        .routes(routes!(rotate_secret))
        .routes(routes!(failure_stats))
        .routes(routes!(recover))
        .routes(routes!(list_logs))
        .routes(routes!(list_attempts))
        .routes(routes!(retry_message))
        .routes(routes!(list_audit))
        .routes(routes!(delivery_status))
        .routes(routes!(super::feed::catch_up))
}

/// Refuses URLs that are not https (unless the development switch is on), that hold a
/// control character or whitespace, or that resolve to internal addresses. Returns the URL
/// normalised once (`Url::as_str`): the one string stored, shown, audited and called.
pub async fn check_target(state: &Webhooks, url: &str) -> Result<String, ApiError> {
    ssrf::check_url(url, &state.policy, state.lookup.as_ref())
        .await
        .map(|url| url.as_str().to_string())
        .map_err(|refusal| ApiError::invalid_field("url", refusal.field_reason()))
}

/// Every route here is admin-only: checked before the body is read.
type Admin = Require<can::ManageWebhooks>;

fn subscription_id(raw: &str) -> ApiResult<SubscriptionId> {
    parse_id(raw, "subscription", SubscriptionId::parse)
}

/// Writes one audit entry for `user`'s `action` (details must hold no secret).
async fn audit(
    state: &Webhooks,
    user: &CurrentUser,
    action: &str,
    subscription: Option<&SubscriptionId>,
    details: Value,
) -> ApiResult<()> {
    let username = crate::auth::repo::get(&state.db, &user.id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        Some(&user.id),
        &username,
        action,
        subscription,
        &details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions", tag = "webhooks", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Subscription>), (status = 403, body = ErrorBody)))]
async fn list_subscriptions(
    State(state): State<Webhooks>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Subscription>>> {
    let (limit, offset) = page.resolve()?;
    Ok(Json(state.backend.list_subscriptions(limit, offset).await?))
}

/// Create a subscription. The answer carries its signing secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks/subscriptions", tag = "webhooks", security(("bearer" = [])),
    request_body = NewSubscription,
    responses((status = 201, body = SubscriptionWithSecret), (status = 409, description = "The server keeps no more subscriptions (`subscription_limit`)", body = ErrorBody), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_subscription(
    State(state): State<Webhooks>,
    user: Admin,
    ApiJson(mut body): ApiJson<NewSubscription>,
) -> ApiResult<(StatusCode, Json<SubscriptionWithSecret>)> {
    body.validate()?;
    body.url = check_target(&state, &body.url).await?;
    // Checked before the insert: two creations at the same moment may pass it together,
    // which a bound against runaway clients can afford.
    if state.backend.list_subscriptions(1, 0).await?.total >= state.max_subscriptions {
        return Err(ApiError::limit_reached(
            "subscription_limit",
            "subscriptions",
            state.max_subscriptions,
            "EHRS_WEBHOOK_MAX_SUBSCRIPTIONS",
        ));
    }
    let created = state.backend.create_subscription(&body).await?;
    let details =
        json!({"url": body.url, "event_types": body.event_types, "payload": body.payload});
    audit(
        &state,
        &user,
        "subscription.created",
        Some(&created.subscription.id),
        details,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)))]
async fn get_subscription(
    State(state): State<Webhooks>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(
        state
            .backend
            .get_subscription(&subscription_id(&raw)?)
            .await?,
    ))
}

/// Change url, description, event-type filter or payload mode (absent fields stay).
#[utoipa::path(put, path = "/api/v1/webhooks/subscriptions/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")), request_body = SubscriptionUpdate,
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_subscription(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
    ApiJson(mut body): ApiJson<SubscriptionUpdate>,
) -> ApiResult<Json<Subscription>> {
    let id = subscription_id(&raw)?;
    body.validate()?;
    if let Some(url) = &body.url {
        body.url = Some(check_target(&state, url).await?);
    }
    let updated = state.backend.update_subscription(&id, &body).await?;
    let details = json!({"url": body.url, "description": body.description, "event_types": body.event_types, "payload": body.payload});
    audit(&state, &user.0, "subscription.updated", Some(&id), details).await?;
    Ok(Json(updated))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/subscriptions/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_subscription(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
) -> ApiResult<StatusCode> {
    let id = subscription_id(&raw)?;
    state.backend.delete_subscription(&id).await?;
    audit(
        &state,
        &user.0,
        "subscription.deleted",
        Some(&id),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of the toggle route; without `enabled` the current state is flipped.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: Option<bool>,
}

/// Enable or disable. Enabling resets the failure streak and sends the deliveries held
/// while disabled, in sequence order.
#[utoipa::path(put, path = "/api/v1/webhooks/subscriptions/{id}/toggle", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")), request_body(content = Toggle, description = "optional"),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)))]
async fn toggle_subscription(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
    OptionalJson(body): OptionalJson<Toggle>,
) -> ApiResult<Json<Subscription>> {
    let id = subscription_id(&raw)?;
    let enabled = match body.and_then(|t| t.enabled) {
        Some(enabled) => enabled,
        None => !state.backend.get_subscription(&id).await?.enabled,
    };
    let updated = state.backend.set_enabled(&id, enabled).await?;
    let action = if enabled {
        "subscription.enabled"
    } else {
        "subscription.disabled"
    };
    audit(&state, &user.0, action, Some(&id), json!({})).await?;
    Ok(Json(updated))
}

/// Send a `webhook.test` event now; the answer is the attempt (status, body, duration).
#[utoipa::path(post, path = "/api/v1/webhooks/subscriptions/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = TestDelivery), (status = 404, body = ErrorBody)))]
async fn test_subscription(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
) -> ApiResult<Json<TestDelivery>> {
    let id = subscription_id(&raw)?;
    let sent = state.backend.send_test(&id).await?;
    audit(
        &state,
        &user,
        "subscription.tested",
        Some(&id),
        json!({"status_code": sent.attempt.as_ref().and_then(|a| a.status_code)}),
    )
    .await?;
    Ok(Json(sent))
}

/// A new signing secret (shown this once); the old one keeps signing alongside for
/// `EHRS_WEBHOOK_SECRET_OVERLAP` (24 h by default).
#[utoipa::path(post, path = "/api/v1/webhooks/subscriptions/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = SubscriptionWithSecret), (status = 404, body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
) -> ApiResult<Json<SubscriptionWithSecret>> {
    let id = subscription_id(&raw)?;
    let overlap_until =
        Timestamp(Timestamp::now().millis() + state.secret_overlap.as_millis() as i64);
    let rotated = state.backend.rotate_secret(&id, overlap_until).await?;
    audit(
        &state,
        &user,
        "subscription.secret_rotated",
        Some(&id),
        json!({"previous_secret_valid_until": overlap_until}),
    )
    .await?;
    Ok(Json(rotated))
}

#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions/{id}/failure-stats", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = FailureStats), (status = 404, body = ErrorBody)))]
async fn failure_stats(
    State(state): State<Webhooks>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> ApiResult<Json<FailureStats>> {
    Ok(Json(
        state.backend.failure_stats(&subscription_id(&raw)?).await?,
    ))
}

/// How webhooks go out from this server: the backend, the camp's uplink, and the private
/// ranges subscriptions may reach.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryStatus {
    /// `embedded` or `svix`.
    pub backend: &'static str,
    /// The camp's uplink as the embedded engine judges it; absent under Svix, which
    /// delivers from its own network.
    pub uplink: Option<UplinkStatus>,
    /// `EHRS_WEBHOOK_ALLOWED_SUBNETS`: private ranges subscriptions may reach.
    #[schema(example = json!(["192.168.10.0/24"]))]
    pub allowed_subnets: Vec<String>,
    /// `EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS`: of those, where `http://` is accepted.
    pub allow_http_subnets: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/status", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = DeliveryStatus)))]
async fn delivery_status(State(state): State<Webhooks>, _admin: Admin) -> Json<DeliveryStatus> {
    let ranges = |nets: &[ipnet::IpNet]| nets.iter().map(ToString::to_string).collect();
    Json(DeliveryStatus {
        backend: state.backend.name(),
        uplink: state.backend.uplink(),
        allowed_subnets: ranges(&state.policy.allowed_subnets),
        allow_http_subnets: ranges(&state.policy.http_subnets),
    })
}

/// Body of the recover route: the window of messages to send again.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverWindow {
    pub since: chrono::DateTime<chrono::Utc>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Queue again every failed or exhausted delivery of this subscription whose message was
/// created in the window (with its original `webhook-id`).
#[utoipa::path(post, path = "/api/v1/webhooks/subscriptions/{id}/recover", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id")), request_body = RecoverWindow,
    responses((status = 202, body = Requeued), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn recover(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<RecoverWindow>,
) -> ApiResult<(StatusCode, Json<Requeued>)> {
    let id = subscription_id(&raw)?;
    if body.until.is_some_and(|until| until <= body.since) {
        return Err(ApiError::invalid_field("until", "must be after since"));
    }
    let requeued = state
        .backend
        .recover(&id, body.since.into(), body.until.map(Into::into))
        .await?;
    audit(
        &state,
        &user,
        "subscription.recovered",
        Some(&id),
        json!({"since": body.since, "until": body.until, "requeued": requeued.requeued}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(requeued)))
}

/// Messages, newest first, with their state per subscription.
#[utoipa::path(get, path = "/api/v1/webhooks/logs", tag = "webhooks", security(("bearer" = [])), params(MessageFilter),
    responses((status = 200, body = CursorPage<MessageLog>), (status = 400, body = ErrorBody),
        (status = 404, description = "`subscription_id` names no subscription", body = ErrorBody)))]
async fn list_logs(
    State(state): State<Webhooks>,
    _admin: Admin,
    ApiQuery(filter): ApiQuery<MessageFilter>,
) -> ApiResult<Json<CursorPage<MessageLog>>> {
    Ok(Json(state.backend.list_messages(&filter).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CursorParams {
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One subscription's attempts, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/logs/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "subscription id"), CursorParams),
    responses((status = 200, body = CursorPage<AttemptLog>), (status = 404, body = ErrorBody)))]
async fn list_attempts(
    State(state): State<Webhooks>,
    _admin: Admin,
    Path(raw): Path<String>,
    ApiQuery(page): ApiQuery<CursorParams>,
) -> ApiResult<Json<CursorPage<AttemptLog>>> {
    let id = subscription_id(&raw)?;
    let (limit, _) = PageParams {
        limit: page.limit,
        offset: None,
    }
    .resolve()?;
    Ok(Json(
        state
            .backend
            .list_attempts(&id, page.cursor.as_deref(), limit)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Only to this subscription (even if it received the message); otherwise to every
    /// subscription that has not received it.
    pub subscription_id: Option<String>,
}

/// Deliver a message again, with its original `webhook-id`.
#[utoipa::path(post, path = "/api/v1/webhooks/logs/{id}/retry", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id (msg_…)")), request_body(content = RetryRequest, description = "optional"),
    responses((status = 202, body = Requeued), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_message(
    State(state): State<Webhooks>,
    user: Admin,
    Path(raw): Path<String>,
    OptionalJson(body): OptionalJson<RetryRequest>,
) -> ApiResult<(StatusCode, Json<Requeued>)> {
    let target = body
        .and_then(|r| r.subscription_id)
        .map(|raw| parse_id(&raw, "subscription", SubscriptionId::parse))
        .transpose()?;
    let requeued = state.backend.retry_message(&raw, target.as_ref()).await?;
    audit(
        &state,
        &user,
        "message.retried",
        target.as_ref(),
        json!({"message_id": raw, "requeued": requeued.requeued}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(requeued)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    pub subscription_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// The audit trail of administrative actions, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/audit", tag = "webhooks", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>),
        (status = 404, description = "`subscription_id` names no subscription", body = ErrorBody)))]
async fn list_audit(
    State(state): State<Webhooks>,
    _admin: Admin,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let (limit, offset) = PageParams {
        limit: params.limit,
        offset: params.offset,
    }
    .resolve()?;
    let subscription = params
        .subscription_id
        .as_deref()
        .map(subscription_id)
        .transpose()?;
    let (items, total) = audit::list(&state.db, subscription.as_ref(), limit, offset).await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}
