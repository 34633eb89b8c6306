//! The OpenAPI document against reality: every payload the routes actually deliver
//! validates against the schema `/openapi.json` declares for its event type, for `full`,
//! `id_only` and `fhir` subscriptions; and the document and docs page are served.

use crate::camps::{camp_body, create_camp};
use crate::support::care::{
    clinic, create_medicine, dispatch, id, move_queue, prescribe, stock_of,
};
use crate::support::{Received, TestApp, TestReceiver};
use ehrs::auth::Role;
use ehrs::outbound::EventType;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// A validator for `#/components/schemas/{component}` of `doc`, `$ref`s resolved inside it.
fn validator(doc: &Value, component: &str) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{component}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&root).expect("the declared schema compiles")
}

/// The component name behind a `$ref`.
fn component(reference: &Value) -> &str {
    reference["$ref"]
        .as_str()
        .expect("a $ref")
        .trim_start_matches("#/components/schemas/")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

/// Checks one delivery against the document: the envelope schema declared for its type,
/// and `data` against the variant of its payload mode.
fn check(doc: &Value, delivery: &Received, mode: &str) {
    let body = &delivery.json;
    let event = body["type"].as_str().expect("a type");
    let declared = &doc["webhooks"][event]["post"]["requestBody"]["content"]["application/json"];
    assert!(
        declared.is_object(),
        "{event} is not declared in the webhooks object"
    );
    let envelope = component(&declared["schema"]);
    let found = errors(&validator(doc, envelope), body);
    assert!(
        found.is_empty(),
        "{mode} {event} does not match {envelope}: {found:?}\n{body:#}"
    );

    let variants = doc["components"]["schemas"][envelope]["properties"]["data"]["oneOf"]
        .as_array()
        .expect("data is full | id-only");
    let index = ["full", "id_only", "fhir"]
        .iter()
        .position(|m| *m == mode)
        .unwrap();
    let variant = component(&variants[index]);
    let found = errors(&validator(doc, variant), &body["data"]);
    assert!(
        found.is_empty(),
        "{mode} {event} data does not match {variant}: {found:?}"
    );
    assert_eq!(delivery.header("ehrs-event-type"), event);
    assert_eq!(
        delivery.header("ehrs-sequence"),
        body["sequence"].to_string()
    );
}

/// Walks every write that emits today: camps, consultations, queue, prescriptions.
async fn emit_everything(app: &TestApp) {
    let clinic = clinic(app).await;
    let camp = &clinic.camp_id;
    let mut body = camp_body();
    body["name"] = json!("Renamed camp");
    app.put(Role::Admin, &format!("/api/v1/medical-camps/{camp}"), &body)
        .await
        .expect(200);
    let attendance = format!("/api/v1/medical-camps/{camp}/update-attended-count");
    app.post(Role::Volunteer, &attendance, &json!({"delta": 1}))
        .await
        .expect(200);
    let patient = crate::support::people::create_patient(app, "P-9").await;
    app.patch(
        Role::Nurse,
        "/api/v1/patients/P-9",
        &json!({"phone": "+91 98200 00000"}),
    )
    .await
    .expect(200);
    crate::support::people::register_patient(app, "P-9", camp).await;
    let vitals = crate::support::people::vitals_body();
    crate::support::people::record_vitals(app, "P-9", &vitals).await;
    assert!(patient["id"].as_str().is_some());
    let doomed = create_camp(app).await;
    app.delete(
        Role::Admin,
        &format!("/api/v1/medical-camps/{}", id(&doomed)),
    )
    .await
    .expect(204);

    let consultation = clinic.consultation(app, "B-1").await;
    let consultation_id = id(&consultation);
    let entry = consultation["queue_entry"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.put(
        Role::Nurse,
        "/api/v1/queue/priority",
        &json!({"queue_entry_id": entry, "priority": "high"}),
    )
    .await
    .expect(200);
    move_queue(app, &entry, "in_consultation").await;
    app.put(
        Role::Doctor,
        &format!("/api/v1/consultations/{consultation_id}"),
        &json!({"diagnosis": "Cataract", "notes": "Refer"}),
    )
    .await
    .expect(200);

    let medicine = create_medicine(app, "Paracetamol", 100).await;
    let other = create_medicine(app, "Ibuprofen", 100).await;
    for update in [
        json!({"dispatch_status": "given"}),
        json!({"dispatch_status": "out_of_stock"}),
        json!({"replaced_by_medicine_id": id(&other)}),
    ] {
        let rx = prescribe(app, &consultation_id, &id(&medicine), 2).await;
        dispatch(app, &id(&rx), &update).await.expect(200);
    }
    assert_eq!(stock_of(app, &id(&medicine)).await, 98);
    move_queue(app, &entry, "completed").await;
}

db_test!(async fn every_delivered_payload_matches_its_declared_schema(app) {
    let doc: Value = app.get(Role::Admin, "/openapi.json").await.expect(200);
    let full = TestReceiver::start().await;
    let ids = TestReceiver::start().await;
    let fhir = TestReceiver::start().await;
    // Heartbeats every second: once the events stop, each receiver hears them too.
    let subscribe = |url: String, payload: &'static str| {
        let body = json!({"url": url, "payload": payload, "heartbeat_interval": "1s"});
        let app = &app;
        async move {
            let created = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &body).await.expect(201);
            created["id"].as_str().unwrap().to_string()
        }
    };
    let full_id = subscribe(full.url.clone(), "full").await;
    let ids_id = subscribe(ids.url.clone(), "id_only").await;
    let fhir_id = subscribe(fhir.url.clone(), "fhir").await;

    emit_everything(&app).await;
    // Each subscription also gets its own webhook.test, and at least one heartbeat.
    let emitted = app.emitted_event_types().await.len() + 2;
    for subscription in [&full_id, &ids_id, &fhir_id] {
        let path = format!("/api/v1/webhooks/subscriptions/{subscription}/test");
        app.post(Role::Admin, &path, &json!({})).await.expect(200);
    }

    for (receiver, mode) in [(&full, "full"), (&ids, "id_only"), (&fhir, "fhir")] {
        receiver.wait_for_distinct(emitted, PATIENCE).await;
        crate::support::eventually("a heartbeat", || async {
            receiver.received().iter().any(|r| r.json["type"] == "webhook.heartbeat")
        })
        .await;
        let received = receiver.received();
        for delivery in &received {
            check(&doc, delivery, mode);
            if mode == "fhir" {
                crate::fhir::assert_strict_fhir(&delivery.json["data"]);
            }
        }
        let seen: BTreeSet<&str> = received.iter().map(|r| r.json["type"].as_str().unwrap()).collect();
        let expected: BTreeSet<&str> = EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        assert_eq!(seen, expected, "{mode}: every event type that routes emit today was delivered and checked");
    }
});

