//! HTTP handlers for `/doctors/assign-doctor` and `/consultations`.

use super::model::{AssignDoctor, Consultation, ConsultationFilter, ConsultationUpdate, closed};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::db::Tx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{CampId, ConsultationId, DoctorId, PatientId};
use crate::outbound::{self, Event, EventType};
use crate::queue::model::{Priority, filter_id};
use crate::state::AppState;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(assign_doctor))
        .routes(routes!(super::queue_moves::update_status))
        .routes(routes!(list_consultations))
        .routes(routes!(get_consultation, update_consultation))
}

/// Opens a consultation for a patient registered at the camp and puts them in the
/// doctor's queue (status `waiting`).
#[utoipa::path(post, path = "/api/v1/doctors/assign-doctor", tag = "consultations", security(("bearer" = [])), request_body = AssignDoctor,
    responses((status = 201, body = Consultation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn assign_doctor(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::AssignDoctor>,
    ApiJson(body): ApiJson<AssignDoctor>,
) -> ApiResult<Response> {
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let (patient, doctor, camp) = check_assignment(&mut tx, &body).await?;
    let id = repo::insert(&mut tx, &patient, &doctor, &camp, body.complaint.as_deref())
        .await
        .map_err(consultation_open)?;
    crate::queue::repo::insert(
        &mut tx,
        &id,
        &camp,
        &doctor,
        body.priority.unwrap_or(Priority::Normal),
    )
    .await?;
    let consultation = repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("consultation {id} vanished")))?;
    outbound::emit(
        &mut tx,
        Event::new(EventType::ConsultationCreated, &consultation),
    )
    .await?;
    let shown = Shown::wrote(&user, &consultation.book_no);
    key.commit(tx, (StatusCode::CREATED, shown, Json(consultation)))
        .await
}

/// The references of an assignment, checked in the order of the body's fields, then the
/// registration and the one-open-consultation-per-camp rule.
async fn check_assignment(
    tx: &mut Tx,
    body: &AssignDoctor,
) -> ApiResult<(PatientId, DoctorId, CampId)> {
    let patient = repo::patient_by_book_no(tx, &body.book_no)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_reference("book_no", "patient with book number", &body.book_no)
        })?;
    let doctor = match DoctorId::parse(&body.doctor_id) {
        Some(doctor) if repo::doctor_exists(tx, &doctor).await? => doctor,
        _ => {
            return Err(ApiError::invalid_reference(
                "doctor_id",
                "doctor",
                &body.doctor_id,
            ));
        }
    };
    let camp = match CampId::parse(&body.camp_id) {
        Some(camp) if crate::camps::repo::exists(tx, &camp).await? => camp,
        _ => {
            return Err(ApiError::invalid_reference(
                "camp_id",
                "camp",
                &body.camp_id,
            ));
        }
    };
    if !repo::lock_registration(tx, &patient, &camp).await? {
        return Err(ApiError::unprocessable(
            "not_registered_at_camp",
            format!(
                "patient '{}' is not registered at camp '{camp}'",
                body.book_no
            ),
        )
        .with_details(json!({ "book_no": body.book_no, "camp_id": camp })));
    }
    if let Some(open) = repo::open_at_camp(tx, &patient, &camp).await? {
        return Err(open_error()
            .with_details(json!({ "consultation_id": open }))
            .with_existing(open));
    }
    Ok((patient, doctor, camp))
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/consultations", tag = "consultations", security(("bearer" = [])), params(ConsultationFilter),
    responses((status = 200, body = Page<Consultation>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_consultations(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(filter): ApiQuery<ConsultationFilter>,
) -> ApiResult<(Shown, Json<Page<Consultation>>)> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let doctor = filter_id(filter.doctor_id.as_deref(), "doctor_id", DoctorId::parse)?;
    let camp = filter_id(filter.camp_id.as_deref(), "camp_id", CampId::parse)?;
    let list_filter = repo::ListFilter {
        book_no: filter.book_no.as_deref(),
        doctor: doctor.as_ref(),
        camp: camp.as_ref(),
        status: filter.status,
    };
    let (items, total) = repo::list(&state.db, &list_filter, limit, offset).await?;
    let shown = Shown::listed(&user, items.iter().map(|c| &c.book_no));
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

#[utoipa::path(get, path = "/api/v1/consultations/{consultation_id}", tag = "consultations", security(("bearer" = [])),
    responses((status = 200, body = Consultation), (status = 404, body = ErrorBody)))]
async fn get_consultation(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(consultation_id): Path<String>,
) -> ApiResult<(Shown, Json<Consultation>)> {
    let id = parse_id(&consultation_id, "consultation", ConsultationId::parse)?;
    let consultation = repo::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("consultation", &id))?;
    Ok((
        Shown::read(&user, &consultation.book_no),
        Json(consultation),
    ))
}

/// Partial update of complaint, diagnosis and notes. An update that changes nothing
/// answers 200 with the consultation and emits no event.
#[utoipa::path(put, path = "/api/v1/consultations/{consultation_id}", tag = "consultations", security(("bearer" = [])), request_body = ConsultationUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = Consultation), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_consultation(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::Consult>,
    Path(consultation_id): Path<String>,
    ApiJson(body): ApiJson<ConsultationUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&consultation_id, "consultation", ConsultationId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::lock(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("consultation", &id))?;
    if before.status.is_closed() {
        return Err(closed(&id, before.status));
    }
    let complaint = body.complaint.as_deref().or(before.complaint.as_deref());
    let diagnosis = body.diagnosis.as_deref().or(before.diagnosis.as_deref());
    let notes = body.notes.as_deref().or(before.notes.as_deref());
    if (complaint, diagnosis, notes)
        == (
            before.complaint.as_deref(),
            before.diagnosis.as_deref(),
            before.notes.as_deref(),
        )
    {
        let shown = Shown::wrote(&user, &before.book_no);
        return Ok((shown, Json(before)).into_response());
    }
    repo::set_text(&mut tx, &id, complaint, diagnosis, notes).await?;
    let after = repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("consultation", &id))?;
    outbound::emit(
        &mut tx,
        Event::changed(EventType::ConsultationUpdated, &before, &after),
    )
    .await?;
    let shown = Shown::wrote(&user, &after.book_no);
    key.commit(tx, (shown, Json(after))).await
}

fn open_error() -> ApiError {
    ApiError::conflict(
        "consultation_open",
        "the patient already has an open consultation at this camp",
    )
}

/// The unique index `consultations_one_open` backs the check made under the lock.
fn consultation_open(err: sqlx::Error) -> ApiError {
    let err = ApiError::from(err);
    if err.code == "already_exists" {
        open_error()
    } else {
        err
    }
}
