//! HTTP handlers for `/webhooks/inbound-sources` and `/webhooks/inbound-events` (admin
//! only, reads included: webhook administration is admin-only), and the receiver's route.

use super::model::{
    InboundEventFilter, InboundEventView, InboundSource, InboundSourceInput,
    InboundSourceWithSecret,
};
use super::repo::{self, SourceFields};
use super::{actions, receiver};
use crate::auth::{Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{InboundEventId, InboundSourceId};
use crate::jobs;
use crate::state::AppState;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    // The receiver has its own, larger body limit; a layer on a router covers only the
    // routes already in it, so it gets a router of its own.
    let receiver = OpenApiRouter::new()
        .routes(routes!(receiver::receive))
        .layer(DefaultBodyLimit::max(receiver::MAX_BODY_BYTES));
    OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, update_source, delete_source))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(retry_event))
        .merge(receiver)
}

/// A fresh secret, in the one format EHRS gives every secret (outbound ones too):
/// `whsec_` + standard base64 of 32 random bytes. Here the whole string is the HMAC key.
fn new_secret() -> String {
    crate::outbound::signing::generate_secret()
}

#[utoipa::path(get, path = "/api/v1/webhooks/inbound-sources", tag = "inbound webhooks", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<InboundSource>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_sources(
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<InboundSource>>> {
    let (limit, offset) = page.resolve()?;
    let (rows, total) = repo::list_sources(&state.db, limit, offset).await?;
    let items = rows.iter().map(repo::SourceRow::to_source).collect();
    Ok(Json(Page::new(items, total, limit, offset)))
}

