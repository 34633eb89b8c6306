//! HTTP handlers for `/patients` (the patient record itself).

use super::model::{BookNo, NewPatient, Patient, PatientFilter, PatientPatch};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams};
use crate::idempotency::IdempotencyKey;
use crate::ids::CampId;
use crate::outbound::{self, Event, EventType};
use crate::state::AppState;
use crate::validation::{FieldErrors, Validate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients, create_patient))
        .routes(routes!(get_patient, update_patient))
}

#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", security(("bearer" = [])), params(PatientFilter),
    responses((status = 200, body = Page<Patient>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_patients(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(filter): ApiQuery<PatientFilter>,
) -> ApiResult<(Shown, Json<Page<Patient>>)> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let camp = match filter.camp_id.as_deref() {
        Some(raw) => Some(CampId::parse(raw).ok_or_else(|| {
            ApiError::from(FieldErrors::single("camp_id", "must be a camp id (camp_…)"))
        })?),
        None => None,
    };
    let q = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (items, total) = repo::list(&state.db, q, camp.as_ref(), limit, offset).await?;
    let shown = Shown::listed(&user, items.iter().map(|p| &p.book_no));
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

/// Registers a new patient; emits `patient.registered`.
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", security(("bearer" = [])), request_body = NewPatient,
    responses((status = 201, body = Patient), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_patient(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::RegisterPatients>,
    ApiJson(body): ApiJson<NewPatient>,
) -> ApiResult<Response> {
    let book_no = body.check()?;
    let mut tx = state.db.begin().await?;
    let patient = match repo::insert(&mut tx, &book_no, &body).await {
        Ok(patient) => patient,
        Err(err) => {
            drop(tx);
            return Err(book_no_taken(&state, err, &book_no).await);
        }
    };
    outbound::emit(&mut tx, Event::new(EventType::PatientRegistered, &patient)).await?;
    let shown = Shown::wrote(&user, &patient.book_no);
    key.commit(tx, (StatusCode::CREATED, shown, Json(patient)))
        .await
}

#[utoipa::path(get, path = "/api/v1/patients/{book_no}", tag = "patients", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)")),
    responses((status = 200, body = Patient), (status = 404, body = ErrorBody)))]
async fn get_patient(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> ApiResult<(Shown, Json<Patient>)> {
    let book_no = BookNo::from_path(&raw)?;
    let patient = repo::get_by_book_no(&state.db, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    Ok((Shown::read(&user, &book_no), Json(patient)))
}

/// Changes any subset of a patient's details and emits `patient.updated` with
/// `changed_fields`. A patch that changes nothing (every value sent equals the stored
/// one, or an empty body) answers 200 with the patient, writes nothing and emits no
/// event: subscribers hear only of real changes.
#[utoipa::path(patch, path = "/api/v1/patients/{book_no}", tag = "patients", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)")),
    request_body = PatientPatch,
    responses((status = 200, body = Patient), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn update_patient(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::RegisterPatients>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<PatientPatch>,
) -> ApiResult<Response> {
    let book_no = BookNo::from_path(&raw)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::get_for_update(&mut tx, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    let wanted = body.apply(&before)?;
    let shown = Shown::wrote(&user, &book_no);
    if wanted == before {
        tx.rollback().await?;
        return Ok((shown, Json(before)).into_response());
    }
    let patient = repo::update(&mut tx, &wanted).await?;
    outbound::emit(
        &mut tx,
        Event::changed(EventType::PatientUpdated, &before, &patient),
    )
    .await?;
    key.commit(tx, (shown, Json(patient))).await
}

/// A unique violation on insert can only be the book number: 409 with the id of the
/// patient who has it (looked up once the failed transaction is gone).
async fn book_no_taken(state: &AppState, err: sqlx::Error, book_no: &BookNo) -> ApiError {
    let err = ApiError::from(err);
    if err.code != "already_exists" {
        return err;
    }
    let conflict = ApiError::conflict(
        "book_no_taken",
        format!("book number '{book_no}' belongs to another patient"),
    )
    .with_details(serde_json::json!({ "field": "book_no", "value": book_no }));
    match repo::get_by_book_no(&state.db, book_no).await {
        Ok(Some(patient)) => conflict.with_existing(patient.id),
        _ => conflict,
    }
}
