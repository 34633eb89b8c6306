//! The Svix backend (`WEBHOOK_BACKEND=svix`, SPEC §7): a Svix server delivers, EHRS keeps
//! the outbox as the source of truth.
//!
//! - [`register`]: at start, get-or-create the application and upsert every event type
//!   with its envelope schema; retried in the background while Svix is unreachable.
//! - [`relay`]: hands each committed outbox message to Svix (`message.create` with the
//!   event id as `eventId` and idempotency key) and marks it relayed.
//! - `backend`: the administration API of SPEC §5 served by calling Svix, with
//!   `endpoints` (endpoints as subscriptions), `logs` (messages and attempts) and
//!   `requeue` (sending again).
//! - [`ops`]: Svix operational webhooks drive auto-pause and failure statistics, kept in
//!   `endpoint_health` through the shared mechanism of `crate::outbound::health`.
//!
//! Subscriptions are Svix endpoints whose `uid` is the subscription id (`sub_…`); the
//! payload mode is in the endpoint's metadata and channel (`full`, `id_only` or `fhir`).

mod backend;
mod endpoint_health;
mod endpoints;
mod logs;
pub mod ops;
mod register;
mod relay;
mod requeue;

pub use ops::router;

use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::outbound::fhir::FhirSettings;
use crate::outbound::payload::PayloadMode;
use anyhow::Context;
use axum::http::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use svix::api::{Svix, SvixOptions};

/// Endpoint metadata key holding the payload mode.
const PAYLOAD_METADATA: &str = "ehrs_payload";

pub struct SvixBackend {
    client: Svix,
    /// The application's uid (`SVIX_APP_ID`).
    app: String,
    db: Db,
    ops_secret: Option<String>,
    autopause_after: i64,
    status: Mutex<Status>,
    /// Which event types some enabled endpoint takes in each mode besides `full`: only
    /// for those does the relay send that copy of an event (see [`relay`]).
    copies: Mutex<Copies>,
    /// What `fhir` copies are rendered with.
    fhir: FhirSettings,
    /// Wakes the workers when start-up registration succeeded.
    registered_signal: tokio::sync::Notify,
    /// The channel-less endpoints last warned about (see `endpoints::refresh_payload_modes`).
    unchanneled_warned: Mutex<String>,
}

/// The event types the enabled endpoints of one payload mode filter on.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum TypeSet {
    /// No enabled endpoint takes this mode.
    #[default]
    None,
    /// Some endpoint takes every event type.
    All,
    Some(BTreeSet<String>),
}

impl TypeSet {
    pub(crate) fn accepts(&self, event_type: &str) -> bool {
        match self {
            TypeSet::None => false,
            TypeSet::All => true,
            TypeSet::Some(types) => types.contains(event_type),
        }
    }

    /// Adds an endpoint's filter (`None` or empty: every type).
    pub(crate) fn add(&mut self, filter: Option<&BTreeSet<String>>) {
        match (filter.filter(|f| !f.is_empty()), &mut *self) {
            (_, TypeSet::All) => {}
            (None, _) => *self = TypeSet::All,
            (Some(types), TypeSet::Some(known)) => known.extend(types.iter().cloned()),
            (Some(types), TypeSet::None) => *self = TypeSet::Some(types.clone()),
        }
    }
}

/// The copies besides `full` that enabled endpoints take, per event type.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Copies {
    pub id_only: TypeSet,
    pub fhir: TypeSet,
}

impl Copies {
    /// Notes that an enabled endpoint takes `mode` for the types of `filter`.
    pub(crate) fn add(&mut self, mode: PayloadMode, filter: Option<&BTreeSet<String>>) {
        match mode {
            PayloadMode::Full => {}
            PayloadMode::IdOnly => self.id_only.add(filter),
            PayloadMode::Fhir => self.fhir.add(filter),
        }
    }

