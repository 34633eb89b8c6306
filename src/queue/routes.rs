//! HTTP handlers for `/queue`.

use super::model::{PriorityUpdate, QueueEntry, QueueFilter, QueuePriorityChanged, filter_id};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{CampId, DoctorId, QueueEntryId};
use crate::outbound::{self, Event, EventType};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queue))
        .routes(routes!(update_priority))
        .routes(routes!(get_entry))
}

/// The queue in calling order: emergency, then high, then normal; oldest first within each.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue", security(("bearer" = [])), params(QueueFilter),
    responses((status = 200, body = Page<QueueEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_queue(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(filter): ApiQuery<QueueFilter>,
) -> ApiResult<(Shown, Json<Page<QueueEntry>>)> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let camp = filter_id(filter.camp_id.as_deref(), "camp_id", CampId::parse)?;
    let doctor = filter_id(filter.doctor_id.as_deref(), "doctor_id", DoctorId::parse)?;
    let (items, total) = repo::list(
        &state.db,
        camp.as_ref(),
        doctor.as_ref(),
        filter.status,
        limit,
        offset,
    )
    .await?;
    let shown = Shown::listed(&user, items.iter().map(|e| &e.book_no));
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

#[utoipa::path(get, path = "/api/v1/queue/{queue_entry_id}", tag = "queue", security(("bearer" = [])),
    responses((status = 200, body = QueueEntry), (status = 404, body = ErrorBody)))]
async fn get_entry(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(queue_entry_id): Path<String>,
) -> ApiResult<(Shown, Json<QueueEntry>)> {
    let id = parse_id(&queue_entry_id, "queue entry", QueueEntryId::parse)?;
    let entry = repo::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("queue entry", &id))?;
    Ok((Shown::read(&user, &entry.book_no), Json(entry)))
}

/// Changes the priority of an entry that is still waiting or in consultation. Setting
/// the priority it already has answers 200 and emits nothing.
#[utoipa::path(put, path = "/api/v1/queue/priority", tag = "queue", security(("bearer" = [])), request_body = PriorityUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = QueueEntry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_priority(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::UpdateQueue>,
    ApiJson(body): ApiJson<PriorityUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&body.queue_entry_id, "queue entry", QueueEntryId::parse)?;
    let mut tx = state.db.begin().await?;
    let before = repo::lock(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("queue entry", &id))?;
    if before.status.is_closed() {
        return Err(ApiError::conflict(
            "queue_entry_closed",
            format!(
                "queue entry '{id}' is {} and can no longer change",
                before.status
            ),
        )
        .with_details(json!({ "queue_entry_id": id, "status": before.status })));
    }
    if before.priority == body.priority {
        let shown = Shown::wrote(&user, &before.book_no);
        return Ok((shown, Json(before)).into_response());
    }
    repo::set_priority(&mut tx, &id, body.priority).await?;
    let entry = repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("queue entry", &id))?;
    let changed = QueuePriorityChanged {
        entry: &entry,
        previous_priority: before.priority,
    };
    let context = repo::encounter_context(&mut tx, &entry.consultation_id).await?;
    let event = Event::new(EventType::QueuePriorityChanged, &changed).with_context(context);
    outbound::emit(&mut tx, event).await?;
    let shown = Shown::wrote(&user, &entry.book_no);
    key.commit(tx, (shown, Json(entry))).await
}
