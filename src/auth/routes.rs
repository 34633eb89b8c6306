//! `/auth/login`, `/auth/logout`, `/auth/me` and admin user management at `/users`.

use super::model::{LoginRequest, NewUser, TokenResponse, User, UserUpdate};
use super::{AuthState, ClientAddr, CurrentUser, Require, can, repo};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiQuery, Page, PageParams, parse_id};
use crate::idempotency::IdempotencyKey;
use crate::ids::UserId;
use crate::validation::Validate;
use axum::Json;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The auth routes, for any application state that holds an [`AuthState`].
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

/// Exchange a username and password for a bearer token.
///
/// Usernames match without regard to case. Failed logins are throttled per username and
/// per client address: after a few failures each further one makes that username or
/// address wait (doubling), and a login during the wait gets 429 with `Retry-After`.
/// When every password hashing slot is taken and the short queue is full, 503 with
/// `Retry-After`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "Wrong username or password", body = crate::error::ErrorBody),
        (status = 429, description = "Too many failed logins for this username or from this address (`too_many_attempts`)", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Password checking is saturated (`unavailable`)", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
async fn login(
    State(state): State<AuthState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    super::login::login(&state, &body.username, body.password, address)
        .await
        .map(Json)
}

/// Sign out: every token of the signed-in user stops working (on every device).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Signed out; this user's tokens are revoked"),
        (status = 401, body = crate::error::ErrorBody)))]
async fn logout(
    key: IdempotencyKey,
    State(state): State<AuthState>,
    user: CurrentUser,
) -> ApiResult<Response> {
    let mut tx = state.db.begin().await?;
    repo::revoke_tokens(&mut tx, &user.id).await?;
    key.commit(tx, StatusCode::NO_CONTENT).await
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = crate::error::ErrorBody)))]
async fn me(State(state): State<AuthState>, user: CurrentUser) -> ApiResult<Json<User>> {
    let found = repo::get(&state.db, &user.id).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user", &user.id))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<User>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_users(
    State(state): State<AuthState>,
    _user: Require<can::ManageUsers>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let (limit, offset) = page.resolve()?;
    let (items, total) = repo::list(&state.db, limit, offset).await?;
    Ok(Json(Page::new(items, total, limit, offset)))
}

/// Create a user. Usernames are unique without regard to case (`ADMIN` beside `admin` is
/// 409 `username_taken`); the password must pass the policy (422 names the reason).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 201, body = User), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, description = "Password hashing is saturated", body = crate::error::ErrorBody)))]
async fn create_user(
    key: IdempotencyKey,
    State(state): State<AuthState>,
    _user: Require<can::ManageUsers>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<Response> {
    body.validate()?;
    let hash = state.passwords.hash(body.password).await?;
    let mut tx = state.db.begin().await?;
    let created = match repo::insert(&mut tx, &body.username, &hash, body.role).await {
        Ok(created) => created,
        Err(err) => {
            drop(tx);
            return Err(username_taken(&state.db, err, &body.username).await);
        }
    };
    key.commit(tx, (StatusCode::CREATED, Json(created))).await
}

#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = User), (status = 404, body = crate::error::ErrorBody)))]
async fn get_user(
    State(state): State<AuthState>,
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
///
/// A new password, a different role or a deactivation revokes every token the user holds
/// (they sign in again). The last active admin cannot be demoted or deactivated: 409
/// `last_admin`, and nothing changes.
#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])), request_body = UserUpdate,
    responses((status = 403, description = "The signed-in user's role may not do this", body = crate::error::ErrorBody), (status = 200, body = User), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The last active admin would be demoted or deactivated (`last_admin`)", body = crate::error::ErrorBody),
        (status = 422, description = "The password breaks the policy (the reason is in `details.fields`)", body = crate::error::ErrorBody),
        (status = 503, description = "Password hashing is saturated", body = crate::error::ErrorBody)))]
async fn update_user(
    key: IdempotencyKey,
    State(state): State<AuthState>,
    _user: Require<can::ManageUsers>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> ApiResult<Response> {
    let id = parse_id(&user_id, "user", UserId::parse)?;
    let not_found = || ApiError::not_found("user", &id);
    // The username never changes, so the policy can be checked (and the slow hash done)
    // before the write transaction.
    body.validate_for(&repo::get(&state.db, &id).await?.ok_or_else(not_found)?)?;
    let hash = match &body.password {
        Some(password) => Some(state.passwords.hash(password.clone()).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let (current, admins) = repo::lock(&mut tx, &id, body.may_remove_admin())
        .await?
        .ok_or_else(not_found)?;
    if body.removes_admin(&current) && admins <= 1 {
        return Err(last_admin(&id));
    }
    let revoke = body.revokes_tokens(&current);
    let updated = repo::update(
        &mut tx,
        &id,
        hash.as_deref(),
        body.role,
        body.is_active,
        revoke,
    )
    .await?
    .ok_or_else(not_found)?;
    let admin_password_changed =
        hash.is_some() && super::initial_password::is_admin(&updated.username);
    let answer = key.commit(tx, Json(updated)).await?;
    if admin_password_changed {
        super::initial_password::forget(&state.initial_password);
    }
    Ok(answer)
}

fn last_admin(id: &UserId) -> ApiError {
    ApiError::conflict(
        "last_admin",
        "this is the last active admin: it cannot be demoted or deactivated; make another user admin first",
    )
    .with_details(serde_json::json!({ "user_id": id.to_string() }))
}

/// 409 `username_taken` with the id of the user who has the name (in any case).
async fn username_taken(db: &crate::db::Db, err: sqlx::Error, username: &str) -> ApiError {
    let err = ApiError::from(err);
    if err.status != StatusCode::CONFLICT {
        return err;
    }
    let conflict = ApiError::conflict(
        "username_taken",
        format!("the username '{username}' is already taken"),
    );
    match repo::find_by_username(db, username).await {
        Ok(Some(user)) => conflict.with_existing(user.id),
        _ => conflict,
    }
}
