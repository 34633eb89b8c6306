//! Each event type's envelope as one self-contained JSON schema, for the Svix backend to
//! register (Svix takes draft-07 schemas, not OpenAPI components).

use super::webhooks::{declare, envelope_name};
use crate::outbound::EventType;
use serde_json::{Value, json};

/// Each event type's envelope as one self-contained JSON schema (draft 7: referenced
/// schemas under `definitions`), with the example as `examples`: what the Svix backend
/// registers as the event type's schema. `sequence` is left out of `required` there: Svix
/// has no per-endpoint sequence numbers.
pub fn envelope_schemas() -> Vec<(EventType, Value)> {
    // `declare` adds every schema an envelope references: no route is needed (a test in
    // the router's document tests check this against the whole document).
    let mut doc = super::base();
    declare(&mut doc);
    envelope_schemas_in(&serde_json::to_value(doc).expect("the document is JSON"))
}

/// [`envelope_schemas`] as found in `doc`, a document with a `webhooks` object.
pub fn envelope_schemas_in(doc: &Value) -> Vec<(EventType, Value)> {
    let components = &doc["components"]["schemas"];
    EventType::ALL
        .iter()
        .map(|&event| {
            let root = envelope_name(event);
            let mut definitions = serde_json::Map::new();
            let mut pending = vec![root.clone()];
            while let Some(name) = pending.pop() {
                if definitions.contains_key(&name) {
                    continue;
                }
                let schema = components[&name].clone();
                collect_refs(&schema, &mut pending);
                definitions.insert(name, schema);
            }
            let mut schema = definitions.remove(&root).unwrap_or_default();
            if let Some(required) = schema["required"].as_array_mut() {
                required.retain(|field| field != "sequence");
            }
            let example = &doc["webhooks"][event.as_str()]["post"]["requestBody"]["content"]
                ["application/json"]["example"];
            let mut example = example.clone();
            if let Some(object) = example.as_object_mut() {
                object.remove("sequence");
            }
            schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
            schema["title"] = json!(event.as_str());
            schema["examples"] = json!([example]);
            if !definitions.is_empty() {
                schema["definitions"] = Value::Object(definitions);
            }
            let text = schema
                .to_string()
                .replace("#/components/schemas/", "#/definitions/");
            (event, serde_json::from_str(&text).expect("still JSON"))
        })
        .collect()
}

/// Pushes the component names that `schema` references.
fn collect_refs(schema: &Value, names: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("$ref", Some(reference)) => {
                        if let Some(name) = reference.strip_prefix("#/components/schemas/") {
                            names.push(name.to_string());
                        }
                    }
                    _ => collect_refs(value, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, names)),
        _ => {}
    }
}
