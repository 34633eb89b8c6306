//! The router's side of idempotency keys: read the key, give back a remembered answer or
//! refuse a reused key, else run the request holding a [`Claim`].

use super::{Claim, HEADER, InFlight, MAX_KEY_LEN, REPLAYED_HEADER, in_progress, repo};
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::time::Timestamp;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the layer needs: where answers are kept and which keys are running.
#[derive(Clone)]
pub struct Guard {
    pub db: Db,
    pub secrets: SecretBox,
    pub in_flight: InFlight,
}

/// The request's key: `None` without the header; 422 when it is empty, too long, or not
/// visible ASCII.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_KEY_LEN).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_string())),
        None => Err(ApiError::invalid_field(
            HEADER,
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID is a good key)"),
        )),
    }
}

impl Guard {
    /// Runs `request` of `user` under `key`, once.
    pub async fn run(&self, user: UserId, key: String, request: Request, next: Next) -> Response {
        let (mut parts, body) = request.into_parts();
        // The body is already in memory (the router's first layer read it).
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(err) => {
                return ApiError::bad_request("unreadable_body", err.to_string()).into_response();
            }
        };
        let Some(held) = self.in_flight.hold(&user, &key) else {
            return in_progress().into_response();
        };
        let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
        match repo::find(&self.db, &self.secrets, &user, &key).await {
            Ok(Some(first)) if first.fingerprint == fingerprint => return replay(first),
            Ok(Some(first)) => return reused(first.created_at).into_response(),
            Ok(None) => {}
            Err(err) => return ApiError::internal(err).into_response(),
        }
        let claim = Claim {
            user,
            key,
            fingerprint,
            secrets: self.secrets.clone(),
            recorded: Arc::new(AtomicBool::new(false)),
            _in_flight: Arc::new(held),
        };
        parts.extensions.insert(claim.clone());
        let answer = next.run(Request::from_parts(parts, Body::from(body))).await;
        if answer.status().is_success() && !claim.recorded.load(Ordering::Acquire) {
            return self.remember_after(&claim, answer).await;
        }
        answer
    }

    /// Records an answer whose write was not in a transaction of ours (the Svix backend's
    /// calls), in a transaction of its own.
    async fn remember_after(&self, claim: &Claim, answer: Response) -> Response {
        let (parts, body) = answer.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(err) => return ApiError::internal(err).into_response(),
        };
        let recorded = async {
            let mut tx = self.db.begin().await?;
            repo::remember(&mut tx, claim, parts.status.as_u16(), &body).await?;
            tx.commit().await
        };
        if let Err(err) = recorded.await {
            tracing::warn!(error = %err, "the answer to a request with an Idempotency-Key was not remembered");
        }
        Response::from_parts(parts, Body::from(body))
    }
}

/// SHA-256 of what makes two requests the same: method, path with query, body.
fn fingerprint(method: &axum::http::Method, uri: &axum::http::Uri, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update(b"\n");
    hash.update(uri.path_and_query().map_or("", |p| p.as_str()));
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// The first request's answer, given back.
fn replay(first: repo::Remembered) -> Response {
    let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK);
    let mut answer = (status, first.body.clone()).into_response();
    let headers = answer.headers_mut();
    if !first.body.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    answer
}

/// 422: the key belongs to another request.
fn reused(first_used_at: i64) -> ApiError {
    let when = Timestamp(first_used_at).to_rfc3339();
    ApiError::unprocessable(
        "idempotency_key_reused",
        format!(
            "this Idempotency-Key was used at {when} for a different request (another method, path or body); send a new key with a new request"
        ),
    )
    .with_details(serde_json::json!({ "first_used_at": when }))
}
