//! HTTP handlers for camp registrations: `POST /patients/{book_no}/register` and the
//! two lists, per patient and per camp.

use super::model::{BookNo, Registration, RegistrationInput};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{CampId, PatientId};
use crate::outbound::{self, Event, EventType};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(list_for_patient))
        .routes(routes!(list_for_camp))
}

/// Registers the patient at a camp (once per camp); emits `patient.camp_registered`.
#[utoipa::path(post, path = "/api/v1/patients/{book_no}/register", tag = "patients", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)")),
    request_body = RegistrationInput,
    responses((status = 201, body = Registration), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn register(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::RegisterPatients>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<RegistrationInput>,
) -> ApiResult<Response> {
    let book_no = BookNo::from_path(&raw)?;
    let mut tx = state.db.begin().await?;
    // The path names the patient first (404), then the body's camp (422).
    let patient = repo::get_by_book_no_tx(&mut tx, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    let camp = match CampId::parse(&body.camp_id) {
        Some(camp) if crate::camps::repo::exists(&mut tx, &camp).await? => camp,
        _ => {
            return Err(ApiError::invalid_reference(
                "camp_id",
                "camp",
                &body.camp_id,
            ));
        }
    };
    let registration = match repo::register(&mut tx, &patient.id, &camp, &user.id).await {
        Ok(registration) => registration,
        Err(err) => {
            drop(tx);
            return Err(already_registered(&state, err, &patient.id, &book_no, &camp).await);
        }
    };
    outbound::emit(
        &mut tx,
        Event::new(EventType::PatientCampRegistered, &registration),
    )
    .await?;
    let shown = Shown::wrote(&user, &book_no);
    key.commit(tx, (StatusCode::CREATED, shown, Json(registration)))
        .await
}

/// The camps a patient was registered at, most recent first.
#[utoipa::path(get, path = "/api/v1/patients/{book_no}/registrations", tag = "patients", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)"), PageParams),
    responses((status = 200, body = Page<Registration>), (status = 404, body = ErrorBody)))]
async fn list_for_patient(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<(Shown, Json<Page<Registration>>)> {
    let (limit, offset) = page.resolve()?;
    let book_no = BookNo::from_path(&raw)?;
    let patient = super::repo::get_by_book_no(&state.db, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    let (items, total) =
        repo::registrations_of_patient(&state.db, &patient.id, limit, offset).await?;
    let shown = Shown::read(&user, &book_no);
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

/// The patients registered at a camp, in arrival order.
#[utoipa::path(get, path = "/api/v1/medical-camps/{camp_id}/registrations", tag = "patients", security(("bearer" = [])),
    params(("camp_id" = String, Path), PageParams),
    responses((status = 200, body = Page<Registration>), (status = 404, body = ErrorBody)))]
async fn list_for_camp(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(camp_id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<(Shown, Json<Page<Registration>>)> {
    let (limit, offset) = page.resolve()?;
    let camp = parse_id(&camp_id, "camp", CampId::parse)?;
    if crate::camps::repo::get(&state.db, &camp).await?.is_none() {
        return Err(ApiError::not_found("camp", &camp));
    }
    let (items, total) = repo::registrations_at_camp(&state.db, &camp, limit, offset).await?;
    let shown = Shown::listed(&user, items.iter().map(|r| &r.book_no));
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

/// A unique violation on registering can only be a second registration at one camp: 409
/// with the id of the first (looked up once the failed transaction is gone).
async fn already_registered(
    state: &AppState,
    err: sqlx::Error,
    patient: &PatientId,
    book_no: &BookNo,
    camp: &CampId,
) -> ApiError {
    let err = ApiError::from(err);
    if err.code != "already_exists" {
        return err;
    }
    let conflict = ApiError::conflict(
        "already_registered",
        format!("patient '{book_no}' is already registered at camp '{camp}'"),
    )
    .with_details(json!({ "book_no": book_no, "camp_id": camp }));
    match repo::registration_id(&state.db, patient, camp).await {
        Ok(Some(id)) => conflict.with_existing(id),
        _ => conflict,
    }
}
