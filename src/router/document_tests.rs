use super::*;
use crate::openapi::webhooks;
use crate::outbound::EventType;
use serde_json::{Value, json};

fn doc() -> Value {
    serde_json::to_value(document()).unwrap()
}

/// A validator for one component schema, resolving `$ref`s inside the whole document.
fn validator(doc: &Value, component: &str) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{component}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&root).unwrap()
}

/// Routes that answer without a token, on purpose.
const PUBLIC: &[&str] = &[
    "/api/v1/auth/login",
    "/health",
    "/metrics",
    "/openapi.json",
    "/docs",
    // Authenticated by the partner's HMAC signature, not a bearer token.
    "/api/v1/webhooks/inbound/{source_id}",
    // Authenticated by Svix's signature (SVIX_OPS_WEBHOOK_SECRET).
    "/api/v1/webhooks/internal/svix-ops",
];

#[test]
fn is_openapi_3_1_with_info_and_a_bearer_scheme() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "EHRS");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
}

#[test]
fn every_event_type_has_a_declared_webhook() {
    let doc = doc();
    let webhooks = doc["webhooks"].as_object().unwrap();
    assert_eq!(webhooks.len(), 19);
    assert_eq!(webhooks.len(), EventType::ALL.len());
    for event in EventType::ALL {
        let post = &webhooks[event.as_str()]["post"];
        let content = &post["requestBody"]["content"]["application/json"];
        let reference = content["schema"]["$ref"].as_str().unwrap();
        let name = reference.trim_start_matches("#/components/schemas/");
        assert_eq!(name, webhooks::envelope_name(*event));
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        assert!(!post["description"].as_str().unwrap().is_empty());
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["$ref"].as_str().unwrap())
            .collect();
        for header in [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "svix-id",
            "svix-timestamp",
            "svix-signature",
            "ehrs-sequence",
            "ehrs-event-type",
        ] {
            let reference = format!("#/components/parameters/{header}");
            assert!(headers.contains(&reference.as_str()), "{event}: {header}");
            assert_eq!(doc["components"]["parameters"][header]["in"], "header");
        }
    }
}

#[test]
fn every_example_validates_against_its_envelope_schema() {
    let doc = doc();
    for event in EventType::ALL {
        let name = webhooks::envelope_name(*event);
        let example = &doc["webhooks"][event.as_str()]["post"]["requestBody"]["content"]["application/json"]
            ["example"];
        let errors: Vec<String> = validator(&doc, &name)
            .iter_errors(example)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
        assert_eq!(example["type"], event.as_str());
    }
}

#[test]
fn id_only_schemas_accept_identifiers_and_refuse_clinical_fields() {
    let doc = doc();
    let validator = validator(&doc, "CampCreatedEvent");
    let mut envelope = doc["webhooks"]["camp.created"]["post"]["requestBody"]["content"]["application/json"]["example"].clone();
    envelope["data"] = json!({"id": "camp_1"});
    assert!(validator.is_valid(&envelope));
    envelope["data"] = json!({"id": "camp_1", "name": "Free eye camp"});
    assert!(
        !validator.is_valid(&envelope),
        "a clinical field fits neither form"
    );
    let ids = &doc["components"]["schemas"]["ConsultationIds"];
    assert!(ids["properties"]["queue_entry"]["properties"]["patient_id"].is_object());
    assert!(ids["properties"].get("diagnosis").is_none());
}

#[test]
fn every_path_is_protected_or_deliberately_public() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert!(
                secured || PUBLIC.contains(&path.as_str()),
                "{method} {path} declares no bearer security and is not in the public list"
            );
            if PUBLIC.contains(&path.as_str()) {
                assert!(
                    !secured,
                    "{method} {path} is public but declares bearer security"
                );
            }
        }
    }
}

/// Scans the sources for `utoipa::path` attributes so that a handler annotated
/// but not listed in `ApiDoc` (or a module merged without adding its paths) fails here.
#[test]
fn every_annotated_handler_is_in_the_document() {
    let doc = doc();
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let marker = concat!("#[utoipa::", "path(");
            for annotation in source.split(marker).skip(1) {
                let method = annotation.split(',').next().unwrap().trim();
                let Some(route) = annotation.split("path = \"").nth(1) else {
                    continue;
                };
                let route = route.split('"').next().unwrap();
                seen += 1;
                if doc["paths"][route][method].is_null() {
                    missing.push(format!("{method} {route} ({})", path.display()));
                }
            }
        }
    }
    assert!(seen > 50, "the scan found only {seen} annotated handlers");
    assert!(
        missing.is_empty(),
        "add these handlers to ApiDoc's paths in src/openapi/mod.rs: {missing:#?}"
    );
}

#[test]
fn the_committed_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    // Compared as JSON values, not text: a dev-dependency (thirtyfour) turns on serde_json's
    // `preserve_order` in test builds, which changes the key order of the examples but not
    // the document (`Value` equality ignores key order).
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap_or_default();
    let generated: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the generated document: if the change is intended, run `cargo run -- openapi > docs/openapi.json` and commit it"
    );
}

#[test]
fn every_operation_declares_the_shared_error_answers() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| {
                responses.get(status).is_some_and(|r| {
                    r["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/ErrorBody"))
                        || !status.starts_with('4')
                })
            };
            assert!(has("400"), "{method} {path}: 400");
            if !PUBLIC.contains(&path.as_str()) {
                assert!(has("401"), "{method} {path}: 401");
            }
            if path.contains('{') {
                assert!(has("404"), "{method} {path}: 404");
            }
            if operation.get("requestBody").is_some() {
                for status in ["413", "415", "422"] {
                    assert!(has(status), "{method} {path}: {status}");
                }
            }
        }
    }
}

#[test]
fn request_schemas_carry_the_rules_the_handlers_enforce() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["NewPatient"]["allOf"][0]["properties"]["book_no"]["pattern"],
        crate::patients::BookNo::PATTERN
    );
    assert_eq!(schemas["CampInput"]["properties"]["name"]["minLength"], 1);
    assert_eq!(
        schemas["CampInput"]["properties"]["start_date"]["pattern"],
        crate::validation::DATE_PATTERN
    );
    assert_eq!(
        schemas["RegistrationInput"]["properties"]["camp_id"]["pattern"],
        "^camp_[0-9A-Za-z]{26}$"
    );
    let limit = doc["paths"]["/api/v1/patients"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 200);
}

#[test]
fn the_envelope_schemas_svix_registers_need_no_route() {
    assert_eq!(
        crate::openapi::standalone::envelope_schemas(),
        crate::openapi::standalone::envelope_schemas_in(&doc()),
        "declare() alone must add every schema an envelope references"
    );
}
