//! What a delivery's body is: the envelope around an event's `data`, and the payload
//! modes that choose that `data`. [`render`] is one pure function of (message, mode),
//! called at send time: by the embedded engine for each delivery, by the Svix relay for
//! each channel's copy. A new mode is one more variant of [`PayloadMode`] and one more
//! arm of [`render`].

use super::events::{API_VERSION, EventType};
use super::fhir::{self, FhirSettings, StoredEvent};
use crate::text_enum::text_enum;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

text_enum! {
    /// What a delivery's `data` carries.
    #[derive(Default)]
    pub enum PayloadMode {
        /// The resource as it is after the write.
        #[default]
        Full => "full",
        /// Identifiers only (`id`, `*_id`, `book_no`): no clinical fields leave the server.
        IdOnly => "id_only",
        /// The event as the HL7 FHIR R4 resource it is (`Patient`, `Encounter`, a `Bundle`
        /// of vital-signs `Observation`s, …): full clinical content, like `full`.
        Fhir => "fhir",
    }
}

/// The body of every delivery.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub event_id: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: String,
    pub api_version: &'static str,
    /// Per-subscription sequence number (also the `ehrs-sequence` header): a gap means a
    /// delivery is still to come (or was given up). Absent under Svix, which has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    pub data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_fields: Option<Vec<String>>,
}

/// The outbox row's payload column.
#[derive(Deserialize)]
struct StoredPayload {
    data: Box<RawValue>,
    changed_fields: Option<Vec<String>>,
    /// What the `fhir` form needs beyond `data` (see [`super::Event::context`]).
    #[serde(default)]
    context: Option<serde_json::Value>,
}

/// One outbox message as the envelope needs it.
pub struct OutboxMessage<'a> {
    pub message_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub created_at: crate::time::Timestamp,
    /// The stored payload column (`None` once retention cleared it).
    pub payload: Option<&'a str>,
    /// The identifiers-only rendering of `data`.
    pub ids: &'a str,
}

/// The JSON body of a delivery of `message` in `mode`, with the per-subscription
/// sequence number when the backend has one. Pure: the same message, mode, sequence and
/// FHIR settings always give the same bytes.
pub fn render(
    message: &OutboxMessage<'_>,
    mode: PayloadMode,
    sequence: Option<i64>,
    fhir: &FhirSettings,
) -> Result<String, serde_json::Error> {
    let payload = message.payload.ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom(
            "the payload was cleared by the retention period",
        )
    })?;
    let stored: StoredPayload = serde_json::from_str(payload)?;
    let rendered: Box<RawValue>;
    let data = match mode {
        PayloadMode::Full => &*stored.data,
        PayloadMode::IdOnly => {
            rendered = RawValue::from_string(message.ids.to_string())?;
            &*rendered
        }
        PayloadMode::Fhir => {
            rendered = serde_json::value::to_raw_value(&fhir_resource(message, &stored, fhir)?)?;
            &*rendered
        }
    };
    serde_json::to_string(&Envelope {
        event_type: message.event_type,
        event_id: message.event_id,
        webhook_id: message.message_id,
        timestamp: message.created_at.to_rfc3339(),
        api_version: API_VERSION,
        sequence,
        data,
        changed_fields: stored.changed_fields,
    })
}

/// The FHIR resource of `message`.
fn fhir_resource(
    message: &OutboxMessage<'_>,
    stored: &StoredPayload,
    settings: &FhirSettings,
) -> Result<serde_json::Value, serde_json::Error> {
    let event_type = EventType::parse(message.event_type).ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "unknown event type {}",
            message.event_type
        ))
    })?;
    let data: serde_json::Value = serde_json::from_str(stored.data.get())?;
    let created_at = message.created_at.to_rfc3339();
    fhir::resource(
        &StoredEvent {
            event_type,
            event_id: message.event_id,
            created_at: &created_at,
            data: &data,
            context: stored.context.as_ref(),
        },
        settings,
    )
}
