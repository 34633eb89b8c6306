//! The document's top-level `webhooks` object: one `POST` per outbound event type, with
//! the JSON schema of its envelope (`data` typed as the resource the event carries, in
//! full or `id_only` form), an example, and the signature headers.
//!
//! [`data_schema`] is the one place that says what each event carries. Its `match` has no
//! wildcard: a new [`EventType`] does not compile until it is declared here.

use super::examples;
use crate::outbound::events::{API_VERSION, WebhookHeartbeatData, WebhookTestData, is_identifier};
use crate::outbound::{EventType, fhir};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::{
    Components, ContentBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder,
};

/// What an event carries in `data`.
pub struct DataSchema {
    /// The component schema of the full payload.
    pub name: String,
    /// That schema and every schema it references.
    pub schemas: Vec<(String, RefOr<Schema>)>,
    /// A realistic `data` for the example delivery.
    pub example: Value,
    /// Whether the event also carries `changed_fields` (events made with `Event::changed`).
    pub changed_fields: bool,
}

fn resource<T: ToSchema>(example: Value) -> DataSchema {
    let name = T::name().into_owned();
    let mut schemas = vec![(name.clone(), T::schema())];
    T::schemas(&mut schemas);
    DataSchema {
        name,
        schemas,
        example,
        changed_fields: false,
    }
}

fn with_changed_fields(mut data: DataSchema) -> DataSchema {
    data.changed_fields = true;
    data
}

/// The payload of each event type: the single source of truth for the `webhooks` object.
pub fn data_schema(event: EventType) -> DataSchema {
    use crate::camps::Camp;
    use crate::consultations::Consultation;
    use crate::prescriptions::Prescription;
    use crate::queue::model::{QueuePriorityChanged, QueueStatusChanged};
    use EventType::*;
    match event {
        PatientRegistered => resource::<crate::patients::Patient>(examples::patient()),
        // patient.updated is made with Event::changed, hence changed_fields.
        PatientUpdated => {
            with_changed_fields(resource::<crate::patients::Patient>(examples::patient()))
        }
        PatientCampRegistered => {
            resource::<crate::patients::Registration>(examples::registration())
        }
        VitalsRecorded => resource::<crate::vitals::Vitals>(examples::vitals()),
        ConsultationCreated | ConsultationCompleted => {
            resource::<Consultation>(examples::consultation())
        }
        ConsultationUpdated => {
            with_changed_fields(resource::<Consultation>(examples::consultation()))
        }
        PrescriptionAdded
        | PrescriptionDispensed
        | PrescriptionOutOfStock
        | PrescriptionReplaced => resource::<Prescription>(examples::prescription()),
        QueueStatusChanged => {
            let mut example = examples::queue_entry();
            example["previous_status"] = json!("waiting");
            resource::<QueueStatusChanged<'static>>(example)
        }
        QueuePriorityChanged => {
            let mut example = examples::queue_entry();
            example["previous_priority"] = json!("normal");
            resource::<QueuePriorityChanged<'static>>(example)
        }
        CampCreated | CampDeleted => resource::<Camp>(examples::camp()),
        CampUpdated | CampAttendanceUpdated => {
            with_changed_fields(resource::<Camp>(examples::camp()))
        }
        WebhookTest => resource::<WebhookTestData>(json!({
            "subscription_id": "sub_01jdq3v8m2x7c9k4t6w0y5z1ab",
            "message": "This is a test event from EHRS."
        })),
        WebhookHeartbeat => resource::<WebhookHeartbeatData>(json!({
            "subscription_id": "sub_01jdq3v8m2x7c9k4t6w0y5z1ab",
            "last_sequence": 41,
            "heartbeat_interval": "10m"
        })),
    }
}

