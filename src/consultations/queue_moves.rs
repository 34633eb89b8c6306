//! `PUT /queue/status-update`: moving a patient through the queue moves their
//! consultation too, so this handler lives with consultations (which sit above the
//! queue: the queue room never reaches up here). The queue's status machine itself
//! (`QueueStatus::allowed_next`) stays in `crate::queue`.

use super::model::ConsultationStatus;
use crate::access::Shown;
use crate::auth::{Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::QueueEntryId;
use crate::outbound::{self, Event, EventType};
use crate::queue::model::{QueueStatusChanged, StatusUpdate};
use crate::queue::{self, QueueEntry, QueueStatus};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

/// Moves an entry along an allowed transition (see `QueueStatus::allowed_next`); the
/// consultation's status follows. An unknown `queue_entry_id` is 404: it names the
/// resource being changed, not a reference.
#[utoipa::path(put, path = "/api/v1/queue/status-update", tag = "queue", security(("bearer" = [])), request_body = StatusUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = QueueEntry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update_status(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::UpdateQueue>,
    ApiJson(body): ApiJson<StatusUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&body.queue_entry_id, "queue entry", QueueEntryId::parse)?;
    let to = body.status;
    let mut tx = state.db.begin().await?;
    let before = queue::repo::lock(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("queue entry", &id))?;
    let from = before.status;
    if !from.allowed_next().contains(&to)
        || !queue::repo::set_status(&mut tx, &id, from, to).await?
    {
        return Err(invalid_transition(from, to));
    }
    super::repo::set_status(
        &mut tx,
        &before.consultation_id,
        ConsultationStatus::following(to),
    )
    .await?;
    let entry = queue::repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("queue entry", &id))?;
    let changed = QueueStatusChanged {
        entry: &entry,
        previous_status: from,
    };
    let context = queue::repo::encounter_context(&mut tx, &entry.consultation_id).await?;
    let event = Event::new(EventType::QueueStatusChanged, &changed).with_context(context);
    outbound::emit(&mut tx, event).await?;
    if to == QueueStatus::Completed {
        let consultation = super::repo::get_in(&mut tx, &before.consultation_id).await?;
        let consultation = consultation
            .ok_or_else(|| ApiError::not_found("consultation", &before.consultation_id))?;
        outbound::emit(
            &mut tx,
            Event::new(EventType::ConsultationCompleted, &consultation),
        )
        .await?;
    }
    let shown = Shown::wrote(&user, &entry.book_no);
    key.commit(tx, (shown, Json(entry))).await
}

fn invalid_transition(from: QueueStatus, to: QueueStatus) -> ApiError {
    let allowed = from.allowed_next();
    ApiError::conflict(
        "invalid_transition",
        format!("a queue entry cannot move from {from} to {to}"),
    )
    .with_details(json!({ "from": from, "to": to, "allowed": allowed }))
}
