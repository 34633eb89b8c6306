//! The event catalogue: every event type EHRS publishes, and the [`Event`] value that
//! clinical code hands to [`super::emit`].

use serde::Serialize;
use serde_json::{Map, Value};

/// The version of the envelope and payload shapes, sent as `api_version`.
pub const API_VERSION: &str = "2026-11-01";

macro_rules! event_types {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Every event type, with its wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType {
            $(#[doc = $doc] $variant,)*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            pub fn description(self) -> &'static str {
                match self {
                    $(EventType::$variant => $doc,)*
                }
            }

            pub fn parse(raw: &str) -> Option<EventType> {
                match raw {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    PatientRegistered => "patient.registered", "A patient was registered (POST /patients).";
    PatientUpdated => "patient.updated", "A patient's details changed (PATCH /patients/{book_no}).";
    PatientCampRegistered => "patient.camp_registered", "A patient was registered at a camp.";
    VitalsRecorded => "vitals.recorded", "Vitals were recorded for a patient.";
    ConsultationCreated => "consultation.created", "A doctor was assigned: a consultation and its queue entry were created.";
    ConsultationUpdated => "consultation.updated", "A consultation's complaint, diagnosis, notes or status changed.";
    ConsultationCompleted => "consultation.completed", "A queue entry moved to completed, completing its consultation.";
    PrescriptionAdded => "prescription.added", "A medicine was prescribed in a consultation.";
    PrescriptionDispensed => "prescription.dispensed", "A prescription was given to the patient (stock decremented).";
    PrescriptionOutOfStock => "prescription.out_of_stock", "A prescription could not be given: out of stock.";
    PrescriptionReplaced => "prescription.replaced", "A prescription's medicine was replaced by another.";
    QueueStatusChanged => "queue.status_changed", "A queue entry moved to another status.";
    QueuePriorityChanged => "queue.priority_changed", "A queue entry's priority changed.";
    CampCreated => "camp.created", "A medical camp was created.";
    CampUpdated => "camp.updated", "A medical camp's details changed.";
    CampDeleted => "camp.deleted", "A medical camp was deleted.";
    CampAttendanceUpdated => "camp.attendance_updated", "A camp's attended count changed.";
    WebhookTest => "webhook.test", "A test event sent from the administration API.";
    WebhookHeartbeat => "webhook.heartbeat", "Nothing was delivered to this subscription for its `heartbeat_interval`: the last sequence number so far, so a receiver can tell silence from loss.";
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `data` of `webhook.test`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookTestData {
    pub subscription_id: crate::ids::SubscriptionId,
    pub message: String,
}

/// The `data` of `webhook.heartbeat`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookHeartbeatData {
    pub subscription_id: crate::ids::SubscriptionId,
    /// The sequence number of the last delivery queued before this heartbeat (0: none
    /// yet). The heartbeat takes the next one itself, like every delivery, so a gap
    /// before it means deliveries are still to come, or were missed: fetch them from
    /// the catch-up feed.
    pub last_sequence: i64,
    /// The subscription's `heartbeat_interval`, e.g. `10m`.
    pub heartbeat_interval: String,
}

/// One clinical event: its type and the resource as it is after the write.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: EventType,
    pub data: Value,
    pub changed_fields: Option<Vec<String>>,
    /// What the `fhir` payload needs beyond `data` (a prescription's medicine, patient
    /// and doctor; a queue entry's complaint and diagnosis), read in the write's
    /// transaction so the FHIR copy shows what was true at the write. Stored beside
    /// `data`; never in a `full` or `id_only` body.
    pub context: Option<Value>,
}

impl Event {
    /// An event whose `data` is `resource` serialised as the API returns it.
    pub fn new<T: Serialize>(event_type: EventType, resource: &T) -> Event {
        Event {
            event_type,
            data: serde_json::to_value(resource).unwrap_or(Value::Null),
            changed_fields: None,
            context: None,
        }
    }

    /// This event with the facts its FHIR form needs (see [`Event::context`]).
    pub fn with_context(self, context: Value) -> Event {
        Event {
            context: Some(context),
            ..self
        }
    }

    /// An `*.updated` event, which also names the fields the write changed.
    pub fn updated<T: Serialize>(
        event_type: EventType,
        resource: &T,
        changed_fields: Vec<String>,
    ) -> Event {
        Event {
            changed_fields: Some(changed_fields),
            ..Event::new(event_type, resource)
        }
    }

    /// An `*.updated` event for a write that turned `before` into `after`: `changed_fields`
    /// lists the top-level fields whose values differ (timestamps aside).
    pub fn changed<T: Serialize>(event_type: EventType, before: &T, after: &T) -> Event {
        let before = serde_json::to_value(before).unwrap_or(Value::Null);
        let after = serde_json::to_value(after).unwrap_or(Value::Null);
        let mut changed: Vec<String> = match (&before, &after) {
            (Value::Object(old), Value::Object(new)) => new
                .iter()
                .filter(|(key, value)| {
                    key.as_str() != "updated_at" && old.get(key.as_str()) != Some(value)
                })
                .map(|(key, _)| key.clone())
                .collect(),
            _ => Vec::new(),
        };
        changed.sort();
        Event {
            event_type,
            data: after,
            changed_fields: Some(changed),
            context: None,
        }
    }

    /// The `id_only` rendering of `data`: identifiers (`id`, `*_id`, `book_no`) and
    /// nothing else: every clinical field, status and note is dropped. Nested objects are reduced the same way.
    pub fn id_only_data(&self) -> Value {
        id_only(&self.data)
    }
}

fn id_only(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(key, value)| match value {
                    Value::Object(_) => Some((key.clone(), id_only(value))),
                    _ if is_identifier(key) => Some((key.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            Value::Object(kept)
        }
        _ => Value::Object(Map::new()),
    }
}

/// Whether `id_only` payloads keep this field (the OpenAPI `id_only` schemas use it too).
pub(crate) fn is_identifier(key: &str) -> bool {
    key == "id" || key.ends_with("_id") || key == "book_no"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_only_keeps_identifiers_and_drops_clinical_fields() {
        let event = Event::new(
            EventType::VitalsRecorded,
            &json!({"id": "vit_1", "patient_id": "pat_1", "book_no": "B-1", "bp": "120/80",
                    "patient": {"id": "pat_1", "name": "Asha"}}),
        );
        assert_eq!(
            event.id_only_data(),
            json!({"id": "vit_1", "patient_id": "pat_1", "book_no": "B-1", "patient": {"id": "pat_1"}})
        );
    }

    #[test]
    fn every_type_round_trips_through_its_name() {
        assert_eq!(EventType::ALL.len(), 19);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }
}
