//! FHIR R4 payloads (`payload: "fhir"`): every event type arrives as a resource that a
//! FHIR R4 model library reads strictly and writes back unchanged, with the codes, units
//! and references the README's mapping table promises.

use crate::camps::create_camp;
use crate::support::care::{create_medicine, dispatch, id, move_queue, prescribe, seed_doctor};
use crate::support::{Received, TestApp, TestReceiver, eventually};
use ehrs::auth::Role;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

/// Reads `resource` with fhirkit's strict R4 reader (any unknown element, missing required
/// element or malformed value fails), writes it back and compares; then checks what the
/// library does not: ids and references have FHIR's form, and the coded statuses are in
/// their required value sets.
pub(crate) fn assert_strict_fhir(resource: &Value) {
    let text = resource.to_string();
    let parsed = fhirkit::from_json_strict::<fhirkit::r4::Resource>(&text)
        .unwrap_or_else(|err| panic!("not strict FHIR R4: {err}\n{resource:#}"));
    let written: Value = serde_json::from_str(&fhirkit::to_json(&parsed)).unwrap();
    assert_eq!(&written, resource, "the resource does not round-trip");
    assert!(
        resource["meta"]["lastUpdated"].is_string(),
        "meta.lastUpdated: {resource}"
    );
    check_ids_and_references(resource);
    check_required_codes(resource);
}

fn check_ids_and_references(value: &Value) {
    let id_form = |id: &str| {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match value {
        Value::Object(map) => {
            if map.contains_key("resourceType") {
                let id = map
                    .get("id")
                    .and_then(Value::as_str)
                    .expect("every resource has an id");
                assert!(id_form(id), "resource id {id} is not a FHIR id");
            }
            if let Some(reference) = map.get("reference").and_then(Value::as_str) {
                let ok = match reference.strip_prefix('#') {
                    Some(local) => id_form(local),
                    None => reference.split_once('/').is_some_and(|(kind, id)| {
                        kind.starts_with(char::is_uppercase) && id_form(id)
                    }),
                };
                assert!(ok, "reference {reference} is not Type/id");
            }
            map.values().for_each(check_ids_and_references);
        }
        Value::Array(items) => items.iter().for_each(check_ids_and_references),
        _ => {}
    }
}

/// The codes of required bindings, which the model library takes as any code.
fn check_required_codes(resource: &Value) {
    let status = resource["status"].as_str();
    let allowed: &[&str] = match resource["resourceType"].as_str().unwrap() {
        "Patient" => {
            assert!(
                ["male", "female", "other", "unknown"]
                    .contains(&resource["gender"].as_str().unwrap())
            );
            return;
        }
        "Encounter" => &[
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
        "Observation" => &["registered", "preliminary", "final", "amended"],
        "MedicationRequest" => {
            assert_eq!(resource["intent"], "order");
            &[
                "active",
                "on-hold",
                "cancelled",
                "completed",
                "entered-in-error",
                "stopped",
                "draft",
                "unknown",
            ]
        }
        "MedicationDispense" => &[
            "preparation",
            "in-progress",
            "cancelled",
            "on-hold",
            "completed",
            "entered-in-error",
            "stopped",
            "declined",
            "unknown",
        ],
        "Location" => &["active", "suspended", "inactive"],
        "Bundle" => {
            assert_eq!(resource["type"], "collection");
            for entry in resource["entry"].as_array().unwrap() {
                assert!(entry["resource"]["meta"]["lastUpdated"].is_string());
                check_required_codes(&entry["resource"]);
            }
            return;
        }
        _ => return,
    };
    assert!(
        allowed.contains(&status.unwrap()),
        "status {status:?} of {resource}"
    );
}

/// A `fhir` subscription to every event type, and a `full` one beside it.
async fn subscribe_fhir_and_full(app: &TestApp) -> (TestReceiver, String, TestReceiver) {
    let fhir = TestReceiver::start().await;
    let full = TestReceiver::start().await;
    let (_, secret) = app.subscribe(&fhir.url, &[], "fhir").await;
    app.subscribe(&full.url, &[], "full").await;
    (fhir, secret, full)
}

/// Everything a receiver has got so far, in sequence order, once `count` have arrived.
async fn in_order(receiver: &TestReceiver, count: usize) -> Vec<Received> {
    let mut got = receiver.wait_for_distinct(count, PATIENCE).await;
    got.sort_by_key(|r| r.json["sequence"].as_i64());
    got
}

fn data_of<'a>(got: &'a [Received], event_type: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|r| r.json["type"] == event_type)
        .map(|r| &r.json["data"])
        .collect()
}

