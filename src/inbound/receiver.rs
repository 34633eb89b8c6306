//! `POST /api/v1/webhooks/inbound/{source_id}`: the verified receiver.
//!
//! No bearer token: the signature is the authentication. Checks run in this order, and
//! the first that fails answers:
//!
//! 1. source unknown, malformed id, or inactive → 404
//! 2. `X-EHRS-Timestamp` missing, not unix seconds, or more than the tolerance (5 min)
//!    from now → 401
//! 3. body larger than 256 KiB → 413 (before the signature: the signature covers the
//!    whole body, so it cannot be checked without reading past the limit)
//! 4. `X-EHRS-Signature` missing or not `sha256=<hex HMAC-SHA256(secret, "{ts}.{raw body}")>`
//!    → 401 (compared in constant time)
//! 5. body not JSON → 400; JSON without `event_type`/`event_id`/`data` object → 422
//! 6. event type not allowed, mapped to no action, or `data` unfit for the action → 422
//! 7. `event_id` already received from this source → 200 with the original job id
//! 8. otherwise the job and the received-event row commit together → 202

use super::actions::{self, JobPayload};
use super::model::{InboundEnvelope, InboundReceipt};
use super::repo::{self, NewEvent, SourceRow};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::parse_id;
use crate::ids::{InboundEventId, InboundSourceId, JobId};
use crate::jobs;
use crate::state::AppState;
use crate::validation::{FieldErrors, Validate};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Largest body the receiver accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const TIMESTAMP_HEADER: &str = "x-ehrs-timestamp";
pub const SIGNATURE_HEADER: &str = "x-ehrs-signature";

/// Receives one signed event from a partner and queues its action.
#[utoipa::path(post, path = "/api/v1/webhooks/inbound/{source_id}", tag = "inbound webhooks",
    params(("source_id" = String, Path, description = "the inbound source (src_…)"),
        ("X-EHRS-Timestamp" = String, Header, description = "unix seconds"),
        ("X-EHRS-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>")),
    request_body(content = Object, description = "{\"event_type\", \"event_id\", \"data\": {…}}"),
    responses((status = 202, body = InboundReceipt), (status = 200, description = "a replayed event_id", body = InboundReceipt),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<InboundReceipt>)> {
    let source = active_source(&state, &source_id).await?;
    let headers = request.headers().clone();
    let timestamp = check_timestamp(
        &headers,
        chrono::Utc::now().timestamp(),
        state.settings.inbound_timestamp_tolerance.as_secs() as i64,
    )?;
    let body = read_body(request, &state).await?;
    let secret = state.secrets.open(&source.secret_enc, source.id.as_str())?;
    check_signature(&headers, secret.as_bytes(), timestamp, &body)?;
    let envelope = parse_envelope(&body)?;
    let view = source.to_source();
    if !view.allowed_event_types.contains(&envelope.event_type) {
        return Err(ApiError::unprocessable(
            "event_type_not_allowed",
            format!("this source may not send '{}' events", envelope.event_type),
        ));
    }
    let action = view.action_for(&envelope.event_type).ok_or_else(|| {
        ApiError::unprocessable(
            "no_action_for_event_type",
            format!("'{}' is allowed but maps to no action", envelope.event_type),
        )
    })?;
    let data = actions::check_data(action, &envelope.data)?;
    let body_text = String::from_utf8_lossy(&body);
    accept(&state, &source.id, &envelope, (action, data), &body_text).await
}

async fn active_source(state: &AppState, raw: &str) -> Result<SourceRow, ApiError> {
    let id = parse_id(raw, "inbound source", InboundSourceId::parse)?;
    match repo::get_source(&state.db, &id).await? {
        Some(source) if source.is_active != 0 => Ok(source),
        _ => Err(ApiError::not_found("inbound source", &id)),
    }
}

/// The timestamp header as sent (the signed text), when it is unix seconds within
/// `tolerance` of `now`.
fn check_timestamp(headers: &HeaderMap, now: i64, tolerance: i64) -> Result<&str, ApiError> {
    let raw = headers
        .get(TIMESTAMP_HEADER)
        .ok_or_else(|| ApiError::unauthorized("missing X-EHRS-Timestamp header"))?
        .to_str()
        .unwrap_or_default();
    let seconds: i64 =
        (!raw.is_empty() && raw.len() <= 12 && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| raw.parse().ok())
            .flatten()
            .ok_or_else(|| ApiError::unauthorized("X-EHRS-Timestamp must be unix seconds"))?;
    if (now - seconds).abs() > tolerance {
        return Err(ApiError::unauthorized(format!(
            "X-EHRS-Timestamp is more than {tolerance} s from the server's time: check the \
             sender's clock (the server's own time is not told to unsigned callers)"
        )));
    }
    Ok(raw)
}

/// Reads the raw body under the route's 256 KiB limit: the HMAC is over these exact bytes.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| crate::http::body_rejection(rejection, MAX_BODY_BYTES))
}

