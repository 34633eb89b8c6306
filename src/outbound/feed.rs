//! The catch-up feed (issue 24): `GET /api/v1/webhooks/subscriptions/{id}/events`. A
//! receiver that sees a gap in `sequence` reads what it missed, page by page, each
//! envelope byte for byte as it was POSTed, with the headers that verify it.
//!
//! Who may read: an admin (the usual JWT), or the partner itself with the subscription's
//! *feed token* (`Authorization: Bearer ehrs_feed_…`). The token is derived from the
//! signing secret (`signing::feed_token`), so it needs no storage, rotates with the
//! secret (the previous one's token works while its overlap lasts, like its signatures),
//! and a partner holding the secret can compute it. A token opens its own subscription
//! only; for any other id the answer is the 404 of an unknown subscription, so a token
//! tells nothing about the others.
//!
//! This module owns the route, its credential and its answer's shape; the backend reads
//! and renders the pages (`WebhookBackend::catch_up`), and refuses when it keeps no
//! sequence numbers (Svix).

use super::Webhooks;
use super::signing::FEED_TOKEN_PREFIX;
use crate::auth::{AuthState, Require, can};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{ApiQuery, parse_id};
use crate::ids::SubscriptionId;
use crate::validation::FieldErrors;
use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Items per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// Who reads the feed.
#[derive(Debug)]
pub enum FeedReader {
    /// A user with the admin role: any subscription.
    Admin,
    /// A bearer feed token, not yet checked: the backend checks it against the
    /// subscription's secrets.
    Partner(FeedToken),
}

/// A presented feed token. Its `Debug` shows no part of it, so it cannot reach a log.
pub struct FeedToken(String);

impl FeedToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FeedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedToken(..)")
    }
}

impl FeedReader {
    /// The answer for a subscription this reader may not see, or that does not exist:
    /// the same 404 either way for a partner, so a token probes nothing.
    pub fn not_found(&self, id: &SubscriptionId) -> ApiError {
        match self {
            FeedReader::Admin => ApiError::not_found("subscription", id),
            FeedReader::Partner(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no subscription with id '{id}' that this feed token opens"),
            )
            .with_details(json!({ "resource": "subscription", "id": id })),
        }
    }
}

/// A bearer that starts with `ehrs_feed_` is a feed token; any other must be an admin's
/// JWT (401 without one, 403 for another role), checked as on every admin route.
impl<S> FromRequestParts<S> for FeedReader
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(crate::auth::bearer_of);
        if let Some(token) = bearer.filter(|t| t.starts_with(FEED_TOKEN_PREFIX)) {
            return Ok(FeedReader::Partner(FeedToken(token.to_string())));
        }
        Require::<can::ManageWebhooks>::from_request_parts(parts, state).await?;
        Ok(FeedReader::Admin)
    }
}

/// `?after=&limit=` of the feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// The last sequence already held: the page starts after it (default 0, the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl FeedParams {
    /// `(after, limit)`, or a 422 naming the parameter out of range.
    pub fn resolve(&self) -> ApiResult<(i64, i64)> {
        let after = self.after.unwrap_or(0);
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let mut errors = FieldErrors::new();
        errors.check(after >= 0, "after", "must not be negative");
        errors.range("limit", limit, 1, MAX_LIMIT);
        errors.finish()?;
        Ok((after, limit))
    }
}

/// One page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    /// In sequence order, from the first sequence after `after`.
    pub items: Vec<FeedItem>,
    /// The `after` of the next request: the last item's sequence, or the request's own
    /// `after` when the page is empty.
    pub next_after: i64,
    /// Nothing after `next_after` exists yet. Later events get higher sequences, so
    /// asking again later with `after=next_after` is always safe.
    pub done: bool,
}

/// One delivery as it was POSTed, with what verifies it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedItem {
    pub sequence: i64,
    /// Where the delivery stands now: `pending`, `failed` (a retry is due), `delivered`
    /// or `exhausted`. A pending or failed one may still arrive by POST too: deduplicate
    /// by `webhook-id`.
    pub status: String,
    /// Standard Webhooks headers for `body`: pass them with `body` to any Standard
    /// Webhooks (or Svix) verifier, with the subscription's secret.
    pub headers: FeedHeaders,
    /// The envelope, byte for byte the body of the delivery (same `webhook_id`,
    /// `sequence`, `timestamp`, payload mode and `data`). Verify it before parsing it.
    pub body: String,
}

