//! Consultations: assigning a doctor (references, registration, one open consultation per
//! camp), reads with filters, partial updates, roles, and the events they emit.

use crate::support::care::*;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::json;

const ASSIGN: &str = "/api/v1/doctors/assign-doctor";

db_test!(async fn assigning_a_doctor_opens_a_consultation_and_queues_the_patient(app) {
    let clinic = clinic(&app).await;
    let patient = clinic.patient(&app, "B-100").await;
    let mut body = clinic.assign_body("B-100");
    body["complaint"] = json!("fever for three days");
    body["priority"] = json!("high");
    let consultation = app.post(Role::Volunteer, &format!("{ASSIGN}/"), &body).await.expect(201);

    let id = id(&consultation);
    assert!(id.starts_with("cons_"));
    assert_eq!(consultation["patient_id"], patient.as_str());
    assert_eq!(consultation["book_no"], "B-100");
    assert_eq!(consultation["doctor_id"], clinic.doctor_id.as_str());
    assert_eq!(consultation["camp_id"], clinic.camp_id.as_str());
    assert_eq!(consultation["complaint"], "fever for three days");
    assert_eq!(consultation["diagnosis"], json!(null));
    assert_eq!(consultation["notes"], json!(null));
    assert_eq!(consultation["status"], "open");
    let entry = &consultation["queue_entry"];
    assert!(entry["id"].as_str().unwrap().starts_with("que_"));
    assert_eq!(entry["consultation_id"], id.as_str());
    assert_eq!(entry["camp_id"], clinic.camp_id.as_str());
    assert_eq!(entry["doctor_id"], clinic.doctor_id.as_str());
    assert_eq!(entry["status"], "waiting");
    assert_eq!(entry["priority"], "high");
    assert_eq!(entry["book_no"], "B-100");
    assert_eq!(entry["patient_name"], "Patient B-100");

    assert_eq!(app.get(Role::Pharmacist, &format!("/api/v1/consultations/{id}")).await.expect(200), consultation);
    assert_eq!(app.emitted_event_types().await, ["camp.created", "consultation.created"]);
    let created = app.emitted_payloads("consultation.created").await;
    assert_eq!(created[0]["data"], consultation);
    assert_eq!(app.count_rows("queue_entries").await, 1);

    // Defaults: no complaint, normal priority.
    let other = clinic.consultation(&app, "B-101").await;
    assert_eq!(other["complaint"], json!(null));
    assert_eq!(other["queue_entry"]["priority"], "normal");
});

db_test!(async fn assignment_references_are_checked_and_failures_write_nothing(app) {
    let clinic = clinic(&app).await;
    clinic.patient(&app, "B-1").await;
    seed_patient(&app, "B-2").await; // not registered at the camp

    let cases = [
        (json!({"book_no": "NOPE"}), "book_no"),
        (json!({"doctor_id": "doc_01jdq3v8m2x7c9k4t6w0y5z1ab"}), "doctor_id"),
        (json!({"doctor_id": "doc_1"}), "doctor_id"),
        (json!({"doctor_id": clinic.camp_id}), "doctor_id"),
        (json!({"camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab"}), "camp_id"),
        (json!({"camp_id": "nonsense"}), "camp_id"),
    ];
    for (change, field) in cases {
        let mut body = clinic.assign_body("B-1");
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = app.post(Role::Nurse, ASSIGN, &body).await;
        assert_eq!(response.status, 422, "{body}");
        assert_eq!(response.error_code(), "invalid_reference");
        assert_eq!(response.body["error"]["details"]["field"], field);
    }

    let unregistered = app.post(Role::Nurse, ASSIGN, &clinic.assign_body("B-2")).await;
    assert_eq!(unregistered.status, 422);
    assert_eq!(unregistered.error_code(), "not_registered_at_camp");

    let mut bad_priority = clinic.assign_body("B-1");
    bad_priority["priority"] = json!("urgent");
    assert_eq!(app.post(Role::Nurse, ASSIGN, &bad_priority).await.status, 422);
    let mut long = clinic.assign_body("B-1");
    long["complaint"] = json!("x".repeat(2001));
    let long = app.post(Role::Nurse, ASSIGN, &long).await;
    assert_eq!(long.status, 422);
    assert_eq!(long.body["error"]["details"]["fields"][0]["field"], "complaint");
    let missing = app.post(Role::Nurse, ASSIGN, &json!({"doctor_id": clinic.doctor_id, "camp_id": clinic.camp_id})).await;
    assert_eq!(missing.status, 422);
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("book_no"));

    assert_eq!(app.count_rows("consultations").await, 0);
    assert_eq!(app.count_rows("queue_entries").await, 0);
    assert_eq!(app.emitted_event_types().await, ["camp.created"]);
});

