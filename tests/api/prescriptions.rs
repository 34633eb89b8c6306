//! Prescriptions: writing, reading, dispensing with stock arithmetic, replacement, the
//! three mutually exclusive pharmacy events, concurrency, roles.

use crate::support::TestApp;
use crate::support::care::*;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

fn rx_path(id: &str) -> String {
    format!("/api/v1/consultations/prescriptions/{id}")
}

/// The prescription events a write added (there must be at most one).
async fn prescription_event(app: &TestApp, mark: &Mark) -> Option<(String, Value)> {
    let mut events: Vec<(String, Value)> = events_since(app, mark)
        .await
        .into_iter()
        .filter(|(t, _)| t.starts_with("prescription."))
        .collect();
    assert!(
        events.len() <= 1,
        "more than one prescription event: {events:?}"
    );
    events.pop()
}

db_test!(async fn prescribing_and_reading_prescriptions(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 50).await;
    let mark = mark(&app).await;
    let path = format!("/api/v1/consultations/{}/prescription/", id(&consultation));
    let rx = app.post(Role::Doctor, &path, &prescription_body(&id(&medicine), 10)).await.expect(201);

    assert!(id(&rx).starts_with("rx_"));
    assert_eq!(rx["consultation_id"], consultation["id"]);
    assert_eq!(rx["book_no"], "B-1");
    assert_eq!(rx["medicine_id"], medicine["id"]);
    assert_eq!(rx["dosage"], "1 tablet");
    assert_eq!(rx["frequency"], "twice a day");
    assert_eq!(rx["days"], 5);
    assert_eq!(rx["quantity"], 10);
    assert_eq!(rx["dispatch_status"], "pending");
    assert_eq!(rx["replaced_by_medicine_id"], json!(null));
    let events = events_since(&app, &mark).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "prescription.added");
    assert_eq!(events[0].1["data"], rx);
    assert_eq!(stock_of(&app, &id(&medicine)).await, 50, "prescribing does not take stock");

    assert_eq!(app.get(Role::Pharmacist, &rx_path(&id(&rx))).await.expect(200), rx);
    let of_consultation = app.get(Role::Volunteer, &format!("/api/v1/consultations/{}/prescriptions", id(&consultation))).await.expect(200);
    assert_eq!(of_consultation["total"], 1);
    assert_eq!(of_consultation["items"][0], rx);
    let pending = app.get(Role::Pharmacist, "/api/v1/prescriptions?dispatch_status=pending").await.expect(200);
    assert_eq!(pending["total"], 1);
    assert_eq!(pending["items"][0], rx);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/prescriptions?dispatch_status=given").await.expect(200)["total"], 0);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/prescriptions?book_no=B-1").await.expect(200)["total"], 1);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/prescriptions?book_no=B-2").await.expect(200)["total"], 0);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/prescriptions?dispatch_status=lost").await.status, 422);
    assert_eq!(app.get(Role::Pharmacist, &rx_path("rx_01jdq3v8m2x7c9k4t6w0y5z1ab")).await.status, 404);
    assert_eq!(app.get(Role::Pharmacist, &rx_path("rx_1")).await.status, 404);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/consultations/cons_01jdq3v8m2x7c9k4t6w0y5z1ab/prescriptions").await.status, 404);
});

