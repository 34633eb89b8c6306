//! The queue: calling order, every transition allowed and refused with its events,
//! priority changes, concurrency, roles.

use crate::support::TestApp;
use crate::support::care::*;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

const STATUS: &str = "/api/v1/queue/status-update";
const PRIORITY: &str = "/api/v1/queue/priority";
const ALL_STATUSES: [&str; 4] = ["waiting", "in_consultation", "completed", "cancelled"];

/// Allowed moves and the consultation status that follows each.
const ALLOWED: [(&str, &str, &str); 5] = [
    ("waiting", "in_consultation", "in_progress"),
    ("waiting", "cancelled", "cancelled"),
    ("in_consultation", "completed", "completed"),
    ("in_consultation", "cancelled", "cancelled"),
    ("in_consultation", "waiting", "open"),
];

/// The moves (as admin) that bring a fresh entry to `status`.
fn path_to(status: &str) -> &'static [&'static str] {
    match status {
        "waiting" => &[],
        "in_consultation" => &["in_consultation"],
        "completed" => &["in_consultation", "completed"],
        "cancelled" => &["cancelled"],
        other => panic!("unknown status {other}"),
    }
}

/// A new consultation whose queue entry is in `status`; returns the entry id and consultation id.
async fn entry_in(app: &TestApp, clinic: &Clinic, book_no: &str, status: &str) -> (String, String) {
    let consultation = clinic.consultation(app, book_no).await;
    let entry = consultation["queue_entry"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for step in path_to(status) {
        move_queue(app, &entry, step).await;
    }
    (entry, id(&consultation))
}

fn move_body(entry: &str, status: &str) -> Value {
    json!({"queue_entry_id": entry, "status": status})
}

db_test!(async fn the_queue_is_called_by_priority_then_age(app) {
    let clinic = clinic(&app).await;
    for (book_no, priority) in [("B-1", "normal"), ("B-2", "high"), ("B-3", "emergency"), ("B-4", "high")] {
        clinic.patient(&app, book_no).await;
        let mut body = clinic.assign_body(book_no);
        body["priority"] = json!(priority);
        app.post(Role::Nurse, "/api/v1/doctors/assign-doctor", &body).await.expect(201);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let other = Clinic { camp_id: clinic.camp_id.clone(), doctor_id: seed_doctor(&app).await };
    let (other_entry, _) = entry_in(&app, &other, "B-5", "in_consultation").await;

    let queue = app.get(Role::Volunteer, &format!("/api/v1/queue?camp_id={}&status=waiting", clinic.camp_id)).await.expect(200);
    assert_eq!(queue["total"], 4);
    let order: Vec<&str> = queue["items"].as_array().unwrap().iter().map(|e| e["book_no"].as_str().unwrap()).collect();
    assert_eq!(order, ["B-3", "B-2", "B-4", "B-1"]);
    let first = &queue["items"][0];
    assert_eq!(first["patient_name"], "Patient B-3");
    assert_eq!(first["priority"], "emergency");
    assert_eq!(first["doctor_id"], clinic.doctor_id.as_str());

    let fetched = app.get(Role::Pharmacist, &format!("/api/v1/queue/{}", first["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(&fetched, first);

    let by_doctor = app.get(Role::Volunteer, &format!("/api/v1/queue?doctor_id={}", other.doctor_id)).await.expect(200);
    assert_eq!(by_doctor["total"], 1);
    assert_eq!(by_doctor["items"][0]["id"], other_entry.as_str());
    assert_eq!(by_doctor["items"][0]["status"], "in_consultation");
    assert_eq!(app.get(Role::Volunteer, "/api/v1/queue").await.expect(200)["total"], 5);
    let page = app.get(Role::Volunteer, "/api/v1/queue?status=waiting&limit=2&offset=2").await.expect(200);
    let order: Vec<&str> = page["items"].as_array().unwrap().iter().map(|e| e["book_no"].as_str().unwrap()).collect();
    assert_eq!(order, ["B-4", "B-1"]);

    assert_eq!(app.get(Role::Volunteer, "/api/v1/queue?status=done").await.status, 422);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/queue?camp_id=camp_1").await.status, 422);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/queue/que_1").await.status, 404);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/queue/que_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
});

db_test!(async fn every_allowed_transition_moves_the_entry_and_its_consultation(app) {
    let clinic = clinic(&app).await;
    for (n, (from, to, consultation_status)) in ALLOWED.into_iter().enumerate() {
        let (entry, consultation) = entry_in(&app, &clinic, &format!("B-{n}"), from).await;
        let mark = mark(&app).await;
        let moved = app.put(Role::Nurse, STATUS, &move_body(&entry, to)).await.expect(200);
        assert_eq!(moved["status"], to);
        assert_eq!(moved["id"], entry.as_str());

        let consultation = app.get(Role::Nurse, &format!("/api/v1/consultations/{consultation}")).await.expect(200);
        assert_eq!(consultation["status"], consultation_status, "{from} -> {to}");
        assert_eq!(consultation["queue_entry"], moved);

        let events = events_since(&app, &mark).await;
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        let expected: &[&str] = if to == "completed" { &["consultation.completed", "queue.status_changed"] } else { &["queue.status_changed"] };
        assert_eq!(types, expected, "{from} -> {to}");
        let mut expected_data = moved.clone();
        expected_data["previous_status"] = json!(from);
        assert_eq!(events.last().unwrap().1["data"], expected_data);
        if to == "completed" {
            assert_eq!(events[0].1["data"], consultation);
        }
    }
});

db_test!(async fn refused_transitions_are_409_and_change_nothing(app) {
    let clinic = clinic(&app).await;
    for (n, from) in ALL_STATUSES.into_iter().enumerate() {
        let (entry, consultation) = entry_in(&app, &clinic, &format!("B-{n}"), from).await;
        let allowed: Vec<&str> = ALLOWED.iter().filter(|(f, _, _)| *f == from).map(|(_, to, _)| *to).collect();
        let consultation_before = app.get(Role::Nurse, &format!("/api/v1/consultations/{consultation}")).await.expect(200);
        for to in ALL_STATUSES.into_iter().filter(|to| !allowed.contains(to)) {
            let events = app.emitted_event_types().await.len();
            let refused = app.put(Role::Doctor, STATUS, &move_body(&entry, to)).await;
            assert_eq!(refused.status, 409, "{from} -> {to}");
            assert_eq!(refused.error_code(), "invalid_transition");
            assert_eq!(refused.body["error"]["details"], json!({"from": from, "to": to, "allowed": allowed}));
            assert_eq!(app.emitted_event_types().await.len(), events);
        }
        let consultation_after = app.get(Role::Nurse, &format!("/api/v1/consultations/{consultation}")).await.expect(200);
        assert_eq!(consultation_after, consultation_before);
    }

    let (entry, _) = entry_in(&app, &clinic, "B-x", "waiting").await;
    assert_eq!(app.put(Role::Nurse, STATUS, &move_body(&entry, "done")).await.status, 422);
    assert_eq!(app.put(Role::Nurse, STATUS, &json!({"queue_entry_id": entry})).await.status, 422);
    assert_eq!(app.put(Role::Nurse, STATUS, &move_body("que_01jdq3v8m2x7c9k4t6w0y5z1ab", "cancelled")).await.status, 404);
    assert_eq!(app.put(Role::Nurse, STATUS, &move_body("que_1", "cancelled")).await.status, 404);
});

db_test!(async fn completing_emits_status_changed_and_consultation_completed(app) {
    let clinic = clinic(&app).await;
    let (entry, consultation_id) = entry_in(&app, &clinic, "B-1", "in_consultation").await;
    app.put(Role::Doctor, &format!("/api/v1/consultations/{consultation_id}"), &json!({"diagnosis": "flu"})).await.expect(200);
    let mark = mark(&app).await;
    let completed = app.put(Role::Doctor, STATUS, &move_body(&entry, "completed")).await.expect(200);
    assert_eq!(completed["status"], "completed");

    let events = events_since(&app, &mark).await;
    assert_eq!(events.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["consultation.completed", "queue.status_changed"]);
    let consultation = app.get(Role::Doctor, &format!("/api/v1/consultations/{consultation_id}")).await.expect(200);
    assert_eq!(consultation["status"], "completed");
    assert_eq!(consultation["diagnosis"], "flu");
    let payload = app.emitted_payloads("consultation.completed").await;
    assert_eq!(payload.len(), 1);
    assert_eq!(payload[0]["data"], consultation);
    let changed = &events[1].1;
    assert_eq!(changed["data"]["previous_status"], "in_consultation");
    assert_eq!(changed["data"]["status"], "completed");
});

db_test!(async fn priority_changes_until_the_entry_is_closed(app) {
    let clinic = clinic(&app).await;
    let (entry, _) = entry_in(&app, &clinic, "B-1", "waiting").await;
    let before = app.emitted_event_types().await.len();

    let raised = app.put(Role::Nurse, &format!("{PRIORITY}/"), &json!({"queue_entry_id": entry, "priority": "emergency"})).await.expect(200);
    assert_eq!(raised["priority"], "emergency");
    assert_eq!(raised["status"], "waiting");
    let payload = app.emitted_payloads("queue.priority_changed").await;
    let mut expected = raised.clone();
    expected["previous_priority"] = json!("normal");
    assert_eq!(payload[0]["data"], expected);

    // The same priority again: 200, nothing emitted.
    assert_eq!(app.put(Role::Nurse, PRIORITY, &json!({"queue_entry_id": entry, "priority": "emergency"})).await.expect(200), raised);
    assert_eq!(app.emitted_event_types().await.len(), before + 1);

    move_queue(&app, &entry, "in_consultation").await;
    let lowered = app.put(Role::Doctor, PRIORITY, &json!({"queue_entry_id": entry, "priority": "high"})).await.expect(200);
    assert_eq!(lowered["priority"], "high");

    assert_eq!(app.put(Role::Nurse, PRIORITY, &json!({"queue_entry_id": entry, "priority": "urgent"})).await.status, 422);
    assert_eq!(app.put(Role::Nurse, PRIORITY, &json!({"queue_entry_id": "que_01jdq3v8m2x7c9k4t6w0y5z1ab", "priority": "high"})).await.status, 404);

    for status in ["completed", "cancelled"] {
        let (closed, _) = entry_in(&app, &clinic, &format!("B-{status}"), status).await;
        let events = app.emitted_event_types().await.len();
        let refused = app.put(Role::Nurse, PRIORITY, &json!({"queue_entry_id": closed, "priority": "high"})).await;
        assert_eq!(refused.status, 409);
        assert_eq!(refused.error_code(), "queue_entry_closed");
        assert_eq!(app.emitted_event_types().await.len(), events);
        assert_eq!(app.get(Role::Nurse, &format!("/api/v1/queue/{closed}")).await.expect(200)["priority"], "normal");
    }
});

db_test!(async fn concurrent_moves_cannot_both_succeed(app) {
    let clinic = clinic(&app).await;
    let (entry, _) = entry_in(&app, &clinic, "B-1", "waiting").await;
    let call_in = move_body(&entry, "in_consultation");
    let (a, b) = tokio::join!(app.put(Role::Nurse, STATUS, &call_in), app.put(Role::Doctor, STATUS, &call_in));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(app.emitted_payloads("queue.status_changed").await.len(), 1);

    let (complete, cancel) = (move_body(&entry, "completed"), move_body(&entry, "cancelled"));
    let (a, b) = tokio::join!(app.put(Role::Nurse, STATUS, &complete), app.put(Role::Doctor, STATUS, &cancel));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(app.emitted_payloads("queue.status_changed").await.len(), 2);
    let winner = if a.status == 200 { a.body } else { b.body };
    let entry_now = app.get(Role::Nurse, &format!("/api/v1/queue/{entry}")).await.expect(200);
    assert_eq!(entry_now["status"], winner["status"]);
    let completed = app.emitted_payloads("consultation.completed").await.len();
    assert_eq!(completed, usize::from(winner["status"] == "completed"));
});

db_test!(async fn queue_writes_by_role(app) {
    let app = &app;
    let clinic = &clinic(app).await;
    const ALLOWED_ROLES: &[Role] = &[Role::Admin, Role::Doctor, Role::Nurse];
    check_roles(app, ALLOWED_ROLES, 200, |role| async move {
        let (entry, _) = entry_in(app, clinic, &format!("B-status-{role:?}"), "waiting").await;
        Write::new(Method::PUT, STATUS, move_body(&entry, "in_consultation"))
    })
    .await;
    check_roles(app, ALLOWED_ROLES, 200, |role| async move {
        let (entry, _) = entry_in(app, clinic, &format!("B-priority-{role:?}"), "waiting").await;
        Write::new(Method::PUT, PRIORITY, json!({"queue_entry_id": entry, "priority": "high"}))
    })
    .await;
});