async fn register_patient(app: &TestApp, book_no: &str, body: Value) -> Value {
    let mut body = body;
    body["book_no"] = json!(book_no);
    app.post(Role::Nurse, "/api/v1/patients", &body)
        .await
        .expect(201)
}

async fn register_at(app: &TestApp, book_no: &str, camp_id: &str) -> Value {
    let path = format!("/api/v1/patients/{book_no}/register");
    app.post(Role::Nurse, &path, &json!({"camp_id": camp_id}))
        .await
        .expect(201)
}

async fn record_vitals(app: &TestApp, book_no: &str, body: Value) -> Value {
    let path = format!("/api/v1/patients/vitals/{book_no}");
    let answer = app.put(Role::Nurse, &path, &body).await;
    assert!(
        answer.status == 200 || answer.status == 201,
        "{}",
        answer.status
    );
    answer.body
}

async fn assign(
    app: &TestApp,
    book_no: &str,
    camp_id: &str,
    doctor_id: &str,
    priority: &str,
) -> Value {
    let body = json!({"book_no": book_no, "doctor_id": doctor_id, "camp_id": camp_id,
                      "complaint": "Fever for three days", "priority": priority});
    app.post(Role::Nurse, "/api/v1/doctors/assign-doctor", &body)
        .await
        .expect(201)
}

/// The three things a pharmacy does in `consultation`: 10 Paracetamol given, 2 ORS out
/// of stock, 3 ORS replaced by Paracetamol. Returns the given and the replaced
/// prescriptions.
async fn pharmacy_outcomes(app: &TestApp, consultation: &str) -> (Value, Value) {
    let paracetamol = create_medicine(app, "Paracetamol", 50).await;
    let ors = create_medicine(app, "ORS", 0).await;
    let given = prescribe(app, consultation, &id(&paracetamol), 10).await;
    dispatch(app, &id(&given), &json!({"dispatch_status": "given"}))
        .await
        .expect(200);
    let lacking = prescribe(app, consultation, &id(&ors), 2).await;
    dispatch(
        app,
        &id(&lacking),
        &json!({"dispatch_status": "out_of_stock"}),
    )
    .await
    .expect(200);
    let replaced = prescribe(app, consultation, &id(&ors), 3).await;
    dispatch(
        app,
        &id(&replaced),
        &json!({"replaced_by_medicine_id": id(&paracetamol)}),
    )
    .await
    .expect(200);
    (given, replaced)
}

fn reference(resource_type: &str, our_id: &Value) -> String {
    format!(
        "{resource_type}/{}",
        our_id.as_str().unwrap().replacen('_', "-", 1)
    )
}

