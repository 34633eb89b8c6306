//! Admin routes for subscriptions (admin role only).

use super::signing;
use super::ssrf;
use super::subscriptions::{self, NewSubscription, Subscription, SubscriptionWithSecret};
use crate::app::AppState;
use crate::auth::{CurrentUser, Permission};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::ids::SubscriptionId;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/webhooks/subscriptions/{subscription_id}",
            get(get_subscription),
        )
}

/// Refuses URLs that are not https (unless the development switch is on) or that resolve
/// to internal addresses.
pub async fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    ssrf::check_url(url, state.webhook_policy(), state.lookup.as_ref())
        .await
        .map(|_| ())
        .map_err(|refusal| ApiError::invalid_field("url", refusal.to_string()))
}

#[utoipa::path(post, path = "/api/v1/webhooks/subscriptions", tag = "webhooks", security(("bearer" = [])),
    request_body = NewSubscription,
    responses((status = 201, body = SubscriptionWithSecret), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_subscription(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewSubscription>,
) -> ApiResult<(StatusCode, Json<SubscriptionWithSecret>)> {
    user.require(Permission::ManageWebhooks)?;
    body.validate()?;
    check_target(&state, &body.url).await?;
    let secret = signing::generate_secret();
    let mut tx = state.db.begin().await?;
    let subscription = subscriptions::insert(&mut tx, &body, &secret, &state.secrets).await?;
    tx.commit().await?;
    tracing::info!(subscription = %subscription.id, "webhook subscription created");
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionWithSecret {
            subscription,
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions", tag = "webhooks", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Subscription>), (status = 403, body = ErrorBody)))]
async fn list_subscriptions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Subscription>>> {
    user.require(Permission::ManageWebhooks)?;
    let (limit, offset) = page.resolve()?;
    let (items, total) = subscriptions::list(&state.db, limit, offset).await?;
    Ok(Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions/{subscription_id}", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)))]
async fn get_subscription(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> ApiResult<Json<Subscription>> {
    user.require(Permission::ManageWebhooks)?;
    let id = parse_id(&raw, "subscription", SubscriptionId::parse)?;
    let found = subscriptions::get(&state.db, &id).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("subscription", &id))
}