db_test!(async fn prescribing_checks_its_input_and_failures_write_nothing(app) {
    let clinic = clinic(&app).await;
    let consultation = clinic.consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 50).await;
    let path = format!("/api/v1/consultations/{}/prescription", id(&consultation));
    let added_before = app.emitted_payloads("prescription.added").await.len();

    let bad = json!({"medicine_id": id(&medicine), "dosage": "", "frequency": "x".repeat(101), "days": 0, "quantity": 10_001});
    let refused = app.post(Role::Doctor, &path, &bad).await;
    assert_eq!(refused.status, 422);
    let fields: Vec<&str> = refused.body["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["dosage", "frequency", "days", "quantity"]);
    for (field, value) in [("dosage", json!("x".repeat(101))), ("days", json!(366)), ("quantity", json!(0)), ("days", json!("5"))] {
        let mut body = prescription_body(&id(&medicine), 1);
        body[field] = value;
        assert_eq!(app.post(Role::Doctor, &path, &body).await.status, 422, "{field}");
    }
    for medicine_id in ["med_01jdq3v8m2x7c9k4t6w0y5z1ab", "med_1", consultation["id"].as_str().unwrap()] {
        let refused = app.post(Role::Doctor, &path, &prescription_body(medicine_id, 1)).await;
        assert_eq!(refused.status, 422);
        assert_eq!(refused.error_code(), "invalid_reference");
        assert_eq!(refused.body["error"]["details"]["field"], "medicine_id");
    }
    let unknown = "/api/v1/consultations/cons_01jdq3v8m2x7c9k4t6w0y5z1ab/prescription";
    assert_eq!(app.post(Role::Doctor, unknown, &prescription_body(&id(&medicine), 1)).await.status, 404);
    assert_eq!(app.post(Role::Doctor, "/api/v1/consultations/cons_1/prescription", &prescription_body(&id(&medicine), 1)).await.status, 404);

    let cancelled = clinic.consultation(&app, "B-2").await;
    move_queue(&app, cancelled["queue_entry"]["id"].as_str().unwrap(), "cancelled").await;
    let closed = app.post(Role::Doctor, &format!("/api/v1/consultations/{}/prescription", id(&cancelled)), &prescription_body(&id(&medicine), 1)).await;
    assert_eq!(closed.status, 409);
    assert_eq!(closed.error_code(), "consultation_closed");
    assert_eq!(app.count_rows("prescriptions").await, 0);
    assert_eq!(app.emitted_payloads("prescription.added").await.len(), added_before);

    // Bounds are inclusive, and a completed consultation still takes prescriptions.
    let mut edge = prescription_body(&id(&medicine), 10_000);
    edge["days"] = json!(365);
    edge["dosage"] = json!("x".repeat(100));
    app.post(Role::Doctor, &path, &edge).await.expect(201);
    let entry = consultation["queue_entry"]["id"].as_str().unwrap();
    move_queue(&app, entry, "in_consultation").await;
    move_queue(&app, entry, "completed").await;
    let mut minimal = prescription_body(&id(&medicine), 1);
    minimal["days"] = json!(1);
    app.post(Role::Doctor, &path, &minimal).await.expect(201);
    assert_eq!(app.emitted_payloads("prescription.added").await.len(), added_before + 2);
});

db_test!(async fn dispensing_takes_stock_once_and_is_final(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&medicine), 4).await;

    let mark1 = mark(&app).await;
    let given = dispatch(&app, &id(&rx), &json!({"dispatch_status": "given"})).await.expect(200);
    assert_eq!(given["dispatch_status"], "given");
    assert_eq!(stock_of(&app, &id(&medicine)).await, 6);
    let (event, payload) = prescription_event(&app, &mark1).await.unwrap();
    assert_eq!(event, "prescription.dispensed");
    assert_eq!(payload["data"], given);

    let other = create_medicine(&app, "Crocin", 10).await;
    let mark2 = mark(&app).await;
    for body in [json!({"dispatch_status": "given"}), json!({"dispatch_status": "pending"}), json!({"dispatch_status": "out_of_stock"}), json!({"replaced_by_medicine_id": id(&other)})] {
        let refused = dispatch(&app, &id(&rx), &body).await;
        assert_eq!(refused.status, 409, "{body}");
        assert_eq!(refused.error_code(), "already_dispensed");
    }
    assert_eq!(stock_of(&app, &id(&medicine)).await, 6);
    assert_eq!(stock_of(&app, &id(&other)).await, 10);
    assert!(events_since(&app, &mark2).await.is_empty());
    assert_eq!(app.get(Role::Admin, &rx_path(&id(&rx))).await.expect(200), given);
});