/// Creates a source; the answer carries its secret, this once only.
#[utoipa::path(post, path = "/api/v1/webhooks/inbound-sources", tag = "inbound webhooks", security(("bearer" = [])),
    request_body = InboundSourceInput,
    responses((status = 201, body = InboundSourceWithSecret), (status = 409, description = "The server keeps no more sources (`source_limit`)", body = ErrorBody), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_source(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    ApiJson(body): ApiJson<InboundSourceInput>,
) -> ApiResult<Response> {
    body.validate()?;
    // Checked before the insert, like the subscriptions' cap: two creations at the same
    // moment may pass it together, which a bound against runaway clients can afford.
    let max = state.settings.inbound_max_sources;
    if repo::count_sources(&state.db).await? >= max {
        return Err(ApiError::limit_reached(
            "source_limit",
            "inbound sources",
            max,
            "EHRS_INBOUND_MAX_SOURCES",
        ));
    }
    let id = InboundSourceId::generate();
    let secret = new_secret();
    let mapping = body.action_mapping.clone().unwrap_or_default();
    let fields = SourceFields {
        name: body.name.trim(),
        allowed_event_types: &body.allowed_event_types,
        is_active: body.is_active.unwrap_or(true),
        action_mapping: &mapping,
    };
    let mut tx = state.db.begin().await?;
    let row = repo::insert_source(
        &mut tx,
        &id,
        &fields,
        &state.secrets.seal(&secret, id.as_str()),
    )
    .await?;
    key.commit(
        tx,
        (
            StatusCode::CREATED,
            Json(InboundSourceWithSecret {
                source: row.to_source(),
                secret,
            }),
        ),
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/webhooks/inbound-sources/{source_id}", tag = "inbound webhooks", security(("bearer" = [])),
    responses((status = 200, body = InboundSource), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_source(
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(source_id): Path<String>,
) -> ApiResult<Json<InboundSource>> {
    let id = parse_id(&source_id, "inbound source", InboundSourceId::parse)?;
    let row = repo::get_source(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("inbound source", &id))?;
    Ok(Json(row.to_source()))
}

/// Replaces name and allowed event types; `is_active` and `action_mapping` change only
/// when given.
#[utoipa::path(put, path = "/api/v1/webhooks/inbound-sources/{source_id}", tag = "inbound webhooks", security(("bearer" = [])),
    request_body = InboundSourceInput,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = InboundSource), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_source(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(source_id): Path<String>,
    ApiJson(body): ApiJson<InboundSourceInput>,
) -> ApiResult<Response> {
    let id = parse_id(&source_id, "inbound source", InboundSourceId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::get_source_for_update(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("inbound source", &id))?;
    let before = before.to_source();
    // Validated against the mapping that will result, so an old entry for an event type
    // that is no longer allowed is refused rather than silently kept.
    let mapping: BTreeMap<String, String> =
        body.action_mapping.clone().unwrap_or(before.action_mapping);
    let input = InboundSourceInput {
        action_mapping: Some(mapping.clone()),
        ..body
    };
    input.validate()?;
    let fields = SourceFields {
        name: input.name.trim(),
        allowed_event_types: &input.allowed_event_types,
        is_active: input.is_active.unwrap_or(before.is_active),
        action_mapping: &mapping,
    };
    let row = repo::update_source(&mut tx, &id, &fields)
        .await?
        .ok_or_else(|| ApiError::not_found("inbound source", &id))?;
    key.commit(tx, Json(row.to_source())).await
}

/// Deletes a source; the events it sent stay listed (with `source_name` null).
#[utoipa::path(delete, path = "/api/v1/webhooks/inbound-sources/{source_id}", tag = "inbound webhooks", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn delete_source(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(source_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&source_id, "inbound source", InboundSourceId::parse)?;
    let mut tx = state.db.begin().await?;
    if !repo::delete_source(&mut tx, &id).await? {
        return Err(ApiError::not_found("inbound source", &id));
    }
    key.commit(tx, StatusCode::NO_CONTENT).await
}

/// Replaces the secret at once (the old one stops verifying) and shows the new one once.
#[utoipa::path(post, path = "/api/v1/webhooks/inbound-sources/{source_id}/rotate-secret", tag = "inbound webhooks", security(("bearer" = [])),
    responses((status = 200, body = InboundSourceWithSecret), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate_secret(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(source_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&source_id, "inbound source", InboundSourceId::parse)?;
    let secret = new_secret();
    let mut tx = state.db.begin().await?;
    let row = repo::set_secret(&mut tx, &id, &state.secrets.seal(&secret, id.as_str()))
        .await?
        .ok_or_else(|| ApiError::not_found("inbound source", &id))?;
    key.commit(
        tx,
        Json(InboundSourceWithSecret {
            source: row.to_source(),
            secret,
        }),
    )
    .await
}

/// Received events with their job's state, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/inbound-events", tag = "inbound webhooks", security(("bearer" = [])), params(InboundEventFilter),
    responses((status = 200, body = Page<InboundEventView>), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    ApiQuery(filter): ApiQuery<InboundEventFilter>,
) -> ApiResult<Json<Page<InboundEventView>>> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let source = filter.checked()?;
    let (items, total) = repo::list_events(
        &state.db,
        source.as_ref(),
        filter.status.as_deref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

#[utoipa::path(get, path = "/api/v1/webhooks/inbound-events/{event_id}", tag = "inbound webhooks", security(("bearer" = [])),
    responses((status = 200, body = InboundEventView), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_event(
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(event_id): Path<String>,
) -> ApiResult<Json<InboundEventView>> {
    let id = parse_id(&event_id, "inbound event", InboundEventId::parse)?;
    let event = repo::get_event(&state.db, &id).await?;
    event
        .map(Json)
        .ok_or_else(|| ApiError::not_found("inbound event", &id))
}

/// Queues a failed event's job again, now, with a fresh allowance of attempts.
#[utoipa::path(post, path = "/api/v1/webhooks/inbound-events/{event_id}/retry", tag = "inbound webhooks", security(("bearer" = [])),
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 202, body = InboundEventView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_event(
    State(state): State<AppState>,
    _user: Require<can::ManageWebhooks>,
    Path(event_id): Path<String>,
) -> ApiResult<(StatusCode, Json<InboundEventView>)> {
    let id = parse_id(&event_id, "inbound event", InboundEventId::parse)?;
    let event = repo::get_event(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("inbound event", &id))?;
    let mut tx = state.db.begin().await?;
    if jobs::requeue_failed(&mut tx, &event.job_id, actions::MAX_ATTEMPTS)
        .await?
        .is_none()
    {
        return Err(ApiError::conflict(
            "job_not_failed",
            format!(
                "the event's job is {}; only a failed job can be retried",
                event.status
            ),
        ));
    }
    tx.commit().await?;
    jobs::notify_enqueued();
    let event = repo::get_event(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("inbound event", &id))?;
    Ok((StatusCode::ACCEPTED, Json(event)))
}