db_test!(async fn every_event_type_arrives_as_a_strict_fhir_r4_resource(app) {
    let (fhir, secret, full) = subscribe_fhir_and_full(&app).await;
    let camp = create_camp(&app).await;
    let camp_id = camp["id"].as_str().unwrap().to_string();
    let mut renamed = crate::camps::camp_body();
    renamed["name"] = json!("Pune Health Camp (day 2)");
    app.put(Role::Admin, &format!("/api/v1/medical-camps/{camp_id}"), &renamed).await.expect(200);
    app.post(Role::Nurse, &format!("/api/v1/medical-camps/{camp_id}/update-attended-count"), &json!({"delta": 1}))
        .await
        .expect(200);
    let patient = register_patient(&app, "FHIR-1", json!({"name": "Asha Patil", "sex": "female", "age": 34,
        "phone": "+91 98220 12345", "address": "12 Station Road, Pune"})).await;
    app.patch(Role::Nurse, "/api/v1/patients/FHIR-1", &json!({"phone": "+91 98220 54321"})).await.expect(200);
    register_at(&app, "FHIR-1", &camp_id).await;
    record_vitals(&app, "FHIR-1", json!({"camp_id": camp_id, "bp": "128/84", "pulse": 76})).await;
    let doctor = seed_doctor(&app).await;
    let consultation = assign(&app, "FHIR-1", &camp_id, &doctor, "normal").await;
    let entry = consultation["queue_entry"]["id"].as_str().unwrap().to_string();
    app.put(Role::Nurse, "/api/v1/queue/priority", &json!({"queue_entry_id": entry, "priority": "high"})).await.expect(200);
    move_queue(&app, &entry, "in_consultation").await;
    let consultation_path = format!("/api/v1/consultations/{}", id(&consultation));
    app.put(Role::Doctor, &consultation_path, &json!({"diagnosis": "Viral fever"})).await.expect(200);
    pharmacy_outcomes(&app, &id(&consultation)).await;
    move_queue(&app, &entry, "completed").await;
    let gone = create_camp(&app).await;
    app.delete(Role::Admin, &format!("/api/v1/medical-camps/{}", id(&gone))).await.expect(204);

    let full_got = in_order(&full, 21).await;
    let got = in_order(&fhir, 21).await;
    let types: BTreeSet<&str> = got.iter().map(|r| r.json["type"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = ehrs::outbound::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .filter(|t| !t.starts_with("webhook."))
        .collect();
    assert_eq!(types, expected, "every clinical event type arrived");
    for received in &got {
        assert!(received.verify(&secret));
        assert_strict_fhir(&received.json["data"]);
    }
    // The same events, ids and sequence numbers as the full subscription's.
    let identity = |got: &[Received]| -> Vec<(Value, Value, Value)> {
        got.iter().map(|r| (r.json["event_id"].clone(), r.json["type"].clone(), r.json["sequence"].clone())).collect()
    };
    assert_eq!(identity(&got), identity(&full_got));
    assert_eq!(got.iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=21).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.header("ehrs-sequence").to_string()).collect::<Vec<_>>(),
               (1..=21).map(|n| n.to_string()).collect::<Vec<_>>());

    // Every reference resolves to a resource another event carries.
    let patient_ref = reference("Patient", &patient["id"]);
    let camp_ref = reference("Location", &camp["id"]);
    let encounter_ref = reference("Encounter", &consultation["id"]);
    let fhir_patient = data_of(&got, "patient.registered")[0];
    assert_eq!(format!("Patient/{}", fhir_patient["id"].as_str().unwrap()), patient_ref);
    assert_eq!(fhir_patient["identifier"], json!([{"use": "usual", "system": "urn:ehrs:book-no", "value": "FHIR-1"}]));
    assert!(fhir_patient.get("birthDate").is_none(), "an age alone invents no date");
    assert_eq!(fhir_patient["extension"][0]["valueAge"], json!({"value": 34, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}));
    assert_eq!(data_of(&got, "patient.updated")[0]["telecom"], json!([{"system": "phone", "value": "+91 98220 54321"}]));
    let location = data_of(&got, "camp.created")[0];
    assert_eq!(format!("Location/{}", location["id"].as_str().unwrap()), camp_ref);
    let visit = data_of(&got, "patient.camp_registered")[0];
    assert_eq!(visit["subject"]["reference"], patient_ref.as_str());
    assert_eq!(visit["location"][0]["location"]["reference"], camp_ref.as_str());
    for observation in data_of(&got, "vitals.recorded")[0]["entry"].as_array().unwrap() {
        assert_eq!(observation["resource"]["subject"]["reference"], patient_ref.as_str());
    }
    for event in ["consultation.created", "consultation.updated", "consultation.completed", "queue.status_changed", "queue.priority_changed"] {
        for encounter in data_of(&got, event) {
            assert_eq!(format!("Encounter/{}", encounter["id"].as_str().unwrap()), encounter_ref, "{event}");
            assert_eq!(encounter["subject"]["reference"], patient_ref.as_str());
            assert_eq!(encounter["location"][0]["location"]["reference"], camp_ref.as_str());
            assert_eq!(encounter["participant"][0]["individual"]["reference"], reference("Practitioner", &json!(doctor)).as_str());
        }
    }
    for event in ["prescription.added", "prescription.dispensed", "prescription.out_of_stock", "prescription.replaced"] {
        for resource in data_of(&got, event) {
            assert_eq!(resource["subject"]["reference"], patient_ref.as_str(), "{event}");
            let encounter = resource.get("encounter").or(resource.get("context")).unwrap();
            assert_eq!(encounter["reference"], encounter_ref.as_str(), "{event}");
        }
    }
    assert_eq!(data_of(&got, "camp.deleted")[0]["status"], "inactive");
    assert_eq!(data_of(&got, "camp.attendance_updated")[0]["status"], "active");
});

