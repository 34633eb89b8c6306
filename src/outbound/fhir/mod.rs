//! The FHIR R4 form of every event (`payload: "fhir"`): [`resource`] turns an event's
//! stored `data`, and the few facts stored beside it (its [`context`]), into the resource
//! a FHIR server can store as is. Pure: no database, no clock, no configuration beyond
//! [`FhirSettings`]. The mapping table, with its codes, is in the README ("FHIR
//! payloads").
//!
//! [`context`]: crate::outbound::Event::context

mod encounter;
mod location;
mod medication;
mod patient;
mod vitals;

use super::EventType;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// What the camp's organisation configures about its FHIR payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirSettings {
    /// `Patient.identifier.system` of the book number (`EHRS_FHIR_BOOK_NO_SYSTEM`).
    pub book_no_system: String,
}

impl FhirSettings {
    pub fn from_settings(settings: &crate::config::Settings) -> FhirSettings {
        FhirSettings {
            book_no_system: settings.fhir_book_no_system.clone(),
        }
    }
}

impl Default for FhirSettings {
    fn default() -> Self {
        FhirSettings {
            book_no_system: crate::config::DEFAULT_FHIR_BOOK_NO_SYSTEM.to_string(),
        }
    }
}

/// Why an event could not be given its FHIR form: its stored data lacks what the mapping
/// needs (a message written before the mapping existed, say).
pub type Error = serde_json::Error;

/// One stored event, as the mapping reads it.
pub struct StoredEvent<'a> {
    pub event_type: EventType,
    /// `evt_…`: the id of the resources made for the event itself (`webhook.*`).
    pub event_id: &'a str,
    /// When the event happened (RFC 3339).
    pub created_at: &'a str,
    /// The event's `data` as stored.
    pub data: &'a Value,
    /// What the write stored beside `data` for this form (see
    /// [`crate::outbound::Event::context`]).
    pub context: Option<&'a Value>,
}

/// The FHIR R4 resource of one event.
pub fn resource(event: &StoredEvent<'_>, settings: &FhirSettings) -> Result<Value, Error> {
    use EventType::*;
    let (data, context) = (event.data, event.context);
    Ok(match event.event_type {
        PatientRegistered | PatientUpdated => patient::patient(&parse(data)?, settings),
        PatientCampRegistered => encounter::camp_visit(&parse(data)?),
        VitalsRecorded => vitals::bundle(&parse(data)?),
        ConsultationCreated | ConsultationUpdated | ConsultationCompleted => {
            encounter::consultation(&parse(data)?)
        }
        QueueStatusChanged | QueuePriorityChanged => {
            let notes = context.map(parse).transpose()?.unwrap_or_default();
            encounter::queue_entry(&parse(data)?, &notes)
        }
        PrescriptionAdded => medication::request(&parse(data)?, &parse(require(context)?)?),
        PrescriptionReplaced => medication::replacement(&parse(data)?, &parse(require(context)?)?),
        PrescriptionDispensed | PrescriptionOutOfStock => {
            medication::dispense(&parse(data)?, &parse(require(context)?)?)
        }
        CampCreated | CampUpdated | CampAttendanceUpdated => location::camp(&parse(data)?, true),
        CampDeleted => location::camp(&parse(data)?, false),
        WebhookTest | WebhookHeartbeat => parameters(event)?,
    })
}

/// The resource type each event's `data` is in FHIR form (the OpenAPI `webhooks` object
/// declares it; the README's table gives the mapping).
pub fn resource_type(event: EventType) -> &'static str {
    use EventType::*;
    match event {
        PatientRegistered | PatientUpdated => "Patient",
        PatientCampRegistered
        | ConsultationCreated
        | ConsultationUpdated
        | ConsultationCompleted
        | QueueStatusChanged
        | QueuePriorityChanged => "Encounter",
        VitalsRecorded => "Bundle",
        PrescriptionAdded | PrescriptionReplaced => "MedicationRequest",
        PrescriptionDispensed | PrescriptionOutOfStock => "MedicationDispense",
        CampCreated | CampUpdated | CampAttendanceUpdated | CampDeleted => "Location",
        WebhookTest | WebhookHeartbeat => "Parameters",
    }
}

/// Our id as a FHIR id: `pat_01jd…` → `pat-01jd…`. FHIR ids allow only letters, digits,
/// `-` and `.` (at most 64); ours are a prefix, `_` and 26 letters and digits, so the one
/// `_` becomes `-` and [`our_id`] turns it back. Every reference uses this mapping.
pub fn fhir_id(id: &str) -> String {
    id.replacen('_', "-", 1)
}

