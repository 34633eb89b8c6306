//! HTTP handlers for `/doctors`. Doctors emit no events.

use super::model::{Doctor, DoctorFilter, DoctorInput};
use super::repo;
use crate::auth::{CurrentUser, Require, can};
use crate::db::Tx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{DoctorId, UserId};
use crate::state::AppState;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_doctors, create_doctor))
        .routes(routes!(get_doctor, update_doctor, delete_doctor))
}

#[utoipa::path(get, path = "/api/v1/doctors", tag = "doctors", security(("bearer" = [])), params(DoctorFilter),
    responses((status = 200, body = Page<Doctor>), (status = 401, body = ErrorBody)))]
async fn list_doctors(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(filter): ApiQuery<DoctorFilter>,
) -> ApiResult<Json<Page<Doctor>>> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let specialty = filter
        .specialty
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (items, total) = repo::list(&state.db, specialty, limit, offset).await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

#[utoipa::path(post, path = "/api/v1/doctors", tag = "doctors", security(("bearer" = [])), request_body = DoctorInput,
    responses((status = 201, body = Doctor), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_doctor(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageDoctors>,
    ApiJson(body): ApiJson<DoctorInput>,
) -> ApiResult<Response> {
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let link = linked_user(&mut tx, &body).await?;
    let doctor = match repo::insert(&mut tx, &body, link.as_ref()).await {
        Ok(doctor) => doctor,
        Err(err) => {
            drop(tx);
            return Err(already_linked(&state, err, link.as_ref()).await);
        }
    };
    key.commit(tx, (StatusCode::CREATED, Json(doctor))).await
}

#[utoipa::path(get, path = "/api/v1/doctors/{doctor_id}", tag = "doctors", security(("bearer" = [])),
    params(("doctor_id" = String, Path)),
    responses((status = 200, body = Doctor), (status = 404, body = ErrorBody)))]
async fn get_doctor(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
) -> ApiResult<Json<Doctor>> {
    let id = parse_id(&raw, "doctor", DoctorId::parse)?;
    let doctor = repo::get(&state.db, &id).await?;
    doctor
        .map(Json)
        .ok_or_else(|| ApiError::not_found("doctor", &id))
}

/// Replaces the doctor's name, specialty and user link (an absent `user_id` unlinks).
#[utoipa::path(put, path = "/api/v1/doctors/{doctor_id}", tag = "doctors", security(("bearer" = [])),
    params(("doctor_id" = String, Path)), request_body = DoctorInput,
    responses((status = 200, body = Doctor), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_doctor(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageDoctors>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<DoctorInput>,
) -> ApiResult<Response> {
    let id = parse_id(&raw, "doctor", DoctorId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    if repo::get_tx(&mut tx, &id).await?.is_none() {
        return Err(ApiError::not_found("doctor", &id));
    }
    let link = linked_user(&mut tx, &body).await?;
    let doctor = match repo::update(&mut tx, &id, &body, link.as_ref()).await {
        Ok(doctor) => doctor.ok_or_else(|| ApiError::not_found("doctor", &id))?,
        Err(err) => {
            drop(tx);
            return Err(already_linked(&state, err, link.as_ref()).await);
        }
    };
    key.commit(tx, Json(doctor)).await
}

/// Deletes a doctor who has no consultations; one with consultations answers 409.
#[utoipa::path(delete, path = "/api/v1/doctors/{doctor_id}", tag = "doctors", security(("bearer" = [])),
    params(("doctor_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_doctor(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageDoctors>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&raw, "doctor", DoctorId::parse)?;
    let mut tx = state.db.begin().await?;
    repo::delete(&mut tx, &id)
        .await
        .map_err(doctor_in_use)?
        .ok_or_else(|| ApiError::not_found("doctor", &id))?;
    key.commit(tx, StatusCode::NO_CONTENT).await
}

/// The user the body links, which must exist (422 `invalid_reference` otherwise).
async fn linked_user(tx: &mut Tx, body: &DoctorInput) -> ApiResult<Option<UserId>> {
    let Some(raw) = body.user_id.as_deref() else {
        return Ok(None);
    };
    match UserId::parse(raw) {
        Some(user) if repo::user_exists(tx, &user).await? => Ok(Some(user)),
        _ => Err(ApiError::invalid_reference("user_id", "user", raw)),
    }
}

/// The only unique column written is `user_id`: a violation means another doctor has it
/// (409 with that doctor's id, looked up once the failed transaction is gone).
async fn already_linked(state: &AppState, err: sqlx::Error, user: Option<&UserId>) -> ApiError {
    let err = ApiError::from(err);
    let Some(user) = user.filter(|_| err.code == "already_exists") else {
        return err;
    };
    let conflict = ApiError::conflict(
        "user_already_linked",
        format!("user '{user}' is already linked to another doctor"),
    )
    .with_details(json!({ "field": "user_id", "value": user }));
    match repo::linked_to(&state.db, user).await {
        Ok(Some(doctor)) => conflict.with_existing(doctor),
        _ => conflict,
    }
}

fn doctor_in_use(err: sqlx::Error) -> ApiError {
    let err = ApiError::from(err);
    if err.code == "invalid_reference" {
        ApiError::conflict(
            "doctor_in_use",
            "the doctor has consultations or queue entries and cannot be deleted",
        )
    } else {
        err
    }
}
