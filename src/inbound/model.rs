//! Inbound sources, the events they send, and the actions those events trigger.

use crate::error::ApiError;
use crate::ids::{InboundEventId, InboundSourceId, JobId};
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an accepted inbound event does. Each action is one job kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `lab.result.ready`: append a lab result to the patient's latest vitals note.
    LabResultReady,
    /// `pharmacy.stock.update`: set a medicine's stock quantity.
    PharmacyStockUpdate,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::LabResultReady, Action::PharmacyStockUpdate];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::LabResultReady => "lab.result.ready",
            Action::PharmacyStockUpdate => "pharmacy.stock.update",
        }
    }

    pub fn parse(raw: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == raw)
    }
}

/// A partner system allowed to push events in. Its secret is never part of this value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundSource {
    pub id: InboundSourceId,
    pub name: String,
    /// The event types this source may send; anything else is refused with 422.
    pub allowed_event_types: Vec<String>,
    /// An inactive source is answered 404, as if it did not exist.
    pub is_active: bool,
    /// The source's own event names mapped onto actions (`lab.result.ready`,
    /// `pharmacy.stock.update`). An event type that is itself an action name needs no entry.
    pub action_mapping: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl InboundSource {
    /// The action an event of `event_type` triggers: its mapping, else the action of the
    /// same name, else none.
    pub fn action_for(&self, event_type: &str) -> Option<Action> {
        match self.action_mapping.get(event_type) {
            Some(action) => Action::parse(action),
            None => Action::parse(event_type),
        }
    }
}

/// The answer of create and rotate-secret: the source plus its secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboundSourceWithSecret {
    #[serde(flatten)]
    pub source: InboundSource,
    /// The HMAC key, used byte for byte as written (prefix included). Shown only in this
    /// answer; store it at the partner.
    #[schema(example = "whsec_8dYq2m0vX1bqJ3lq4n8Zt6g5c2a9kP0sR7wE1uY4iOo")]
    pub secret: String,
}

/// Body of `POST` and `PUT /webhooks/inbound-sources…`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundSourceInput {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// At least one event type, e.g. `["lab.result.ready"]` or the source's own names.
    #[schema(min_items = 1, max_items = 50)]
    pub allowed_event_types: Vec<String>,
    /// Default on create: `true`; absent on update: unchanged.
    pub is_active: Option<bool>,
    /// Default on create: `{}`; absent on update: unchanged.
    pub action_mapping: Option<BTreeMap<String, String>>,
}

impl Validate for InboundSourceInput {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("name", &self.name, 200);
        errors.check(
            !self.allowed_event_types.is_empty(),
            "allowed_event_types",
            "must name at least one event type",
        );
        errors.check(
            self.allowed_event_types.len() <= 50,
            "allowed_event_types",
            "must have at most 50 entries",
        );
        for (i, event_type) in self.allowed_event_types.iter().enumerate() {
            if !is_event_name(event_type) {
                errors.add(
                    &format!("allowed_event_types[{i}]"),
                    "must be 1 to 100 characters of letters, digits, '.', '_', ':' or '-'",
                );
            } else if self.allowed_event_types[..i].contains(event_type) {
                errors.add(&format!("allowed_event_types[{i}]"), "is listed twice");
            }
        }
        for (event_type, action) in self.action_mapping.iter().flatten() {
            let field = format!("action_mapping.{event_type}");
            errors.check(
                self.allowed_event_types.contains(event_type),
                &field,
                "maps an event type that is missing from allowed_event_types",
            );
            errors.check(
                Action::parse(action).is_some(),
                &field,
                "must be lab.result.ready or pharmacy.stock.update",
            );
        }
        errors.finish()
    }
}

fn is_event_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The body a partner posts to `/webhooks/inbound/{source_id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundEnvelope {
    pub event_type: String,
    /// The partner's id for this event; a second event with the same id is a replay.
    pub event_id: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Validate for InboundEnvelope {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("event_id", &self.event_id, 200);
        errors.text("event_type", &self.event_type, 100);
        errors.finish()
    }
}

/// The answer of the receiver: 202 for a new event, 200 for a replay (with the job of the
/// first delivery, in its current state).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboundReceipt {
    pub job_id: JobId,
    /// `queued` for a new event; the job's current status for a replay.
    #[schema(example = "queued")]
    pub status: String,
    /// True when this `event_id` had already been received from this source.
    pub duplicate: bool,
}

/// A received event with the state of its job, for `GET /webhooks/inbound-events`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InboundEventView {
    pub id: InboundEventId,
    pub source_id: InboundSourceId,
    /// `null` when the source has since been deleted.
    pub source_name: Option<String>,
    pub event_id: String,
    pub event_type: String,
    pub action: String,
    pub job_id: JobId,
    /// The job's status: `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts in the current round (a retry from the API starts a new one).
    pub attempts: i64,
    /// Attempts allowed in a round.
    pub max_attempts: i64,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When the job is (or was last) due.
    pub run_at: Option<Timestamp>,
    pub received_at: Timestamp,
}

/// Filters of `GET /webhooks/inbound-events`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboundEventFilter {
    /// Only events from this source.
    #[param(pattern = r"^src_[0-9A-Za-z]{26}$")]
    pub source_id: Option<String>,
    /// Only events whose job has this status (`queued`, `running`, `succeeded`, `failed`).
    #[param(pattern = "^(queued|running|succeeded|failed)$")]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl InboundEventFilter {
    /// The typed source id, or a 422 naming the bad parameter.
    pub fn checked(&self) -> Result<Option<InboundSourceId>, ApiError> {
        let mut errors = FieldErrors::new();
        let source = self.source_id.as_deref().and_then(|raw| {
            let id = InboundSourceId::parse(raw);
            errors.check(
                id.is_some(),
                "source_id",
                "must be an inbound source id (src_…)",
            );
            id
        });
        if let Some(status) = &self.status {
            errors.check(
                crate::jobs::status::ALL.contains(&status.as_str()),
                "status",
                "must be queued, running, succeeded or failed",
            );
        }
        errors.finish()?;
        Ok(source)
    }
}
