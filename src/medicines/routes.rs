//! HTTP handlers for `/medicines`.

use super::model::{Medicine, MedicineFilter, MedicineInput};
use super::repo;
use crate::auth::{CurrentUser, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::MedicineId;
use crate::state::AppState;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_medicines, create_medicine))
        .routes(routes!(get_medicine, update_medicine, delete_medicine))
}

#[utoipa::path(get, path = "/api/v1/medicines", tag = "medicines", security(("bearer" = [])), params(MedicineFilter),
    responses((status = 200, body = Page<Medicine>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_medicines(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(filter): ApiQuery<MedicineFilter>,
) -> ApiResult<Json<Page<Medicine>>> {
    let (limit, offset) = PageParams {
        limit: filter.limit,
        offset: filter.offset,
    }
    .resolve()?;
    let (items, total) = repo::list(
        &state.db,
        filter.q.as_deref(),
        filter.in_stock,
        limit,
        offset,
    )
    .await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

#[utoipa::path(post, path = "/api/v1/medicines", tag = "medicines", security(("bearer" = [])), request_body = MedicineInput,
    responses((status = 201, body = Medicine), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_medicine(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageMedicines>,
    ApiJson(body): ApiJson<MedicineInput>,
) -> ApiResult<Response> {
    let body = body.trimmed();
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let medicine = match repo::insert(&mut tx, &body).await {
        Ok(medicine) => medicine,
        Err(err) => {
            drop(tx);
            return Err(medicine_exists(&state, err, &body).await);
        }
    };
    key.commit(tx, (StatusCode::CREATED, Json(medicine))).await
}

#[utoipa::path(get, path = "/api/v1/medicines/{medicine_id}", tag = "medicines", security(("bearer" = [])),
    responses((status = 200, body = Medicine), (status = 404, body = ErrorBody)))]
async fn get_medicine(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(medicine_id): Path<String>,
) -> ApiResult<Json<Medicine>> {
    let id = parse_id(&medicine_id, "medicine", MedicineId::parse)?;
    let medicine = repo::get(&state.db, &id).await?;
    medicine
        .map(Json)
        .ok_or_else(|| ApiError::not_found("medicine", &id))
}

/// Replaces a medicine's details, stock included (a stock count sets the quantity).
#[utoipa::path(put, path = "/api/v1/medicines/{medicine_id}", tag = "medicines", security(("bearer" = [])), request_body = MedicineInput,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = Medicine), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_medicine(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageMedicines>,
    Path(medicine_id): Path<String>,
    ApiJson(body): ApiJson<MedicineInput>,
) -> ApiResult<Response> {
    let id = parse_id(&medicine_id, "medicine", MedicineId::parse)?;
    let body = body.trimmed();
    body.validate()?;
    let mut tx = state.db.begin().await?;
    let medicine = match repo::update(&mut tx, &id, &body).await {
        Ok(medicine) => medicine.ok_or_else(|| ApiError::not_found("medicine", &id))?,
        Err(err) => {
            drop(tx);
            return Err(medicine_exists(&state, err, &body).await);
        }
    };
    key.commit(tx, Json(medicine)).await
}

/// Deletes a medicine no prescription names (as prescribed or as replacement); one in use
/// answers 409 `medicine_in_use` (set its stock to 0 instead).
#[utoipa::path(delete, path = "/api/v1/medicines/{medicine_id}", tag = "medicines", security(("bearer" = [])),
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_medicine(
    key: IdempotencyKey,
    State(state): State<AppState>,
    _user: Require<can::ManageMedicines>,
    Path(medicine_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&medicine_id, "medicine", MedicineId::parse)?;
    let mut tx = state.db.begin().await?;
    repo::delete(&mut tx, &id)
        .await
        .map_err(medicine_in_use)?
        .ok_or_else(|| ApiError::not_found("medicine", &id))?;
    key.commit(tx, StatusCode::NO_CONTENT).await
}

/// The one unique key is (name, form, strength): 409 with the id of the medicine that has
/// them (looked up once the failed transaction is gone).
async fn medicine_exists(state: &AppState, err: sqlx::Error, body: &MedicineInput) -> ApiError {
    let err = ApiError::from(err);
    if err.code != "already_exists" {
        return err;
    }
    let conflict = ApiError::conflict(
        "medicine_exists",
        "a medicine with this name, form and strength already exists",
    );
    match repo::id_of(&state.db, body).await {
        Ok(Some(id)) => conflict.with_existing(id),
        _ => conflict,
    }
}

fn medicine_in_use(err: sqlx::Error) -> ApiError {
    let err = ApiError::from(err);
    if err.code == "invalid_reference" {
        ApiError::conflict(
            "medicine_in_use",
            "the medicine is named by prescriptions and cannot be deleted",
        )
    } else {
        err
    }
}