db_test!(async fn the_test_event_and_the_heartbeat_are_valid_fhir_too(app) {
    let receiver = TestReceiver::start().await;
    let (subscription, _) = app.subscribe(&receiver.url, &[], "fhir").await;
    app.post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{subscription}/test"), &json!({}))
        .await
        .expect(200);
    let got = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].json["type"], "webhook.test");
    let data = &got[0].json["data"];
    assert_strict_fhir(data);
    assert_eq!(data["resourceType"], "Parameters");
    assert_eq!(data["parameter"][1], json!({"name": "subscription_id", "valueString": subscription}));

    // A heartbeat, rendered by the same function the sender uses.
    let heartbeat = ehrs::outbound::Event::new(
        ehrs::outbound::EventType::WebhookHeartbeat,
        &json!({"subscription_id": subscription, "last_sequence": 1, "heartbeat_interval": "10m"}),
    );
    let resource = ehrs::outbound::fhir::resource(
        &ehrs::outbound::fhir::StoredEvent {
            event_type: heartbeat.event_type,
            event_id: "evt_01jdq3v8m2x7c9k4t6w0y5z1ab",
            created_at: "2026-12-04T10:00:00.000Z",
            data: &heartbeat.data,
            context: None,
        },
        &Default::default(),
    )
    .unwrap();
    assert_strict_fhir(&resource);
    assert_eq!(resource["parameter"][2], json!({"name": "last_sequence", "valueInteger": 1}));
});

/// The LOINC code, UCUM unit and value of each Observation of a vitals Bundle, by code.
fn observations(bundle: &Value) -> BTreeMap<String, Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let resource = &entry["resource"];
            let coding = &resource["code"]["coding"][0];
            assert_eq!(coding["system"], "http://loinc.org");
            assert_eq!(resource["category"][0]["coding"][0]["code"], "vital-signs");
            let quantity = |q: &Value| {
                assert_eq!(q["system"], "http://unitsofmeasure.org");
                json!([q["value"], q["code"]])
            };
            let value = match resource.get("component") {
                Some(components) => json!(
                    components
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| json!([
                            c["code"]["coding"][0]["code"],
                            quantity(&c["valueQuantity"])
                        ]))
                        .collect::<Vec<_>>()
                ),
                None => quantity(&resource["valueQuantity"]),
            };
            (coding["code"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

db_test!(async fn vitals_become_one_coded_observation_per_measured_value(app) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &["vitals.recorded"], "fhir").await;
    let patient = register_patient(&app, "VIT-1", json!({"name": "Ravi", "sex": "male", "birth_date": "1980-04-12"})).await;
    let some = record_vitals(&app, "VIT-1", json!({"bp": "120/80", "spo2": 97, "extra_note": "Taken seated"})).await;
    record_vitals(&app, "VIT-1", json!({"bp": "135/88", "pulse": 72, "temperature": 37.8, "weight": 61.5,
        "height": 168, "spo2": 99, "blood_sugar": 110})).await;

    let got = in_order(&receiver, 2).await;
    let partial = &got[0].json["data"];
    assert_strict_fhir(partial);
    assert_eq!(partial["resourceType"], "Bundle");
    assert_eq!(partial["id"], some["id"].as_str().unwrap().replacen('_', "-", 1));
    assert_eq!(
        observations(partial),
        BTreeMap::from([
            ("85354-9".to_string(), json!([["8480-6", [120, "mm[Hg]"]], ["8462-4", [80, "mm[Hg]"]]])),
            ("2708-6".to_string(), json!([97, "%"])),
        ]),
        "only what was measured: no zero, no invented value"
    );
    for entry in partial["entry"].as_array().unwrap() {
        assert_eq!(entry["resource"]["note"], json!([{"text": "Taken seated"}]));
        assert_eq!(entry["resource"]["subject"]["reference"], reference("Patient", &patient["id"]).as_str());
        assert_eq!(entry["resource"]["effectiveDateTime"], some["created_at"]);
    }

    let complete = &got[1].json["data"];
    assert_strict_fhir(complete);
    assert_eq!(
        observations(complete),
        BTreeMap::from([
            ("85354-9".to_string(), json!([["8480-6", [135, "mm[Hg]"]], ["8462-4", [88, "mm[Hg]"]]])),
            ("8867-4".to_string(), json!([72, "/min"])),
            ("8310-5".to_string(), json!([37.8, "Cel"])),
            ("29463-7".to_string(), json!([61.5, "kg"])),
            ("8302-2".to_string(), json!([168.0, "cm"])),
            ("2708-6".to_string(), json!([99, "%"])),
            ("2339-0".to_string(), json!([110.0, "mg/dL"])),
        ])
    );
    assert!(complete["entry"][0]["resource"].get("note").is_none());
});

