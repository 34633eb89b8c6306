//! HTTP handlers for `/medical-camps`.

use super::model::{AttendanceUpdate, Camp, CampFilter, CampInput, MAX_ATTENDED};
use super::repo;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::CampId;
use crate::outbound::{self, Event, EventType};
use crate::state::AppState;
use crate::validation::{FieldErrors, Validate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_camps, create_camp))
        .routes(routes!(get_camp, update_camp, delete_camp))
        .routes(routes!(update_attendance))
}

#[utoipa::path(get, path = "/api/v1/medical-camps", tag = "camps", security(("bearer" = [])), params(CampFilter),
    responses((status = 200, body = Page<Camp>), (status = 401, body = ErrorBody)))]
async fn list_camps(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(filter): ApiQuery<CampFilter>,
) -> ApiResult<Json<Page<Camp>>> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    if let Some(date) = &filter.on_date {
        let mut errors = FieldErrors::new();
        errors.date("on_date", date);
        errors.finish()?;
    }
    let (items, total) = repo::list(
        &state.db,
        filter.on_date.as_deref(),
        filter.location.as_deref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

#[utoipa::path(post, path = "/api/v1/medical-camps", tag = "camps", security(("bearer" = [])), request_body = CampInput,
    responses((status = 201, body = Camp), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_camp(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageCamps>,
    ApiJson(body): ApiJson<CampInput>,
) -> ApiResult<Response> {
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let camp = repo::insert(&mut tx, &body).await?;
    outbound::emit(&mut tx, Event::new(EventType::CampCreated, &camp)).await?;
    key.commit(tx, (StatusCode::CREATED, Json(camp))).await
}

#[utoipa::path(get, path = "/api/v1/medical-camps/{camp_id}", tag = "camps", security(("bearer" = [])),
    responses((status = 200, body = Camp), (status = 404, body = ErrorBody)))]
async fn get_camp(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(camp_id): Path<String>,
) -> ApiResult<Json<Camp>> {
    let id = parse_id(&camp_id, "camp", CampId::parse)?;
    let camp = repo::get(&state.db, &id).await?;
    camp.map(Json)
        .ok_or_else(|| ApiError::not_found("camp", &id))
}

#[utoipa::path(put, path = "/api/v1/medical-camps/{camp_id}", tag = "camps", security(("bearer" = [])), request_body = CampInput,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = Camp), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_camp(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageCamps>,
    Path(camp_id): Path<String>,
    ApiJson(body): ApiJson<CampInput>,
) -> ApiResult<Response> {
    let id = parse_id(&camp_id, "camp", CampId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::get_for_update(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("camp", &id))?;
    let camp = repo::update(&mut tx, &id, &body)
        .await?
        .ok_or_else(|| ApiError::not_found("camp", &id))?;
    outbound::emit(
        &mut tx,
        Event::changed(EventType::CampUpdated, &before, &camp),
    )
    .await?;
    key.commit(tx, Json(camp)).await
}

/// Deletes a camp nobody is registered at; a camp in use answers 409.
#[utoipa::path(delete, path = "/api/v1/medical-camps/{camp_id}", tag = "camps", security(("bearer" = [])),
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_camp(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageCamps>,
    Path(camp_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&camp_id, "camp", CampId::parse)?;
    let mut tx = state.db.begin().await?;
    let camp = repo::delete(&mut tx, &id)
        .await
        .map_err(camp_in_use)?
        .ok_or_else(|| ApiError::not_found("camp", &id))?;
    outbound::emit(&mut tx, Event::new(EventType::CampDeleted, &camp)).await?;
    key.commit(tx, StatusCode::NO_CONTENT).await
}

#[utoipa::path(post, path = "/api/v1/medical-camps/{camp_id}/update-attended-count", tag = "camps", security(("bearer" = [])),
    request_body = AttendanceUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = Camp), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_attendance(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::UpdateAttendance>,
    Path(camp_id): Path<String>,
    ApiJson(body): ApiJson<AttendanceUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&camp_id, "camp", CampId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::get_for_update(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("camp", &id))?;
    let count = body
        .attended_count
        .unwrap_or(before.attended_count + body.delta.unwrap_or(0));
    if count < 0 {
        return Err(ApiError::invalid_field(
            "delta",
            "would make attended_count negative",
        ));
    }
    if count > MAX_ATTENDED {
        return Err(ApiError::invalid_field(
            "delta",
            format!("would make attended_count {count}, above its maximum of {MAX_ATTENDED}"),
        ));
    }
    let camp = repo::set_attendance(&mut tx, &id, count)
        .await?
        .ok_or_else(|| ApiError::not_found("camp", &id))?;
    outbound::emit(
        &mut tx,
        Event::changed(EventType::CampAttendanceUpdated, &before, &camp),
    )
    .await?;
    key.commit(tx, Json(camp)).await
}

fn camp_in_use(err: sqlx::Error) -> ApiError {
    let err = ApiError::from(err);
    if err.code == "invalid_reference" {
        ApiError::conflict(
            "camp_in_use",
            "the camp has registrations, vitals or consultations and cannot be deleted",
        )
    } else {
        err
    }
}