    /// The modes an event of this type goes out in: always `full`, and each other mode
    /// some enabled endpoint takes it in.
    pub(crate) fn modes(&self, event_type: &str) -> Vec<PayloadMode> {
        let mut modes = vec![PayloadMode::Full];
        if self.id_only.accepts(event_type) {
            modes.push(PayloadMode::IdOnly);
        }
        if self.fhir.accepts(event_type) {
            modes.push(PayloadMode::Fhir);
        }
        modes
    }

    /// Whether no endpoint takes any copy besides `full`.
    pub(crate) fn only_full(&self) -> bool {
        self.id_only == TypeSet::None && self.fhir == TypeSet::None
    }
}

/// What `/health` reports.
#[derive(Default)]
struct Status {
    registered: bool,
    /// The last failure to reach Svix (registration or relay); cleared by a success.
    last_error: Option<String>,
}

impl SvixBackend {
    pub fn from_settings(settings: &Settings, db: &Db) -> anyhow::Result<SvixBackend> {
        let server_url = settings
            .svix_server_url
            .clone()
            .context("WEBHOOK_BACKEND=svix needs SVIX_SERVER_URL (e.g. https://api.eu.svix.com)")?;
        url::Url::parse(&server_url).context("SVIX_SERVER_URL is not a URL")?;
        let token = settings
            .svix_auth_token
            .clone()
            .context("WEBHOOK_BACKEND=svix needs SVIX_AUTH_TOKEN")?;
        if let Some(secret) = &settings.svix_ops_webhook_secret {
            svix::webhooks::Webhook::new(secret)
                .map_err(|_| anyhow::anyhow!("SVIX_OPS_WEBHOOK_SECRET must be a whsec_… secret"))?;
        }
        if settings.svix_app_id.trim().is_empty() {
            anyhow::bail!("SVIX_APP_ID must not be empty");
        }
        let options = SvixOptions {
            server_url: Some(server_url),
            timeout: Some(Duration::from_secs(10)),
            // The relay and registration loops retry with their own backoff; one quick
            // retry in the client smooths over a dropped connection.
            num_retries: Some(1),
            ..SvixOptions::default()
        };
        Ok(SvixBackend {
            client: Svix::new(token, Some(options)),
            app: settings.svix_app_id.clone(),
            db: db.clone(),
            ops_secret: settings.svix_ops_webhook_secret.clone(),
            autopause_after: settings.webhook_autopause_after,
            status: Mutex::default(),
            copies: Mutex::default(),
            fhir: FhirSettings::from_settings(settings),
            registered_signal: tokio::sync::Notify::new(),
            unchanneled_warned: Mutex::default(),
        })
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_registered(&self) -> bool {
        self.status().registered
    }

    fn note_success(&self) {
        self.status().last_error = None;
    }

    fn note_failure(&self, err: &svix::error::Error) {
        self.status().last_error = Some(describe(err));
    }

    fn copies(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The payload modes an event of this type goes out in.
    fn modes_for(&self, event_type: &str) -> Vec<PayloadMode> {
        self.copies().modes(event_type)
    }
}

/// A one-line description of a Svix failure, safe to log and show (no token, no payload).
fn describe(err: &svix::error::Error) -> String {
    use svix::error::Error;
    match err {
        Error::Http(content) => match &content.payload {
            Some(body) => format!(
                "Svix answered {} ({}: {})",
                content.status, body.code, body.detail
            ),
            None => format!("Svix answered {}", content.status),
        },
        Error::Validation(content) => format!("Svix refused the request ({})", content.status),
        Error::Timeout { .. } => "Svix did not answer in time".to_string(),
        Error::Generic(message) => format!("cannot reach Svix ({})", connection_failure(message)),
    }
}

/// The client reports connection failures as the Debug text of hyper's error; name the
/// usual causes plainly.
fn connection_failure(message: &str) -> String {
    let known = [
        ("Connection refused", "connection refused"),
        ("ConnectionRefused", "connection refused"),
        ("dns error", "the host name does not resolve"),
        ("failed to lookup", "the host name does not resolve"),
        ("certificate", "TLS certificate rejected"),
        (
            "EOF while parsing",
            "an answer that is not the JSON expected",
        ),
    ];
    match known.iter().find(|(needle, _)| message.contains(needle)) {
        Some((_, plain)) => plain.to_string(),
        None => message.chars().take(200).collect(),
    }
}

/// The HTTP status of a Svix answer, when there was one.
fn svix_status(err: &svix::error::Error) -> Option<StatusCode> {
    match err {
        svix::error::Error::Http(content) => Some(content.status),
        svix::error::Error::Validation(content) => Some(content.status),
        _ => None,
    }
}

/// Maps a Svix failure onto our error contract. `what` and `id` name the resource for a
/// 404. Client mistakes Svix caught become 4xx; Svix being down, slow or misconfigured
/// becomes 502/503/504: never a 500 with a stack.
fn api_error(err: svix::error::Error, what: &str, id: &str) -> ApiError {
    use svix::error::Error;
    let detail = describe(&err);
    match &err {
        Error::Http(content) => {
            let svix = content
                .payload
                .as_ref()
                .map(|body| json!({"code": body.code, "detail": body.detail}));
            let details = json!({ "svix": svix });
            match content.status.as_u16() {
                404 => ApiError::not_found(what, id),
                409 => ApiError::conflict("svix_conflict", detail).with_details(details),
                400 | 413 => ApiError::unprocessable("svix_refused", detail).with_details(details),
                429 => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "svix_rate_limited",
                    "Svix is rate limiting EHRS; try again shortly",
                )
                .with_details(details),
                401 | 403 => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "svix_unauthorized",
                    "Svix refused EHRS's credentials (check SVIX_AUTH_TOKEN)",
                )
                .with_details(details),
                _ => ApiError::new(StatusCode::BAD_GATEWAY, "svix_unavailable", detail)
                    .with_details(details),
            }
        }
        Error::Validation(content) => {
            let fields = content
                .payload
                .as_ref()
                .map(|body| {
                    body.detail
                        .iter()
                        .map(|e| json!({"field": e.loc.last(), "reason": e.msg}))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            ApiError::unprocessable("svix_validation_failed", "Svix refused the request")
                .with_details(json!({ "fields": fields }))
        }
        Error::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "svix_timeout", detail),
        Error::Generic(_) => ApiError::new(StatusCode::BAD_GATEWAY, "svix_unavailable", detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svix::error::{Error, HttpErrorContent};
    use svix::models::HttpErrorOut;

    fn http(status: u16) -> Error {
        Error::Http(HttpErrorContent {
            status: StatusCode::from_u16(status).unwrap(),
            payload: Some(HttpErrorOut::new("code".into(), "detail".into())),
        })
    }

    #[test]
    fn svix_failures_map_to_client_or_gateway_errors_never_500() {
        let cases = [
            (http(404), 404, "not_found"),
            (http(409), 409, "svix_conflict"),
            (http(400), 422, "svix_refused"),
            (http(429), 503, "svix_rate_limited"),
            (http(401), 502, "svix_unauthorized"),
            (http(500), 502, "svix_unavailable"),
            (
                Error::Timeout {
                    elapsed: None,
                    timeout: None,
                },
                504,
                "svix_timeout",
            ),
            (Error::Generic("refused".into()), 502, "svix_unavailable"),
        ];
        for (err, status, code) in cases {
            let mapped = api_error(err, "subscription", "sub_x");
            assert_eq!((mapped.status.as_u16(), mapped.code), (status, code));
        }
    }

    #[test]
    fn connection_failures_are_named_plainly() {
        let refused = r#"hyper_util::client::legacy::Error(Connect, ConnectError("tcp connect error", 127.0.0.1:9, Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }))"#;
        assert_eq!(
            describe(&Error::Generic(refused.into())),
            "cannot reach Svix (connection refused)"
        );
        assert_eq!(
            describe(&http(503)),
            "Svix answered 503 Service Unavailable (code: detail)"
        );
    }
}
