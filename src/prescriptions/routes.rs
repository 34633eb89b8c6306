//! HTTP handlers for prescriptions: written under a consultation, dispensed by the pharmacy.

use super::model::{
    DispatchStatus, NewPrescription, Prescription, PrescriptionFilter, PrescriptionUpdate,
};
use super::repo;
use crate::access::Shown;
use crate::auth::{CurrentUser, Require, can};
use crate::consultations::model::{ConsultationStatus, closed};
use crate::db::Tx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::{ConsultationId, MedicineId, PrescriptionId};
use crate::outbound::{self, Event, EventType};
use crate::state::AppState;
use crate::validation::Validate;
use crate::{consultations, medicines};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_prescription))
        .routes(routes!(list_for_consultation))
        .routes(routes!(get_prescription, update_prescription))
        .routes(routes!(list_prescriptions))
}

/// Prescribes a medicine in a consultation that is not cancelled (a completed one may
/// still receive prescriptions written after the patient left the doctor).
#[utoipa::path(post, path = "/api/v1/consultations/{consultation_id}/prescription", tag = "prescriptions", security(("bearer" = [])),
    request_body = NewPrescription,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 201, body = Prescription), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_prescription(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::Prescribe>,
    Path(consultation_id): Path<String>,
    ApiJson(body): ApiJson<NewPrescription>,
) -> ApiResult<Response> {
    let consultation_id = parse_id(&consultation_id, "consultation", ConsultationId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let consultation = consultations::repo::lock(&mut tx, &consultation_id).await?;
    let consultation =
        consultation.ok_or_else(|| ApiError::not_found("consultation", &consultation_id))?;
    if consultation.status == ConsultationStatus::Cancelled {
        return Err(closed(&consultation_id, consultation.status));
    }
    let medicine = existing_medicine(&mut tx, "medicine_id", &body.medicine_id).await?;
    let id = repo::insert(&mut tx, &consultation_id, &medicine, &body).await?;
    let prescription = repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("prescription", &id))?;
    let event = Event::new(EventType::PrescriptionAdded, &prescription)
        .with_context(fhir_context(&mut tx, &prescription).await?);
    outbound::emit(&mut tx, event).await?;
    let shown = Shown::wrote(&user, &prescription.book_no);
    key.commit(tx, (StatusCode::CREATED, shown, Json(prescription)))
        .await
}

#[utoipa::path(get, path = "/api/v1/consultations/{consultation_id}/prescriptions", tag = "prescriptions", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Prescription>), (status = 404, body = ErrorBody)))]
async fn list_for_consultation(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(consultation_id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<(Shown, Json<Page<Prescription>>)> {
    let (limit, offset) = page.resolve()?;
    let id = parse_id(&consultation_id, "consultation", ConsultationId::parse)?;
    let consultation = consultations::repo::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("consultation", &id))?;
    let (items, total) = repo::list_for_consultation(&state.db, &id, limit, offset).await?;
    let shown = Shown::read(&user, &consultation.book_no);
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

#[utoipa::path(get, path = "/api/v1/consultations/prescriptions/{prescription_id}", tag = "prescriptions", security(("bearer" = [])),
    responses((status = 200, body = Prescription), (status = 404, body = ErrorBody)))]
async fn get_prescription(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(prescription_id): Path<String>,
) -> ApiResult<(Shown, Json<Prescription>)> {
    let id = parse_id(&prescription_id, "prescription", PrescriptionId::parse)?;
    let prescription = repo::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("prescription", &id))?;
    Ok((
        Shown::read(&user, &prescription.book_no),
        Json(prescription),
    ))
}

/// All prescriptions, oldest first; `?dispatch_status=pending` is the pharmacy's worklist.
#[utoipa::path(get, path = "/api/v1/prescriptions", tag = "prescriptions", security(("bearer" = [])), params(PrescriptionFilter),
    responses((status = 200, body = Page<Prescription>), (status = 400, body = ErrorBody)))]
async fn list_prescriptions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(filter): ApiQuery<PrescriptionFilter>,
) -> ApiResult<(Shown, Json<Page<Prescription>>)> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let (items, total) = repo::list(
        &state.db,
        filter.dispatch_status,
        filter.book_no.as_deref(),
        limit,
        offset,
    )
    .await?;
    let shown = Shown::listed(&user, items.iter().map(|p| &p.book_no));
    Ok((shown, Json(Page::new(items, total, limit, offset))))
}