/// The EHRS id of a FHIR id made by [`fhir_id`]: `pat-01jd…` → `pat_01jd…`. For the ids
/// of parts (`vit-01jd…-bp`, `rx-01jd…-med-01jd…`), the id of the first part.
pub fn our_id(fhir_id: &str) -> String {
    let whole = fhir_id.split('-').take(2).collect::<Vec<_>>().join("-");
    whole.replacen('-', "_", 1)
}

/// `{"reference": "Type/id"}` for one of our ids.
fn reference(resource_type: &str, id: &str) -> Value {
    json!({ "reference": format!("{resource_type}/{}", fhir_id(id)) })
}

/// `meta` with `lastUpdated`.
fn meta(last_updated: &str) -> Value {
    json!({ "lastUpdated": last_updated })
}

/// A CodeableConcept of one coding and its text.
fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }], "text": display })
}

/// A CodeableConcept of free text alone (our complaints, diagnoses and medicines are
/// typed as text, not coded).
fn text(text: &str) -> Value {
    json!({ "text": text })
}

/// `value` without the members whose value is `null`, at every depth: the mappers write
/// each resource in the specification's order with `Option`s, and FHIR JSON has no nulls.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, member)| !member.is_null())
                .map(|(key, member)| (key, without_nulls(member)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    T::deserialize(value)
}

fn require(context: Option<&Value>) -> Result<&Value, Error> {
    context
        .ok_or_else(|| <Error as serde::de::Error>::custom("the message carries no FHIR context"))
}

/// `webhook.test` and `webhook.heartbeat` as a `Parameters` resource: a minimal valid
/// resource whose parameters are the event's fields, so a FHIR receiver can store or
/// ignore it like any other.
fn parameters(event: &StoredEvent<'_>) -> Result<Value, Error> {
    #[derive(Deserialize)]
    struct Fields {
        subscription_id: String,
        message: Option<String>,
        last_sequence: Option<i64>,
        heartbeat_interval: Option<String>,
    }
    let fields: Fields = parse(event.data)?;
    let mut parameter = vec![
        json!({ "name": "event", "valueCode": event.event_type.as_str() }),
        json!({ "name": "subscription_id", "valueString": fields.subscription_id }),
    ];
    if let Some(message) = fields.message {
        parameter.push(json!({ "name": "message", "valueString": message }));
    }
    if let Some(last) = fields.last_sequence {
        parameter.push(json!({ "name": "last_sequence", "valueInteger": last }));
    }
    if let Some(interval) = fields.heartbeat_interval {
        parameter.push(json!({ "name": "heartbeat_interval", "valueString": interval }));
    }
    Ok(json!({
        "resourceType": "Parameters",
        "id": fhir_id(event.event_id),
        "meta": meta(event.created_at),
        "parameter": parameter,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_kind_maps_to_a_fhir_id_and_back() {
        for id in [
            "pat_01jdq3v8m2x7c9k4t6w0y5z1ab",
            "camp_01jdq3v8m2x7c9k4t6w0y5z1ab",
            "cons_01jdq3v8m2x7c9k4t6w0y5z1ab",
        ] {
            let mapped = fhir_id(id);
            assert!(mapped.len() <= 64);
            assert!(
                mapped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            );
            assert_eq!(our_id(&mapped), id);
        }
        assert_eq!(
            our_id("vit-01jdq3v8m2x7c9k4t6w0y5z1ab-bp"),
            "vit_01jdq3v8m2x7c9k4t6w0y5z1ab"
        );
        let replacement = format!(
            "{}-{}",
            fhir_id("rx_01jdq3v8m2x7c9k4t6w0y5z1ab"),
            fhir_id("med_01jdq3v8m2x7c9k4t6w0y5z1ab")
        );
        assert!(replacement.len() <= 64);
        assert_eq!(our_id(&replacement), "rx_01jdq3v8m2x7c9k4t6w0y5z1ab");
    }

    #[test]
    fn every_event_type_has_a_resource_that_says_it_is_one() {
        let data = serde_json::json!({"subscription_id": "sub_01jdq3v8m2x7c9k4t6w0y5z1ab", "message": "hi"});
        let event = StoredEvent {
            event_type: EventType::WebhookTest,
            event_id: "evt_01jdq3v8m2x7c9k4t6w0y5z1ab",
            created_at: "2026-12-04T10:00:00.000Z",
            data: &data,
            context: None,
        };
        let resource = super::resource(&event, &FhirSettings::default()).unwrap();
        assert_eq!(
            resource["resourceType"],
            resource_type(EventType::WebhookTest)
        );
        assert_eq!(resource["id"], "evt-01jdq3v8m2x7c9k4t6w0y5z1ab");
    }
}