db_test!(async fn a_visit_moves_its_encounter_from_planned_to_finished_or_cancelled(app) {
    let receiver = TestReceiver::start().await;
    let types = ["consultation.created", "consultation.updated", "consultation.completed", "queue.status_changed", "queue.priority_changed"];
    app.subscribe(&receiver.url, &types, "fhir").await;
    let camp = create_camp(&app).await;
    let doctor = seed_doctor(&app).await;
    for (book_no, priority) in [("ENC-1", "emergency"), ("ENC-2", "normal")] {
        register_patient(&app, book_no, json!({"name": "Visitor", "sex": "other", "age": 50})).await;
        register_at(&app, book_no, &id(&camp)).await;
        let consultation = assign(&app, book_no, &id(&camp), &doctor, priority).await;
        let entry = consultation["queue_entry"]["id"].as_str().unwrap().to_string();
        if book_no == "ENC-1" {
            move_queue(&app, &entry, "in_consultation").await;
            let path = format!("/api/v1/consultations/{}", id(&consultation));
            app.put(Role::Doctor, &path, &json!({"diagnosis": "Asthma"})).await.expect(200);
            move_queue(&app, &entry, "completed").await;
        } else {
            move_queue(&app, &entry, "cancelled").await;
        }
    }
    // ENC-1: created, queue moved, updated, queue moved + completed; ENC-2: created, moved.
    let got = in_order(&receiver, 7).await;
    let mut statuses: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for received in &got {
        let encounter = &received.json["data"];
        assert_strict_fhir(encounter);
        statuses.entry(encounter["id"].as_str().unwrap().to_string()).or_default().push((
            received.json["type"].as_str().unwrap().to_string(),
            encounter["status"].as_str().unwrap().to_string(),
            encounter["priority"]["coding"][0]["code"].as_str().unwrap().to_string(),
        ));
    }
    let journeys: Vec<Vec<(String, String, String)>> = statuses.into_values().collect();
    let step = |t: &str, s: &str, p: &str| (t.to_string(), s.to_string(), p.to_string());
    assert!(journeys.contains(&vec![
        step("consultation.created", "planned", "EM"),
        step("queue.status_changed", "in-progress", "EM"),
        step("consultation.updated", "in-progress", "EM"),
        step("queue.status_changed", "finished", "EM"),
        step("consultation.completed", "finished", "EM"),
    ]), "{journeys:?}");
    assert!(journeys.contains(&vec![
        step("consultation.created", "planned", "R"),
        step("queue.status_changed", "cancelled", "R"),
    ]), "{journeys:?}");
    let completed = got.iter().find(|r| r.json["type"] == "consultation.completed").unwrap();
    let encounter = &completed.json["data"];
    assert_eq!(encounter["reasonCode"], json!([{"text": "Fever for three days"}]));
    assert_eq!(encounter["contained"][0]["code"], json!({"text": "Asthma"}));
    assert_eq!(encounter["diagnosis"][0]["condition"]["reference"], "#diagnosis");
    assert!(encounter["period"]["end"].is_string(), "a finished visit has ended");
    // A queue move carries the whole Encounter too, so a receiver can store it as is.
    let moved = got
        .iter()
        .filter(|r| r.json["type"] == "queue.status_changed" && r.json["data"]["status"] == "finished")
        .map(|r| &r.json["data"])
        .next()
        .unwrap();
    assert_eq!(moved["reasonCode"], encounter["reasonCode"]);
    assert_eq!(moved["contained"], encounter["contained"]);
});