/// `Ok` when `X-EHRS-Signature` is `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn check_signature(
    headers: &HeaderMap,
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or_else(|| ApiError::unauthorized("missing X-EHRS-Signature header"))?;
    let hex_sig = header
        .to_str()
        .ok()
        .and_then(|value| value.trim().strip_prefix("sha256="))
        .ok_or_else(|| ApiError::unauthorized("X-EHRS-Signature must be 'sha256=<hex>'"))?;
    let signature = hex::decode(hex_sig)
        .map_err(|_| ApiError::unauthorized("X-EHRS-Signature must be 'sha256=<hex>'"))?;
    // verify_slice compares in constant time.
    signer(secret, timestamp, body)
        .verify_slice(&signature)
        .map_err(|_| ApiError::unauthorized("the signature does not match"))
}

/// HMAC-SHA256 keyed with the secret over `{timestamp}.{body}`.
fn signer(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for `body` (what a partner computes; used by tests and docs).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = signer(secret.as_bytes(), &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("sha256={}", hex::encode(tag))
}

fn parse_envelope(body: &[u8]) -> Result<InboundEnvelope, ApiError> {
    // Strict like every API body: a key given twice is refused, not "last one wins".
    let value = crate::http::strict_json(body)?;
    let lead = r#"the body must be {"event_type", "event_id", "data": {…}}"#;
    if !value.is_object() {
        let errors = FieldErrors::single("body", "must be a JSON object");
        return Err(ApiError::invalid_fields("invalid_body", lead, errors));
    }
    let envelope: InboundEnvelope = crate::http::from_value(&value, None)
        .map_err(|errors| ApiError::invalid_fields("invalid_body", lead, errors))?;
    envelope.validate()?;
    Ok(envelope)
}

/// Records the event and queues its job in one transaction; a replay answers with the
/// first job instead. Concurrent replays meet at the UNIQUE (source_id, event_id) index.
async fn accept(
    state: &AppState,
    source: &InboundSourceId,
    envelope: &InboundEnvelope,
    (action, data): (super::model::Action, actions::Checked),
    body: &str,
) -> ApiResult<(StatusCode, Json<InboundReceipt>)> {
    let mut tx = state.db.begin().await?;
    if let Some(job_id) = repo::find_received(&mut tx, source, &envelope.event_id).await? {
        drop(tx);
        return replay(state, job_id).await;
    }
    let event_row = InboundEventId::generate();
    let received = JobPayload {
        inbound_event_id: event_row.to_string(),
        source_id: source.to_string(),
        event_id: envelope.event_id.clone(),
        data: (),
    };
    let job_id = actions::enqueue(&mut tx, received, data).await?;
    let event = NewEvent {
        id: &event_row,
        source_id: source,
        event_id: &envelope.event_id,
        event_type: &envelope.event_type,
        action: action.as_str(),
        payload: body,
        job_id: &job_id,
    };
    if let Err(err) = repo::insert_event(&mut tx, &event).await {
        drop(tx);
        return match repo::find_received_committed(&state.db, source, &envelope.event_id).await? {
            Some(job_id) => replay(state, job_id).await,
            None => Err(err.into()),
        };
    }
    tx.commit().await?;
    jobs::notify_enqueued();
    Ok((
        StatusCode::ACCEPTED,
        Json(InboundReceipt {
            job_id,
            status: jobs::status::QUEUED.into(),
            duplicate: false,
        }),
    ))
}

async fn replay(state: &AppState, job_id: JobId) -> ApiResult<(StatusCode, Json<InboundReceipt>)> {
    let status = jobs::get(&state.db, &job_id)
        .await?
        .map(|job| job.status)
        .unwrap_or_else(|| "unknown".into());
    Ok((
        StatusCode::OK,
        Json(InboundReceipt {
            job_id,
            status,
            duplicate: true,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    #[test]
    fn signatures_cover_the_exact_bytes_and_timestamp() {
        let body = br#"{"a":1}"#;
        let good = sign("whsec_k", 1_700_000_000, body);
        assert!(
            check_signature(
                &headers("1700000000", &good),
                b"whsec_k",
                "1700000000",
                body
            )
            .is_ok()
        );
        assert!(
            check_signature(
                &headers("1700000000", &good),
                b"whsec_k",
                "1700000000",
                br#"{"a": 1}"#
            )
            .is_err()
        );
        assert!(
            check_signature(
                &headers("1700000001", &good),
                b"whsec_k",
                "1700000001",
                body
            )
            .is_err()
        );
        assert!(
            check_signature(
                &headers("1700000000", &good),
                b"whsec_other",
                "1700000000",
                body
            )
            .is_err()
        );
        assert!(
            check_signature(
                &headers("1700000000", "sha256=zz"),
                b"whsec_k",
                "1700000000",
                body
            )
            .is_err()
        );
        assert!(
            check_signature(
                &headers("1700000000", &good[7..]),
                b"whsec_k",
                "1700000000",
                body
            )
            .is_err()
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let now = 1_700_000_000;
        assert!(check_timestamp(&headers("1700000300", "x"), now, 300).is_ok());
        assert!(check_timestamp(&headers("1699999700", "x"), now, 300).is_ok());
        assert!(check_timestamp(&headers("1700000301", "x"), now, 300).is_err());
        assert!(check_timestamp(&headers("1699999699", "x"), now, 300).is_err());
        assert!(check_timestamp(&headers("-5", "x"), now, 300).is_err());
        assert!(check_timestamp(&headers("17e8", "x"), now, 300).is_err());
        assert!(check_timestamp(&HeaderMap::new(), now, 300).is_err());
    }
}
