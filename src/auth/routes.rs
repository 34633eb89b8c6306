//! `/auth/login`, `/auth/me` and admin user management at `/users`.

use super::model::{LoginRequest, NewUser, TokenResponse, User, UserUpdate};
use super::{CurrentUser, Require, can, repo};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::ids::UserId;
use crate::validation::Validate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{user_id}", get(get_user).patch(update_user))
}

/// Exchange a username and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let invalid = || ApiError::unauthorized("invalid username or password");
    let Some((id, role, hash)) = repo::credentials(&state.db, &body.username).await? else {
        // Spend the same time as a real check so usernames cannot be probed by timing.
        let _ = super::verify_password(body.password, DUMMY_HASH.to_string()).await;
        return Err(invalid());
    };
    if !super::verify_password(body.password, hash).await {
        return Err(invalid());
    }
    Ok(Json(TokenResponse {
        access_token: state.tokens.issue(&id, role)?,
        token_type: "bearer",
        expires_in: state.tokens.ttl().as_secs(),
    }))
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1fY7mXGmq3kqCX2Rk5Ka2OvtaKIn1Fu6H8Av0JK0Yb0";

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = crate::error::ErrorBody)))]
async fn me(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Json<User>> {
    let found = repo::get(&state.db, &user.id).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user", &user.id))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<User>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    _user: Require<can::ManageUsers>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let (limit, offset) = page.resolve()?;
    let (items, total) = repo::list(&state.db, limit, offset).await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, body = User), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    _user: Require<can::ManageUsers>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    body.validate()?;
    let hash = super::hash_password(body.password).await?;
    let mut tx = state.db.begin().await?;
    let created = repo::insert(&mut tx, &body.username, &hash, body.role)
        .await
        .map_err(|e| username_taken(e, &body.username))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = crate::error::ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    _user: Require<can::ManageUsers>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<User>> {
    let id = parse_id(&user_id, "user", UserId::parse)?;
    let found = repo::get(&state.db, &id).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user", &id))
}

/// Change a user's password, role or active flag.
#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])), request_body = UserUpdate,
    responses((status = 200, body = User), (status = 404, body = crate::error::ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    _user: Require<can::ManageUsers>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    let id = parse_id(&user_id, "user", UserId::parse)?;
    body.validate()?;
    let hash = match body.password {
        Some(password) => Some(super::hash_password(password).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let updated = repo::update(&mut tx, &id, hash.as_deref(), body.role, body.is_active).await?;
    tx.commit().await?;
    updated
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user", &id))
}

fn username_taken(err: sqlx::Error, username: &str) -> ApiError {
    let err = ApiError::from(err);
    if err.status == StatusCode::CONFLICT {
        ApiError::conflict(
            "username_taken",
            format!("the username '{username}' is already taken"),
        )
    } else {
        err
    }
}