db_test!(async fn insufficient_stock_is_refused_and_writes_nothing(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 3).await;
    let rx = prescribe(&app, &id(&consultation), &id(&medicine), 5).await;

    let mark1 = mark(&app).await;
    let refused = dispatch(&app, &id(&rx), &json!({"dispatch_status": "given"})).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.error_code(), "insufficient_stock");
    assert_eq!(refused.body["error"]["details"], json!({"medicine_id": id(&medicine), "available": 3, "requested": 5}));
    assert_eq!(stock_of(&app, &id(&medicine)).await, 3);
    assert_eq!(app.get(Role::Admin, &rx_path(&id(&rx))).await.expect(200), rx);
    assert!(events_since(&app, &mark1).await.is_empty());

    // Restocked, it goes through and empties the shelf exactly.
    let restock = json!({"name": "Paracetamol", "form": "tablet", "strength": "500 mg", "stock_quantity": 5});
    app.put(Role::Pharmacist, &format!("/api/v1/medicines/{}", id(&medicine)), &restock).await.expect(200);
    dispatch(&app, &id(&rx), &json!({"dispatch_status": "given"})).await.expect(200);
    assert_eq!(stock_of(&app, &id(&medicine)).await, 0);
});

db_test!(async fn out_of_stock_does_not_take_stock(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&medicine), 4).await;

    let mark1 = mark(&app).await;
    let out = dispatch(&app, &id(&rx), &json!({"dispatch_status": "out_of_stock"})).await.expect(200);
    assert_eq!(out["dispatch_status"], "out_of_stock");
    assert_eq!(stock_of(&app, &id(&medicine)).await, 10);
    let (event, payload) = prescription_event(&app, &mark1).await.unwrap();
    assert_eq!(event, "prescription.out_of_stock");
    assert_eq!(payload["data"], out);

    // The same status again changes nothing and says nothing.
    let mark2 = mark(&app).await;
    assert_eq!(dispatch(&app, &id(&rx), &json!({"dispatch_status": "out_of_stock"})).await.expect(200), out);
    assert!(events_since(&app, &mark2).await.is_empty());
    let back = dispatch(&app, &id(&rx), &json!({"dispatch_status": "pending"})).await.expect(200);
    assert_eq!(back["dispatch_status"], "pending");
    assert!(events_since(&app, &mark2).await.is_empty(), "back to pending emits nothing");
    assert_eq!(stock_of(&app, &id(&medicine)).await, 10);
});

db_test!(async fn a_replacement_takes_the_replacements_stock(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let prescribed = create_medicine(&app, "Paracetamol", 10).await;
    let substitute = create_medicine(&app, "Crocin", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&prescribed), 2).await;

    let mark1 = mark(&app).await;
    let replaced = dispatch(&app, &id(&rx), &json!({"replaced_by_medicine_id": id(&substitute)})).await.expect(200);
    assert_eq!(replaced["replaced_by_medicine_id"], substitute["id"]);
    assert_eq!(replaced["medicine_id"], prescribed["id"]);
    assert_eq!(replaced["dispatch_status"], "pending");
    let (event, payload) = prescription_event(&app, &mark1).await.unwrap();
    assert_eq!(event, "prescription.replaced");
    assert_eq!(payload["data"], replaced);

    dispatch(&app, &id(&rx), &json!({"dispatch_status": "given"})).await.expect(200);
    assert_eq!(stock_of(&app, &id(&substitute)).await, 8);
    assert_eq!(stock_of(&app, &id(&prescribed)).await, 10);

    // Replaced and given in one update: one event (replaced), the substitute's stock taken.
    let rx2 = prescribe(&app, &id(&consultation), &id(&prescribed), 3).await;
    let mark2 = mark(&app).await;
    let both = json!({"dispatch_status": "given", "replaced_by_medicine_id": id(&substitute)});
    let given = dispatch(&app, &id(&rx2), &both).await.expect(200);
    assert_eq!(given["dispatch_status"], "given");
    assert_eq!(prescription_event(&app, &mark2).await.unwrap().0, "prescription.replaced");
    assert_eq!(stock_of(&app, &id(&substitute)).await, 5);
    assert_eq!(stock_of(&app, &id(&prescribed)).await, 10);

    // A replacement with too little stock refuses the whole update.
    let rx3 = prescribe(&app, &id(&consultation), &id(&prescribed), 6).await;
    let refused = dispatch(&app, &id(&rx3), &both).await;
    assert_eq!(refused.error_code(), "insufficient_stock");
    assert_eq!(refused.body["error"]["details"]["medicine_id"], substitute["id"]);
    assert_eq!(app.get(Role::Admin, &rx_path(&id(&rx3))).await.expect(200), rx3);
});