/// The component name of an event's envelope: `camp.created` → `CampCreatedEvent`.
pub fn envelope_name(event: EventType) -> String {
    let mut name = String::new();
    for word in event.as_str().split(['.', '_']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name + "Event"
}

/// The signature and metadata headers of every delivery: (name, description, example).
const HEADERS: &[(&str, &str, &str)] = &[
    (
        "webhook-id",
        "The message id (`msg_…`), equal to the envelope's `webhook_id`; identical across retries, so receivers can drop duplicates.",
        "msg_01jdq3v8m2x7c9k4t6w0y5z1ab",
    ),
    (
        "webhook-timestamp",
        "Unix seconds when this attempt was signed. Reject values far from your clock (Standard Webhooks suggests 5 minutes) to stop replays.",
        "1795860902",
    ),
    (
        "webhook-signature",
        "Standard Webhooks signature: space-separated `v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64 part of the subscription's `whsec_…` secret. During a secret rotation both the new and the previous secret sign; accept the delivery if any signature matches. The official Svix and Standard Webhooks verifiers accept it.",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ),
    (
        "svix-id",
        "Same value as `webhook-id` (for Svix libraries).",
        "msg_01jdq3v8m2x7c9k4t6w0y5z1ab",
    ),
    (
        "svix-timestamp",
        "Same value as `webhook-timestamp`.",
        "1795860902",
    ),
    (
        "svix-signature",
        "Same value as `webhook-signature`.",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ),
    (
        "ehrs-sequence",
        "Per-subscription sequence number, equal to the envelope's `sequence`: a gap means a delivery is still to come (or was given up).",
        "42",
    ),
    (
        "ehrs-event-type",
        "The event type, equal to the envelope's `type`.",
        "camp.created",
    ),
];

/// Adds the `webhooks` object (and the schemas and header parameters it references) to
/// `doc`. Call it after any `merge`, which would drop it.
pub fn declare(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Components::new);
    for (name, description, example) in HEADERS {
        let parameter = ParameterBuilder::new()
            .name(*name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(*description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .example(Some(json!(example)));
        components
            .parameters
            .insert(name.to_string(), RefOr::T(parameter.build()));
    }
    let mut webhooks = PathsBuilder::new();
    for &event in EventType::ALL {
        webhooks = webhooks.path(event.as_str(), declare_event(event, components));
    }
    doc.webhooks = Some(webhooks.build());
}

fn declare_event(event: EventType, components: &mut Components) -> PathItem {
    let data = data_schema(event);
    for (name, schema) in &data.schemas {
        components.schemas.insert(name.clone(), schema.clone());
    }
    let envelope = envelope_name(event);
    let example = example_envelope(event, &data);
    let data_ref = RefOr::Ref(Ref::from_schema_name(&data.name));
    let data_schema: RefOr<Schema> = {
        let ids_name = format!("{}Ids", data.name);
        let ids = id_only(&data_ref, &components.schemas)
            .expect("every declared payload is an object")
            .description(Some(format!(
                "The `id_only` rendering of {}: identifiers only, no clinical fields.",
                data.name
            )));
        components.schemas.insert(ids_name.clone(), ids.into());
        let fhir_name = declare_fhir_resource(fhir::resource_type(event), components);
        OneOfBuilder::new()
            .item(data_ref)
            .item(Ref::from_schema_name(ids_name))
            .item(Ref::from_schema_name(fhir_name))
            .description(Some(
                "The resource as it is after the write (`full` subscriptions), its identifiers only (`id_only` subscriptions), or the event as an HL7 FHIR R4 resource (`fhir` subscriptions).",
            ))
            .into()
    };
    components
        .schemas
        .insert(envelope.clone(), envelope_schema(event, &data, data_schema));

    let description = format!(
        "{}\n\nPOSTed to every enabled subscription whose event filter includes `{}` (an empty filter means all). Answer any 2xx to acknowledge; anything else, a timeout or a connection error is retried with backoff, always with the same `webhook-id`. Verify the signature on the raw body before parsing it.",
        event.description(),
        event.as_str()
    );
    let mut operation = OperationBuilder::new()
        .summary(Some(event.as_str()))
        .description(Some(description))
        .operation_id(Some(event.as_str()))
        .tag("events")
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(envelope)))
                        .example(Some(example))
                        .build(),
                )
                .build(),
        ))
        .response(
            "2XX",
            ResponseBuilder::new().description("Delivered: the attempt is logged as a success."),
        )
        .response(
            "default",
            ResponseBuilder::new().description(
                "Failed: retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (with jitter), honouring `Retry-After`, then marked exhausted.",
            ),
        );
    for (name, _, _) in HEADERS {
        operation = operation.parameter_ref(Ref::new(format!("#/components/parameters/{name}")));
    }
    PathItem::new(HttpMethod::Post, operation)
}