/// The pharmacy's update. `given` is final and takes `quantity` units from the stock of
/// the medicine actually given (the replacement if there is one); an update that changes
/// nothing answers 200 and emits nothing. Otherwise one event, by the state after the
/// write: `prescription.replaced` if this update changed the replacement, else
/// `prescription.dispensed` (given) or `prescription.out_of_stock`; none back to pending.
#[utoipa::path(put, path = "/api/v1/consultations/prescriptions/{prescription_id}", tag = "prescriptions", security(("bearer" = [])),
    request_body = PrescriptionUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = Prescription), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_prescription(
    key: IdempotencyKey,
    State(state): State<AppState>,
    user: Require<can::Dispense>,
    Path(prescription_id): Path<String>,
    ApiJson(body): ApiJson<PrescriptionUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&prescription_id, "prescription", PrescriptionId::parse)?;
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let before = repo::lock(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("prescription", &id))?;
    if before.dispatch_status == DispatchStatus::Given {
        return Err(already_dispensed(&id));
    }
    let status = body.dispatch_status.unwrap_or(before.dispatch_status);
    let replaced_by =
        replacement(&mut tx, &before, body.replaced_by_medicine_id.as_deref()).await?;
    let replaced = replaced_by != before.replaced_by_medicine_id;
    if status == before.dispatch_status && !replaced {
        let shown = Shown::wrote(&user, &before.book_no);
        return Ok((shown, Json(before)).into_response());
    }
    if !repo::update(&mut tx, &id, status, replaced_by.as_ref()).await? {
        return Err(already_dispensed(&id));
    }
    if status == DispatchStatus::Given {
        take_stock(
            &mut tx,
            replaced_by.as_ref().unwrap_or(&before.medicine_id),
            before.quantity,
        )
        .await?;
    }
    let after = repo::get_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("prescription", &id))?;
    if let Some(event) = pharmacy_event(replaced, status) {
        let event = Event::new(event, &after).with_context(fhir_context(&mut tx, &after).await?);
        outbound::emit(&mut tx, event).await?;
    }
    let shown = Shown::wrote(&user, &after.book_no);
    key.commit(tx, (shown, Json(after))).await
}

/// The medicine a body field names, or 422 `invalid_reference` naming the field.
async fn existing_medicine(tx: &mut Tx, field: &str, raw: &str) -> ApiResult<MedicineId> {
    match MedicineId::parse(raw) {
        Some(id) if medicines::repo::exists(tx, &id).await? => Ok(id),
        _ => Err(ApiError::invalid_reference(field, "medicine", raw)),
    }
}

/// The replacement after the update: the one the body names (an existing medicine other
/// than the one prescribed), else the one already recorded.
async fn replacement(
    tx: &mut Tx,
    before: &Prescription,
    raw: Option<&str>,
) -> ApiResult<Option<MedicineId>> {
    let Some(raw) = raw else {
        return Ok(before.replaced_by_medicine_id.clone());
    };
    let id = existing_medicine(tx, "replaced_by_medicine_id", raw).await?;
    if id == before.medicine_id {
        return Err(ApiError::invalid_field(
            "replaced_by_medicine_id",
            "must differ from the prescribed medicine",
        ));
    }
    Ok(Some(id))
}

/// The one event of a pharmacy update, by the state after the write: a changed
/// replacement wins over the dispatch status; back to pending says nothing.
fn pharmacy_event(replaced: bool, status: DispatchStatus) -> Option<EventType> {
    match status {
        _ if replaced => Some(EventType::PrescriptionReplaced),
        DispatchStatus::Given => Some(EventType::PrescriptionDispensed),
        DispatchStatus::OutOfStock => Some(EventType::PrescriptionOutOfStock),
        DispatchStatus::Pending => None,
    }
}

/// What a prescription event's FHIR form needs beyond the prescription (see
/// `Event::context`): the consultation's patient and doctor, and the medicine (and its
/// replacement) by name, strength and form, as this transaction sees them.
async fn fhir_context(tx: &mut Tx, prescription: &Prescription) -> ApiResult<serde_json::Value> {
    let consultation = consultations::repo::get_in(tx, &prescription.consultation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("consultation", &prescription.consultation_id))?;
    let medicine = medicine_named(tx, &prescription.medicine_id).await?;
    let replaced_by = match &prescription.replaced_by_medicine_id {
        Some(id) => Some(medicine_named(tx, id).await?),
        None => None,
    };
    Ok(json!({
        "patient_id": consultation.patient_id,
        "doctor_id": consultation.doctor_id,
        "medicine": medicine,
        "replaced_by_medicine": replaced_by,
    }))
}

/// A medicine's id, name, strength and form (a prescription's foreign key keeps it).
async fn medicine_named(tx: &mut Tx, id: &MedicineId) -> ApiResult<serde_json::Value> {
    let medicine = medicines::repo::get_in(tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("medicine", id))?;
    Ok(json!({
        "id": medicine.id,
        "name": medicine.name,
        "strength": medicine.strength,
        "form": medicine.form,
    }))
}

/// Takes the dispensed units from stock, or 409 `insufficient_stock` (the transaction is
/// then dropped, so nothing of the update is written).
async fn take_stock(tx: &mut Tx, medicine: &MedicineId, quantity: i64) -> ApiResult<()> {
    if medicines::repo::take_stock(tx, medicine, quantity).await? {
        return Ok(());
    }
    let available = medicines::repo::stock(tx, medicine).await?.unwrap_or(0);
    Err(ApiError::conflict(
        "insufficient_stock",
        format!("medicine '{medicine}' has only {available} in stock; {quantity} requested"),
    )
    .with_details(
        json!({ "medicine_id": medicine, "available": available, "requested": quantity }),
    ))
}

fn already_dispensed(id: &PrescriptionId) -> ApiError {
    ApiError::conflict(
        "already_dispensed",
        format!("prescription '{id}' has been given and can no longer change"),
    )
    .with_details(json!({ "prescription_id": id }))
}