/// The signature headers of one item, signed now (the timestamp is this answer's time),
/// with the subscription's current secret and, during a rotation, the previous one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedHeaders {
    /// The delivery's `webhook-id`, the same as when it was POSTed (`msg_…`).
    #[serde(rename = "webhook-id")]
    pub webhook_id: String,
    /// Unix seconds, as a string (as the header carries it).
    #[serde(rename = "webhook-timestamp")]
    pub webhook_timestamp: String,
    /// `v1,<base64>`, space-separated when two secrets sign.
    #[serde(rename = "webhook-signature")]
    pub webhook_signature: String,
}

/// 410 `beyond_retention`: `sequence`, the next the reader asked for, lost its payload
/// to the retention period. Names where the reader can go on: the first later sequence
/// still held, or (none is) the last sequence so far.
pub fn beyond_retention(sequence: i64, oldest: Option<i64>, last_sequence: i64) -> ApiError {
    let message = match oldest {
        Some(oldest) => format!(
            "sequence {sequence} is beyond the retention period (EHRS_WEBHOOK_RETENTION_DAYS): its payload was \
             cleared; the oldest sequence still held after it is {oldest}: continue with after={}",
            oldest - 1
        ),
        None => format!(
            "sequence {sequence} is beyond the retention period (EHRS_WEBHOOK_RETENTION_DAYS): its payload was \
             cleared, and so was every later one up to the last sequence, {last_sequence}: continue with \
             after={last_sequence}"
        ),
    };
    ApiError::new(StatusCode::GONE, "beyond_retention", message).with_details(json!({
        "sequence": sequence,
        "oldest_sequence": oldest,
        "last_sequence": last_sequence,
    }))
}

/// 422 `embedded_engine_required`: the backend keeps no sequence numbers.
pub fn needs_embedded_engine() -> ApiError {
    ApiError::unprocessable(
        "embedded_engine_required",
        "the catch-up feed needs the embedded engine (WEBHOOK_BACKEND=embedded): Svix numbers no \
         sequences; use Svix's own message list, or GET /api/v1/webhooks/logs as an admin",
    )
}

/// Catch up by sequence: this subscription's deliveries after `after`, in sequence
/// order, each with the exact body that was POSTed and Standard Webhooks headers that
/// verify it with the subscription's secret.
///
/// Credential: `Authorization: Bearer <feed token>` (the `feed_token` shown at creation
/// and rotation, or computed from the secret, see README.md), or an admin's JWT. A feed
/// token of another subscription gets 404, as an unknown subscription does. A delivery
/// whose payload the retention period cleared gets 410 `beyond_retention`, naming in
/// `details.oldest_sequence` the first later sequence still held. A cursor past the last
/// sequence gets an empty page.
#[utoipa::path(get, path = "/api/v1/webhooks/subscriptions/{id}/events", tag = "webhooks",
    security(("bearer" = []), ("feed_token" = [])),
    params(("id" = String, Path, description = "subscription id"), FeedParams),
    responses((status = 200, body = FeedPage),
        (status = 403, description = "A user token whose role is not admin", body = ErrorBody),
        (status = 404, description = "No such subscription, or not the one this feed token opens", body = ErrorBody),
        (status = 410, description = "The next delivery's payload was cleared by the retention period (`beyond_retention`); `details.oldest_sequence` is the first later sequence still held", body = ErrorBody),
        (status = 422, description = "`after` or `limit` out of range, or the backend keeps no sequences (`embedded_engine_required`, under Svix)", body = ErrorBody)))]
pub(super) async fn catch_up(
    State(state): State<Webhooks>,
    reader: FeedReader,
    Path(raw): Path<String>,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> ApiResult<Json<FeedPage>> {
    let (after, limit) = params.resolve()?;
    let id = parse_id(&raw, "subscription", SubscriptionId::parse)?;
    Ok(Json(
        state.backend.catch_up(&id, &reader, after, limit).await?,
    ))
}
