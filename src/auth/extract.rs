//! The `CurrentUser` extractor: a valid bearer token or 401.

use super::{AuthState, Permission, Role};
use crate::error::ApiError;
use crate::ids::UserId;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The caller, proven by a bearer token. Handlers that write take it and call
/// [`CurrentUser::require`] first, so the rule is visible where the route is.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    /// As it was when the request came: the access audit records it.
    pub username: String,
    pub role: Role,
}

impl CurrentUser {
    /// 403 unless the caller's role holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.allows(self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            ))
            .with_details(serde_json::json!({
                "allowed_roles": permission.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>()
            })))
        }
    }
}

/// The client's address as the listener saw it (no proxy header is trusted). The
/// unspecified address when the server was started without connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(ClientAddr(address))
    }
}

/// The token of an `Authorization: Bearer <token>` header, trimmed; `None` for any other
/// form. Shared by every extractor that reads a bearer (users' JWTs, feed tokens).
pub fn bearer_of(header: &axum::http::HeaderValue) -> Option<&str> {
    let value = header.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AuthState::from_ref(state);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let token = bearer_of(header).ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
        })?;
        let claims = state
            .tokens
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        // A deactivated user, or one whose role changed, is held to the database's
        // word at once, not when the token expires; and a token of an older generation
        // (issued before a password change, role change, deactivation or logout) is dead.
        let session = super::repo::session(&state.db, &claims.sub)
            .await?
            .ok_or_else(|| {
                ApiError::unauthorized("this account is disabled or no longer exists")
            })?;
        if claims.generation != session.generation {
            return Err(ApiError::unauthorized(
                "this token has been revoked; sign in again",
            ));
        }
        Ok(CurrentUser {
            id: claims.sub,
            username: session.username,
            role: session.role,
        })
    }
}