db_test!(async fn the_document_and_the_docs_page_are_served_without_a_token(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["webhooks"].as_object().unwrap().len(), 19);
    assert_eq!(doc, serde_json::to_value(ehrs::router::document()).unwrap());

    let page = app.request(Method::GET, None, "/docs", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<base href=\"/docs/\">") && page.text.contains("swagger-ui-bundle.js"));
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let response = app.request(Method::GET, None, &format!("/docs/{asset}"), None).await;
        assert_eq!(response.status, 200, "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(response.text.contains("/openapi.json"), "the page loads our document");
        }
    }
    let trailing = app.request(Method::GET, None, "/docs/", None).await;
    assert_eq!(trailing.status, 200, "/docs/ serves the page too (no redirect loop)");
    let missing = app.request(Method::GET, None, "/docs/nope.js", None).await;
    assert_eq!(missing.status, 404);
});

/// `ehrs demo` end to end, on its own temporary SQLite database.
///
/// PLACEHOLDER(patients, vitals, doctors): until those routes are merged the walk stops at
/// step 2 with the server's 404, which is what "fails cleanly" means. After the merge,
/// delete the `Err` tolerance: the demo must then run to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_to_completion() {
    if let Err(error) = ehrs::demo::run().await {
        panic!("the demo failed: {error:#}");
    }
}
