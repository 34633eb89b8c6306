//! HTTP handlers for vitals: `PUT/GET /patients/vitals/{book_no}` and `GET /vitals/{vitals_id}`.

use super::model::{Vitals, VitalsInput};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{CampId, VitalsId};
use crate::outbound::{self, Event, EventType};
use crate::patients::BookNo;
use crate::state::AppState;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_vitals, record_vitals))
        .routes(routes!(get_vitals))
}

/// Records a new set of vitals for the patient (each call adds one; earlier records are
/// kept) and emits `vitals.recorded`.
#[utoipa::path(put, path = "/api/v1/patients/vitals/{book_no}", tag = "vitals", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)")),
    request_body = VitalsInput,
    responses((status = 201, body = Vitals), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn record_vitals(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::RecordVitals>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<VitalsInput>,
) -> ApiResult<Response> {
    let book_no = BookNo::from_path(&raw)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let patient = crate::patients::repo::get_by_book_no_tx(&mut tx, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    let camp = match body.camp_id.as_deref() {
        None => None,
        Some(raw) => match CampId::parse(raw) {
            Some(camp) if crate::camps::repo::exists(&mut tx, &camp).await? => Some(camp),
            _ => return Err(ApiError::invalid_reference("camp_id", "camp", raw)),
        },
    };
    let vitals = repo::insert(&mut tx, &patient.id, camp.as_ref(), &body, &user.id).await?;
    outbound::emit(&mut tx, Event::new(EventType::VitalsRecorded, &vitals)).await?;
    let shown = Shown::wrote(&user, &book_no);
    key.commit(tx, (StatusCode::CREATED, shown, Json(vitals)))
        .await
}

/// A patient's vitals, newest first.
#[utoipa::path(get, path = "/api/v1/patients/vitals/{book_no}", tag = "vitals", security(("bearer" = [])),
    params(("book_no" = String, Path, description = "the patient's book number (a '/' percent-encoded)"), PageParams),
    responses((status = 200, body = Page<Vitals>), (status = 404, body = ErrorBody)))]
async fn list_vitals(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<(Shown, Json<Page<Vitals>>)> {
    let (limit, offset) = page.resolve()?;
    let book_no = BookNo::from_path(&raw)?;
    let patient = crate::patients::repo::get_by_book_no(&state.db, &book_no)
        .await?
        .ok_or_else(|| BookNo::not_found(&book_no))?;
    let (items, total) = repo::list_for_patient(&state.db, &patient.id, limit, offset).await?;
    let shown = Shown::read(&user, &book_no);
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

#[utoipa::path(get, path = "/api/v1/vitals/{vitals_id}", tag = "vitals", security(("bearer" = [])),
    params(("vitals_id" = String, Path)),
    responses((status = 200, body = Vitals), (status = 404, body = ErrorBody)))]
async fn get_vitals(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> ApiResult<(Shown, Json<Vitals>)> {
    let id = parse_id(&raw, "vitals", VitalsId::parse)?;
    let vitals = repo::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("vitals", &id))?;
    Ok((Shown::read(&user, &vitals.book_no), Json(vitals)))
}
