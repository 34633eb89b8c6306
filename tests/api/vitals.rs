//! Vitals: recording, reading, validation, roles, the `vitals.recorded` event, and the
//! note-appending function the inbound lab job uses.

use crate::camps::create_camp;
use crate::support::people::{create_patient, record_vitals, role_matrix, user_id, vitals_body};
use ehrs::auth::Role;
use ehrs::patients::BookNo;
use ehrs::testing::append_note_to_latest;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

db_test!(async fn recording_and_reading_vitals(app) {
    let patient = create_patient(&app, "B-1").await;
    let camp = create_camp(&app).await;
    let mut body = vitals_body();
    body["camp_id"] = camp["id"].clone();
    body["bp"] = json!(" 130 / 85 ");
    let first = app.put(Role::Volunteer, "/api/v1/patients/vitals/B-1", &body).await.expect(201);
    assert!(first["id"].as_str().unwrap().starts_with("vit_"));
    assert_eq!(first["patient_id"], patient["id"]);
    assert_eq!(first["book_no"], "B-1");
    assert_eq!(first["camp_id"], camp["id"]);
    assert_eq!(first["bp"], "130/85", "stored without spaces");
    assert_eq!(first["pulse"], 72);
    assert_eq!(first["temperature"], 36.8);
    assert_eq!(first["weight"], 61.5);
    assert_eq!(first["height"], 158.0);
    assert_eq!(first["spo2"], 98);
    assert_eq!(first["blood_sugar"], 110.0);
    assert_eq!(first["extra_note"], "fasting");
    assert_eq!(first["recorded_by"], user_id(&app, Role::Volunteer).await);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = app.put(Role::Nurse, "/api/v1/patients/vitals/B-1/", &json!({"pulse": 80})).await.expect(201);
    assert_eq!(second["camp_id"], Value::Null);
    assert_eq!(second["bp"], Value::Null);

    let list = app.get(Role::Pharmacist, "/api/v1/patients/vitals/B-1").await.expect(200);
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0], second, "newest first");
    assert_eq!(list["items"][1], first);
    let page = app.get(Role::Pharmacist, "/api/v1/patients/vitals/B-1?limit=1&offset=1").await.expect(200);
    assert_eq!(page["items"][0]["id"], first["id"]);
    let fetched = app.get(Role::Doctor, &format!("/api/v1/vitals/{}", first["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(fetched, first);

    let events = app.emitted_payloads("vitals.recorded").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["data"], first);
    assert_eq!(events[1]["data"]["book_no"], "B-1");
    assert_eq!(events[1]["data"]["pulse"], 80);
});