/// The component of a FHIR R4 resource type, `Fhir{Type}`: what every EHRS resource of
/// that type carries (`resourceType`, `id`, `meta.lastUpdated`); the rest is the FHIR R4
/// specification's, which the description links.
fn declare_fhir_resource(resource_type: &str, components: &mut Components) -> String {
    let name = format!("Fhir{resource_type}");
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    let schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "The event as an HL7 FHIR R4 `{resource_type}` resource, as https://hl7.org/fhir/R4/{}.html defines it (the README's \"FHIR payloads\" gives the mapping and codes).",
            resource_type.to_lowercase()
        )))
        .property(
            "resourceType",
            text("The FHIR resource type.").enum_values(Some([resource_type])),
        )
        .property(
            "id",
            text("The resource id: the EHRS id with its `_` as `-` (`pat_01…` → `pat-01…`).")
                .pattern(Some(r"^[A-Za-z0-9\-\.]{1,64}$")),
        )
        .property(
            "meta",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "lastUpdated",
                    text("When the resource last changed.")
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                )
                .required("lastUpdated"),
        )
        .required("resourceType")
        .required("id")
        .required("meta");
    components.schemas.insert(name.clone(), schema.into());
    name
}

fn envelope_schema(
    event: EventType,
    data: &DataSchema,
    data_schema: RefOr<Schema>,
) -> RefOr<Schema> {
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    let mut envelope = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "The body of a `{}` delivery.",
            event.as_str()
        )))
        .property(
            "type",
            text("The event type.").enum_values(Some([event.as_str()])),
        )
        .property(
            "event_id",
            text("The clinical event (`evt_…`).").pattern(Some("^evt_")),
        )
        .property(
            "webhook_id",
            text("The message (`msg_…`); equals the `webhook-id` header.").pattern(Some("^msg_")),
        )
        .property(
            "timestamp",
            text("When the event happened (RFC 3339, UTC).")
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property(
            "api_version",
            text("The version of the envelope and payload shapes.")
                .enum_values(Some([API_VERSION])),
        )
        .property(
            "sequence",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .description(Some(
                    "Per-subscription sequence number; equals the `ehrs-sequence` header.",
                )),
        )
        .property("data", data_schema);
    for field in [
        "type",
        "event_id",
        "webhook_id",
        "timestamp",
        "api_version",
        "sequence",
        "data",
    ] {
        envelope = envelope.required(field);
    }
    if data.changed_fields {
        envelope = envelope
            .property(
                "changed_fields",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(
                        "The top-level fields of `data` that this write changed.",
                    )),
            )
            .required("changed_fields");
    }
    envelope
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

fn example_envelope(event: EventType, data: &DataSchema) -> Value {
    let mut example = json!({
        "type": event.as_str(),
        "event_id": "evt_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "webhook_id": "msg_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "timestamp": "2026-11-28T10:15:02.123Z",
        "api_version": API_VERSION,
        "sequence": 42,
        "data": data.example,
    });
    if data.changed_fields {
        example["changed_fields"] = match event {
            EventType::CampAttendanceUpdated => json!(["attended_count"]),
            EventType::ConsultationUpdated => json!(["diagnosis", "notes"]),
            _ => json!(["name"]),
        };
    }
    example
}

/// The `id_only` form of an object schema, mirroring `Event::id_only_data`: identifier
/// properties kept as they are, nested objects reduced the same way, everything else
/// dropped, and nothing more allowed. `None` when `schema` is not an object.
fn id_only(
    schema: &RefOr<Schema>,
    known: &BTreeMap<String, RefOr<Schema>>,
) -> Option<ObjectBuilder> {
    match schema {
        RefOr::Ref(reference) => {
            let name = reference.ref_location.rsplit('/').next()?;
            id_only(known.get(name)?, known)
        }
        RefOr::T(Schema::Object(object)) if !object.properties.is_empty() => {
            let mut ids = ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            for (key, property) in &object.properties {
                let kept = match id_only(property, known) {
                    Some(nested) => nested.into(),
                    None if is_identifier(key) => property.clone(),
                    None => continue,
                };
                ids = ids.property(key, kept);
                if object.required.contains(key) {
                    ids = ids.required(key);
                }
            }
            Some(ids)
        }
        RefOr::T(Schema::AllOf(all)) => {
            // A flattened struct: one object with the properties of every part.
            let mut ids = ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            for part in all.items.iter().filter_map(|item| id_only(item, known)) {
                let part = part.build();
                for (key, property) in part.properties {
                    ids = ids.property(key, property);
                }
                for key in part.required {
                    ids = ids.required(key);
                }
            }
            Some(ids)
        }
        _ => None,
    }
}