db_test!(async fn bad_updates_are_refused_and_write_nothing(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&medicine), 2).await;
    let mark1 = mark(&app).await;

    let same = dispatch(&app, &id(&rx), &json!({"replaced_by_medicine_id": id(&medicine)})).await;
    assert_eq!(same.status, 422);
    assert_eq!(same.body["error"]["details"]["fields"][0]["field"], "replaced_by_medicine_id");
    for replacement in ["med_01jdq3v8m2x7c9k4t6w0y5z1ab", "med_1"] {
        let unknown = dispatch(&app, &id(&rx), &json!({"replaced_by_medicine_id": replacement})).await;
        assert_eq!(unknown.status, 422);
        assert_eq!(unknown.error_code(), "invalid_reference");
        assert_eq!(unknown.body["error"]["details"]["field"], "replaced_by_medicine_id");
    }
    for body in [json!({}), json!({"dispatch_status": null, "replaced_by_medicine_id": null})] {
        let empty = dispatch(&app, &id(&rx), &body).await;
        assert_eq!(empty.status, 422);
        assert_eq!(empty.error_code(), "validation_failed");
    }
    assert_eq!(dispatch(&app, &id(&rx), &json!({"dispatch_status": "lost"})).await.status, 422);
    assert_eq!(dispatch(&app, &id(&rx), &json!({"dispatch_status": "given", "medicine_id": "x"})).await.status, 422);
    assert_eq!(dispatch(&app, "rx_01jdq3v8m2x7c9k4t6w0y5z1ab", &json!({"dispatch_status": "given"})).await.status, 404);
    assert_eq!(dispatch(&app, "rx_1", &json!({"dispatch_status": "given"})).await.status, 404);

    assert_eq!(app.get(Role::Admin, &rx_path(&id(&rx))).await.expect(200), rx);
    assert_eq!(stock_of(&app, &id(&medicine)).await, 10);
    assert!(events_since(&app, &mark1).await.is_empty());
});