db_test!(async fn bad_vitals_are_refused_and_write_nothing(app) {
    create_patient(&app, "B-1").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "bp"),
        (json!({"extra_note": "only a note"}), "bp"),
        (json!({"bp": "120-80"}), "bp"),
        (json!({"bp": "80/120"}), "bp"),
        (json!({"bp": "310/90"}), "bp"),
        (json!({"bp": "120/15"}), "bp"),
        (json!({"pulse": 19}), "pulse"),
        (json!({"pulse": 251}), "pulse"),
        (json!({"temperature": 24.9}), "temperature"),
        (json!({"temperature": 45.1}), "temperature"),
        (json!({"weight": 0.4}), "weight"),
        (json!({"weight": 400.5}), "weight"),
        (json!({"height": 19}), "height"),
        (json!({"height": 251}), "height"),
        (json!({"spo2": 49}), "spo2"),
        (json!({"spo2": 101}), "spo2"),
        (json!({"blood_sugar": 9.9}), "blood_sugar"),
        (json!({"blood_sugar": 1001}), "blood_sugar"),
        (json!({"pulse": 70, "extra_note": "x".repeat(2001)}), "extra_note"),
    ];
    for (body, field) in cases {
        let response = app.put(Role::Admin, "/api/v1/patients/vitals/B-1", &body).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text);
        assert_eq!(response.error_code(), "validation_failed");
        assert_eq!(response.body["error"]["details"]["fields"][0]["field"], field, "{body}");
    }
    for body in [json!({"pulse": 72.5}), json!({"pulse": "fast"}), json!({"pulse": 70, "mood": "good"})] {
        assert_eq!(app.put(Role::Admin, "/api/v1/patients/vitals/B-1", &body).await.status, 422, "{body}");
    }
    for camp_id in ["camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "nonsense"] {
        let response = app.put(Role::Admin, "/api/v1/patients/vitals/B-1", &json!({"pulse": 70, "camp_id": camp_id})).await;
        assert_eq!(response.status, 422);
        assert_eq!(response.error_code(), "invalid_reference");
        assert_eq!(response.body["error"]["details"]["field"], "camp_id");
    }
    for book in ["B-404", "a%20b"] {
        let path = format!("/api/v1/patients/vitals/{book}");
        assert_eq!(app.put(Role::Admin, &path, &vitals_body()).await.status, 404);
        assert_eq!(app.get(Role::Admin, &path).await.status, 404);
    }
    assert_eq!(app.get(Role::Admin, "/api/v1/vitals/vit_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
    assert_eq!(app.get(Role::Admin, "/api/v1/vitals/pat_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
    assert_eq!(app.get(Role::Admin, "/api/v1/vitals/nonsense").await.status, 404);
    assert_eq!(app.count_rows("vitals").await, 0);
    assert_eq!(app.emitted_event_types().await, ["patient.registered"]);
});

db_test!(async fn recording_vitals_follows_the_role_matrix(app) {
    create_patient(&app, "B-1").await;
    let allowed = [Role::Admin, Role::Doctor, Role::Nurse, Role::Volunteer];
    for (role, status) in role_matrix(&allowed, 201) {
        let response = app.request(Method::PUT, role, "/api/v1/patients/vitals/B-1", Some(&vitals_body())).await;
        assert_eq!(response.status, status, "as {role:?}");
    }
    assert_eq!(app.count_rows("vitals").await, 4);
    let types = app.emitted_event_types().await;
    assert_eq!(types.iter().filter(|t| *t == "vitals.recorded").count(), 4);
    assert_eq!(app.request(Method::GET, None, "/api/v1/patients/vitals/B-1", None).await.status, 401);
});

db_test!(async fn lab_notes_are_appended_to_the_latest_vitals(app) {
    let book = BookNo::parse("B-1").unwrap();
    let append = |note: &'static str| {
        let db = app.state.db.clone();
        let book = book.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let vitals = append_note_to_latest(&mut tx, &book, note, " [cut]").await.unwrap();
            tx.commit().await.unwrap();
            vitals
        }
    };
    assert!(append("HbA1c 6.1%").await.is_none(), "unknown patient");
    create_patient(&app, "B-1").await;
    assert!(append("HbA1c 6.1%").await.is_none(), "no vitals yet");

    let older = record_vitals(&app, "B-1", &json!({"pulse": 70, "extra_note": "older"})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let latest = record_vitals(&app, "B-1", &json!({"pulse": 72})).await;
    let first = append("HbA1c 6.1%").await.unwrap();
    assert_eq!(first.id.as_str(), latest["id"].as_str().unwrap());
    assert_eq!(first.extra_note.as_deref(), Some("HbA1c 6.1%"));
    let second = append("Hb 12.4 g/dL").await.unwrap();
    assert_eq!(second.extra_note.as_deref(), Some("HbA1c 6.1%\nHb 12.4 g/dL"));
    assert_eq!(second.book_no.as_str(), "B-1");

    let path = format!("/api/v1/vitals/{}", latest["id"].as_str().unwrap());
    assert_eq!(app.get(Role::Admin, &path).await.expect(200)["extra_note"], "HbA1c 6.1%\nHb 12.4 g/dL");
    let path = format!("/api/v1/vitals/{}", older["id"].as_str().unwrap());
    assert_eq!(app.get(Role::Admin, &path).await.expect(200)["extra_note"], "older", "older vitals untouched");
});

db_test!(async fn null_and_present_measurements_alternate_on_one_connection(app) {
    // Regression: sqlx's Any driver binds a NULL f64 as float4 on PostgreSQL; the
    // statement cached on that connection then refused a real f64 (a 500). Sequential
    // requests reuse the writer connection, so alternating bodies hit the cached statement.
    crate::support::people::create_patient(&app, "B-77").await;
    let without = serde_json::json!({"pulse": 70});
    let with = serde_json::json!({"pulse": 70, "temperature": 37.5, "weight": 60.25, "height": 160.0, "blood_sugar": 98.5});
    for round in 0..12 {
        let body = if round % 2 == 0 { &without } else { &with };
        let response = app.put(ehrs::auth::Role::Nurse, "/api/v1/patients/vitals/B-77", body).await;
        assert_eq!(response.status, 201, "round {round}: {}", response.text);
    }
    assert_eq!(app.count_rows("vitals").await, 12);
});