db_test!(async fn the_three_pharmacy_outcomes_arrive_as_dispenses_and_a_replacing_request(app) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &["prescription.added", "prescription.dispensed", "prescription.out_of_stock", "prescription.replaced"], "fhir").await;
    let consultation = crate::support::care::open_consultation(&app, "RX-1").await;
    let (given, replaced) = pharmacy_outcomes(&app, &id(&consultation)).await;

    let got = in_order(&receiver, 6).await;
    got.iter().for_each(|r| assert_strict_fhir(&r.json["data"]));
    let request = data_of(&got, "prescription.added")[0];
    assert_eq!(request["resourceType"], "MedicationRequest");
    assert_eq!(request["status"], "active");
    assert_eq!(request["medicationCodeableConcept"], json!({"text": "Paracetamol 500 mg tablet"}));
    assert_eq!(request["dosageInstruction"], json!([{"text": "1 tablet, twice a day, for 5 days"}]));
    assert_eq!(request["dispenseRequest"]["quantity"], json!({"value": 10}));
    assert_eq!(request["dispenseRequest"]["expectedSupplyDuration"]["value"], 5);
    assert_eq!(request["requester"]["reference"], reference("Practitioner", &consultation["doctor_id"]).as_str());

    let dispensed = data_of(&got, "prescription.dispensed")[0];
    assert_eq!(dispensed["resourceType"], "MedicationDispense");
    assert_eq!(dispensed["status"], "completed");
    assert_eq!(dispensed["quantity"], json!({"value": 10}));
    assert_eq!(dispensed["authorizingPrescription"][0]["reference"], reference("MedicationRequest", &given["id"]).as_str());
    assert!(dispensed["whenHandedOver"].is_string());

    let declined = data_of(&got, "prescription.out_of_stock")[0];
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["statusReasonCodeableConcept"], json!({"text": "Out of stock"}));
    assert!(declined.get("whenHandedOver").is_none());

    let replacing = data_of(&got, "prescription.replaced")[0];
    assert_eq!(replacing["resourceType"], "MedicationRequest");
    assert_eq!(replacing["priorPrescription"]["reference"], reference("MedicationRequest", &replaced["id"]).as_str());
    assert_eq!(replacing["medicationCodeableConcept"], json!({"text": "Paracetamol 500 mg tablet"}));
    assert_ne!(replacing["id"].as_str().unwrap(), reference("MedicationRequest", &replaced["id"]).trim_start_matches("MedicationRequest/"));
});

db_test!(async fn an_unknown_payload_mode_is_refused_with_the_three_modes(app) {
    let answer = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "http://127.0.0.1:9/x", "payload": "hl7v2"}))
        .await;
    assert_eq!(answer.status, 422);
    let text = answer.body.to_string();
    for mode in ["full", "id_only", "fhir"] {
        assert!(text.contains(mode), "{text}");
    }
    assert_eq!(app.count_rows("webhook_subscriptions").await, 0);
});

db_test!(async fn a_mode_change_applies_to_deliveries_rendered_after_it(app) {
    // The catch-up feed renders each delivery now, in the subscription's mode now, as the
    // sender does: an event emitted under `full` is served as FHIR after the change.
    let receiver = TestReceiver::start().await;
    let (subscription, _) = app.subscribe(&receiver.url, &["camp.created"], "full").await;
    let camp = create_camp(&app).await;
    let got = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].json["data"]["name"], camp["name"]);
    let path = format!("/api/v1/webhooks/subscriptions/{subscription}");
    app.put(Role::Admin, &path, &json!({"payload": "fhir"})).await.expect(200);
    let feed = app.get(Role::Admin, &format!("{path}/events?after=0")).await.expect(200);
    let body: Value = serde_json::from_str(feed["items"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["resourceType"], "Location");
    assert_eq!(body["event_id"], got[0].json["event_id"]);
    create_camp(&app).await;
    let got = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(got[1].json["data"]["resourceType"], "Location", "sent after the change: FHIR");
    eventually("both delivered", || async { receiver.received().len() == 2 }).await;
});

#[test]
fn the_strict_reader_refuses_what_fhir_does_not_allow() {
    for bad in [
        r#"{"resourceType":"Patient","id":"p","sex":"female"}"#,
        r#"{"resourceType":"Observation","id":"o","status":"final"}"#,
        r#"{"resourceType":"Patient","id":"p","birthDate":"12/04/1980"}"#,
        r#"{"resourceType":"Encounter","id":"e","status":"planned"}"#,
    ] {
        assert!(
            fhirkit::from_json_strict::<fhirkit::r4::Resource>(bad).is_err(),
            "{bad}"
        );
    }
}