db_test!(async fn the_three_pharmacy_events_are_mutually_exclusive(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let prescribed = create_medicine(&app, "Paracetamol", 100).await;
    let substitute = id(&create_medicine(&app, "Crocin", 100).await);
    let another = id(&create_medicine(&app, "Dolo", 100).await);
    // (setup updates, the update under test, the one event expected)
    let cases: Vec<(Vec<Value>, Value, Option<&str>)> = vec![
        (vec![], json!({"dispatch_status": "given"}), Some("prescription.dispensed")),
        (vec![], json!({"dispatch_status": "out_of_stock"}), Some("prescription.out_of_stock")),
        (vec![], json!({"replaced_by_medicine_id": substitute}), Some("prescription.replaced")),
        (vec![], json!({"dispatch_status": "given", "replaced_by_medicine_id": substitute}), Some("prescription.replaced")),
        (vec![], json!({"dispatch_status": "out_of_stock", "replaced_by_medicine_id": substitute}), Some("prescription.replaced")),
        (vec![], json!({"dispatch_status": "pending"}), None),
        (vec![json!({"dispatch_status": "out_of_stock"})], json!({"dispatch_status": "pending"}), None),
        (vec![json!({"dispatch_status": "out_of_stock"})], json!({"dispatch_status": "given"}), Some("prescription.dispensed")),
        (vec![json!({"replaced_by_medicine_id": substitute})], json!({"dispatch_status": "given", "replaced_by_medicine_id": substitute}), Some("prescription.dispensed")),
        (vec![json!({"replaced_by_medicine_id": substitute})], json!({"replaced_by_medicine_id": another}), Some("prescription.replaced")),
        (vec![json!({"replaced_by_medicine_id": substitute})], json!({"dispatch_status": "out_of_stock"}), Some("prescription.out_of_stock")),
    ];
    for (setup, update, expected) in cases {
        let rx = prescribe(&app, &id(&consultation), &id(&prescribed), 1).await;
        for step in &setup {
            dispatch(&app, &id(&rx), step).await.expect(200);
        }
        let mark = mark(&app).await;
        let after = dispatch(&app, &id(&rx), &update).await.expect(200);
        let event = prescription_event(&app, &mark).await;
        assert_eq!(event.as_ref().map(|(t, _)| t.as_str()), expected, "{setup:?} then {update}");
        if let Some((_, payload)) = event {
            assert_eq!(payload["data"], after);
        }
    }
});

db_test!(async fn the_last_unit_is_dispensed_once(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 1).await;
    let first = prescribe(&app, &id(&consultation), &id(&medicine), 1).await;
    let second = prescribe(&app, &id(&consultation), &id(&medicine), 1).await;
    let mark = mark(&app).await;
    let give = json!({"dispatch_status": "given"});
    let (first_id, second_id) = (id(&first), id(&second));
    let (a, b) = tokio::join!(dispatch(&app, &first_id, &give), dispatch(&app, &second_id, &give));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let loser = if a.status == 409 { (a, &first) } else { (b, &second) };
    assert_eq!(loser.0.error_code(), "insufficient_stock");
    assert_eq!(app.get(Role::Admin, &rx_path(&id(loser.1))).await.expect(200)["dispatch_status"], "pending");
    assert_eq!(stock_of(&app, &id(&medicine)).await, 0);
    assert_eq!(types_since(&app, &mark).await, ["prescription.dispensed"]);
});

db_test!(async fn one_prescription_dispensed_twice_at_once_is_given_once(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let medicine = create_medicine(&app, "Paracetamol", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&medicine), 3).await;
    let mark = mark(&app).await;
    let give = json!({"dispatch_status": "given"});
    let rx_id = id(&rx);
    let (a, b) = tokio::join!(dispatch(&app, &rx_id, &give), dispatch(&app, &rx_id, &give));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(if a.status == 409 { a.error_code() } else { b.error_code() }, "already_dispensed");
    assert_eq!(stock_of(&app, &id(&medicine)).await, 7);
    assert_eq!(types_since(&app, &mark).await, ["prescription.dispensed"]);
});

db_test!(async fn prescription_writes_by_role(app) {
    let app = &app;
    let consultation = &open_consultation(app, "B-1").await;
    let medicine = &create_medicine(app, "Paracetamol", 100).await;
    let path = &format!("/api/v1/consultations/{}/prescription", id(consultation));
    check_roles(app, &[Role::Admin, Role::Doctor], 201, |_| async move {
        Write::new(Method::POST, path, prescription_body(&id(medicine), 1))
    })
    .await;
    check_roles(app, &[Role::Admin, Role::Pharmacist], 200, |_| async move {
        let rx = prescribe(app, &id(consultation), &id(medicine), 1).await;
        Write::new(Method::PUT, rx_path(&id(&rx)), json!({"dispatch_status": "given"}))
    })
    .await;
});