db_test!(async fn one_open_consultation_per_patient_and_camp(app) {
    let clinic = clinic(&app).await;
    let first = clinic.consultation(&app, "B-1").await;

    let again = app.post(Role::Nurse, ASSIGN, &clinic.assign_body("B-1")).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "consultation_open");
    assert_eq!(again.body["error"]["details"]["consultation_id"], first["id"]);
    let mut other_doctor = clinic.assign_body("B-1");
    other_doctor["doctor_id"] = json!(seed_doctor(&app).await);
    assert_eq!(app.post(Role::Nurse, ASSIGN, &other_doctor).await.error_code(), "consultation_open");

    // In consultation still counts as open.
    let entry = first["queue_entry"]["id"].as_str().unwrap();
    move_queue(&app, entry, "in_consultation").await;
    assert_eq!(app.post(Role::Nurse, ASSIGN, &clinic.assign_body("B-1")).await.error_code(), "consultation_open");

    // Another camp is another visit.
    let second_camp = crate::camps::create_camp(&app).await;
    let patient: String = sqlx::query_scalar("SELECT id FROM patients WHERE book_no = 'B-1'").fetch_one(app.state.db.pool()).await.unwrap();
    seed_registration(&app, &patient, &id(&second_camp)).await;
    let mut elsewhere = clinic.assign_body("B-1");
    elsewhere["camp_id"] = second_camp["id"].clone();
    app.post(Role::Nurse, ASSIGN, &elsewhere).await.expect(201);

    // Once completed (or cancelled), the patient may be seen again.
    move_queue(&app, entry, "completed").await;
    let next = clinic.assign(&app, "B-1").await;
    move_queue(&app, next["queue_entry"]["id"].as_str().unwrap(), "cancelled").await;
    clinic.assign(&app, "B-1").await;

    assert_eq!(app.emitted_payloads("consultation.created").await.len(), 4);
});

db_test!(async fn concurrent_assignments_open_one_consultation(app) {
    let clinic = clinic(&app).await;
    clinic.patient(&app, "B-1").await;
    let body = clinic.assign_body("B-1");
    let (a, b) = tokio::join!(app.post(Role::Nurse, ASSIGN, &body), app.post(Role::Volunteer, ASSIGN, &body));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(app.count_rows("consultations").await, 1);
    assert_eq!(app.emitted_payloads("consultation.created").await.len(), 1);
});

db_test!(async fn lists_and_gets_consultations(app) {
    let clinic = clinic(&app).await;
    let first = clinic.consultation(&app, "B-1").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut body = clinic.assign_body("B-2");
    let other_doctor = seed_doctor(&app).await;
    body["doctor_id"] = json!(other_doctor);
    clinic.patient(&app, "B-2").await;
    let second = app.post(Role::Nurse, ASSIGN, &body).await.expect(201);
    move_queue(&app, second["queue_entry"]["id"].as_str().unwrap(), "in_consultation").await;

    let all = app.get(Role::Volunteer, "/api/v1/consultations").await.expect(200);
    assert_eq!(all["total"], 2);
    assert_eq!(all["items"][0]["id"], second["id"], "newest first");
    assert_eq!(all["items"][1], first);

    let by_book = app.get(Role::Volunteer, "/api/v1/consultations?book_no=B-1").await.expect(200);
    assert_eq!(by_book["total"], 1);
    assert_eq!(by_book["items"][0]["id"], first["id"]);
    let by_doctor = app.get(Role::Volunteer, &format!("/api/v1/consultations?doctor_id={other_doctor}")).await.expect(200);
    assert_eq!(by_doctor["total"], 1);
    assert_eq!(by_doctor["items"][0]["id"], second["id"]);
    let by_camp = app.get(Role::Volunteer, &format!("/api/v1/consultations?camp_id={}", clinic.camp_id)).await.expect(200);
    assert_eq!(by_camp["total"], 2);
    let in_progress = app.get(Role::Volunteer, "/api/v1/consultations?status=in_progress").await.expect(200);
    assert_eq!(in_progress["total"], 1);
    assert_eq!(in_progress["items"][0]["status"], "in_progress");
    assert_eq!(in_progress["items"][0]["queue_entry"]["status"], "in_consultation");
    let page = app.get(Role::Volunteer, "/api/v1/consultations?limit=1&offset=1").await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], 2);

    assert_eq!(app.get(Role::Volunteer, "/api/v1/consultations?status=done").await.status, 422);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/consultations?doctor_id=doc_1").await.status, 422);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/consultations/cons_1").await.status, 404);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/consultations/cons_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
    assert_eq!(app.request(Method::GET, None, "/api/v1/consultations", None).await.status, 401);
});

db_test!(async fn partial_updates_change_only_what_is_given(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let path = format!("/api/v1/consultations/{}", id(&consultation));
    let before_events = app.emitted_event_types().await.len();

    let mark1 = mark(&app).await;
    let updated = app.put(Role::Doctor, &path, &json!({"diagnosis": "viral fever"})).await.expect(200);
    assert_eq!(updated["diagnosis"], "viral fever");
    assert_eq!(updated["complaint"], consultation["complaint"]);
    assert_eq!(updated["status"], "open");
    let events = events_since(&app, &mark1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "consultation.updated");
    assert_eq!(events[0].1["changed_fields"], json!(["diagnosis"]));
    assert_eq!(events[0].1["data"], updated);

    let mark2 = mark(&app).await;
    let updated = app.put(Role::Doctor, &format!("{path}/"), &json!({"notes": "rest, fluids", "complaint": null, "diagnosis": "viral fever"})).await.expect(200);
    assert_eq!(updated["notes"], "rest, fluids");
    assert_eq!(updated["diagnosis"], "viral fever");
    let events = events_since(&app, &mark2).await;
    assert_eq!(events[0].1["changed_fields"], json!(["notes"]));

    // Nothing changed: 200, no event.
    assert_eq!(app.put(Role::Doctor, &path, &json!({})).await.expect(200), updated);
    app.put(Role::Doctor, &path, &json!({"notes": "rest, fluids"})).await.expect(200);
    assert_eq!(app.emitted_event_types().await.len(), before_events + 2);

    let long = app.put(Role::Doctor, &path, &json!({"diagnosis": "x".repeat(2001)})).await;
    assert_eq!(long.status, 422);
    assert_eq!(long.body["error"]["details"]["fields"][0]["field"], "diagnosis");
    assert_eq!(app.put(Role::Doctor, &path, &json!({"status": "completed"})).await.status, 422);
    assert_eq!(app.put(Role::Doctor, &path, &json!({"notes": 5})).await.status, 422);
    assert_eq!(app.put(Role::Doctor, "/api/v1/consultations/cons_01jdq3v8m2x7c9k4t6w0y5z1ab", &json!({"notes": "x"})).await.status, 404);
    assert_eq!(app.emitted_event_types().await.len(), before_events + 2);
});

db_test!(async fn closed_consultations_cannot_be_edited(app) {
    let clinic = clinic(&app).await;
    for (book_no, path) in [("B-1", &["in_consultation", "completed"][..]), ("B-2", &["cancelled"][..])] {
        let consultation = clinic.consultation(&app, book_no).await;
        for status in path {
            move_queue(&app, consultation["queue_entry"]["id"].as_str().unwrap(), status).await;
        }
        let events = app.emitted_event_types().await.len();
        let refused = app.put(Role::Doctor, &format!("/api/v1/consultations/{}", id(&consultation)), &json!({"notes": "late note"})).await;
        assert_eq!(refused.status, 409);
        assert_eq!(refused.error_code(), "consultation_closed");
        assert_eq!(app.emitted_event_types().await.len(), events);
        let unchanged = app.get(Role::Doctor, &format!("/api/v1/consultations/{}", id(&consultation))).await.expect(200);
        assert_eq!(unchanged["notes"], json!(null));
    }
});

db_test!(async fn consultation_writes_by_role(app) {
    let app = &app;
    let clinic = &clinic(app).await;
    check_roles(app, &[Role::Admin, Role::Nurse, Role::Volunteer], 201, |role| async move {
        let book_no = format!("B-{role:?}");
        clinic.patient(app, &book_no).await;
        Write::new(Method::POST, ASSIGN, clinic.assign_body(&book_no))
    })
    .await;

    let consultation = clinic.consultation(app, "B-update").await;
    let path = &format!("/api/v1/consultations/{}", id(&consultation));
    check_roles(app, &[Role::Admin, Role::Doctor], 200, |role| async move {
        Write::new(Method::PUT, path, json!({"notes": format!("seen by {role:?}")}))
    })
    .await;
});
