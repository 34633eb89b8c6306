//! Doctors: CRUD, user links, deletion of a doctor in use, validation and roles. Doctor
//! writes emit no events.

use crate::camps::create_camp;
use crate::support::TestApp;
use crate::support::people::{create_doctor, create_patient, doctor_body, role_matrix, user_id};
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

db_test!(async fn doctor_lifecycle(app) {
    let created = create_doctor(&app, "Dr. Mehta").await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("doc_"));
    assert_eq!(created["specialty"], "General Medicine");
    assert_eq!(created["user_id"], Value::Null);

    assert_eq!(app.get(Role::Volunteer, &format!("/api/v1/doctors/{id}")).await.expect(200), created);
    let mut eyes = doctor_body("Dr. Rao");
    eyes["specialty"] = json!("Ophthalmology");
    app.post(Role::Admin, "/api/v1/doctors/", &eyes).await.expect(201);
    let all = app.get(Role::Nurse, "/api/v1/doctors").await.expect(200);
    assert_eq!(all["total"], 2);
    assert_eq!(all["items"][0]["name"], "Dr. Mehta", "ordered by name");
    let filtered = app.get(Role::Nurse, "/api/v1/doctors?specialty=ophthalmology").await.expect(200);
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["items"][0]["name"], "Dr. Rao");
    assert_eq!(app.get(Role::Nurse, "/api/v1/doctors?specialty=ophthal").await.expect(200)["total"], 0);
    let page = app.get(Role::Nurse, "/api/v1/doctors?limit=1&offset=1").await.expect(200);
    assert_eq!(page["items"][0]["name"], "Dr. Rao");

    let mut changed = doctor_body("Dr. Anil Mehta");
    changed["specialty"] = json!("Cardiology");
    let updated = app.put(Role::Admin, &format!("/api/v1/doctors/{id}/"), &changed).await.expect(200);
    assert_eq!(updated["name"], "Dr. Anil Mehta");
    assert_eq!(updated["specialty"], "Cardiology");
    assert_eq!(updated["created_at"], created["created_at"]);

    app.delete(Role::Admin, &format!("/api/v1/doctors/{id}")).await.expect(204);
    assert_eq!(app.get(Role::Admin, &format!("/api/v1/doctors/{id}")).await.status, 404);
    assert_eq!(app.delete(Role::Admin, &format!("/api/v1/doctors/{id}")).await.status, 404);
    assert_eq!(app.count_rows("doctors").await, 1);
    assert!(app.emitted_event_types().await.is_empty(), "doctors emit no events");
});

db_test!(async fn a_user_links_to_at_most_one_doctor(app) {
    let user = user_id(&app, Role::Doctor).await;
    let mut body = doctor_body("Dr. Mehta");
    body["user_id"] = json!(user);
    let linked = app.post(Role::Admin, "/api/v1/doctors", &body).await.expect(201);
    assert_eq!(linked["user_id"], user);
    let path = format!("/api/v1/doctors/{}", linked["id"].as_str().unwrap());

    let mut other = doctor_body("Dr. Rao");
    other["user_id"] = json!(user);
    let taken = app.post(Role::Admin, "/api/v1/doctors", &other).await;
    assert_eq!(taken.status, 409);
    assert_eq!(taken.error_code(), "user_already_linked");

    // Keeping its own link is no conflict; leaving user_id out unlinks.
    body["specialty"] = json!("Paediatrics");
    assert_eq!(app.put(Role::Admin, &path, &body).await.expect(200)["user_id"], user);
    let rao = create_doctor(&app, "Dr. Rao").await;
    let rao_path = format!("/api/v1/doctors/{}", rao["id"].as_str().unwrap());
    let steal = app.put(Role::Admin, &rao_path, &other).await;
    assert_eq!(steal.status, 409);
    assert_eq!(steal.error_code(), "user_already_linked");
    assert_eq!(app.put(Role::Admin, &path, &doctor_body("Dr. Mehta")).await.expect(200)["user_id"], Value::Null);
    assert_eq!(app.put(Role::Admin, &rao_path, &other).await.expect(200)["user_id"], user);

    for bad in ["usr_01jdq3v8m2x7c9k4t6w0y5z1ab", "nonsense"] {
        let mut body = doctor_body("Dr. Iyer");
        body["user_id"] = json!(bad);
        let response = app.post(Role::Admin, "/api/v1/doctors", &body).await;
        assert_eq!(response.status, 422);
        assert_eq!(response.error_code(), "invalid_reference");
        assert_eq!(response.body["error"]["details"]["field"], "user_id");
        assert_eq!(app.put(Role::Admin, &rao_path, &body).await.status, 422);
    }
    assert_eq!(app.count_rows("doctors").await, 2);
});

/// A consultation of `doctor` (written directly: consultations are another module's).
async fn insert_consultation(app: &TestApp, doctor: &str) {
    let patient = create_patient(app, "B-1").await;
    let camp = create_camp(app).await;
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO consultations (id, patient_id, doctor_id, camp_id, status, created_at, updated_at) \
         VALUES ('cons_01jdq3v8m2x7c9k4t6w0y5z1ab', $1, $2, $3, 'open', 0, 0)",
    )
    .bind(patient["id"].as_str().unwrap())
    .bind(doctor)
    .bind(camp["id"].as_str().unwrap())
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

db_test!(async fn a_doctor_with_consultations_cannot_be_deleted(app) {
    let doctor = create_doctor(&app, "Dr. Mehta").await;
    let id = doctor["id"].as_str().unwrap();
    insert_consultation(&app, id).await;
    let response = app.delete(Role::Admin, &format!("/api/v1/doctors/{id}")).await;
    assert_eq!(response.status, 409);
    assert_eq!(response.error_code(), "doctor_in_use");
    assert_eq!(app.get(Role::Admin, &format!("/api/v1/doctors/{id}")).await.expect(200), doctor);
});

db_test!(async fn bad_doctor_input_is_refused(app) {
    for (body, field) in [
        (json!({"name": " ", "specialty": "ENT"}), "name"),
        (json!({"name": "x".repeat(201), "specialty": "ENT"}), "name"),
        (json!({"name": "Dr. Rao", "specialty": ""}), "specialty"),
        (json!({"name": "Dr. Rao", "specialty": "x".repeat(101)}), "specialty"),
    ] {
        let response = app.post(Role::Admin, "/api/v1/doctors", &body).await;
        assert_eq!(response.status, 422);
        assert_eq!(response.body["error"]["details"]["fields"][0]["field"], field);
    }
    for body in [json!({"name": "Dr. Rao"}), json!({"name": "Dr. Rao", "specialty": "ENT", "fee": 0})] {
        assert_eq!(app.post(Role::Admin, "/api/v1/doctors", &body).await.status, 422);
    }
    let doctor = create_doctor(&app, "Dr. Mehta").await;
    let path = format!("/api/v1/doctors/{}", doctor["id"].as_str().unwrap());
    assert_eq!(app.put(Role::Admin, &path, &json!({"name": "", "specialty": "ENT"})).await.status, 422);
    for id in ["nonsense", "doc_01jdq3v8m2x7c9k4t6w0y5z1ab", "pat_01jdq3v8m2x7c9k4t6w0y5z1ab"] {
        let path = format!("/api/v1/doctors/{id}");
        assert_eq!(app.get(Role::Admin, &path).await.status, 404);
        assert_eq!(app.put(Role::Admin, &path, &doctor_body("Dr. X")).await.status, 404);
        assert_eq!(app.delete(Role::Admin, &path).await.status, 404);
    }
    assert_eq!(app.get(Role::Admin, &path).await.expect(200), doctor, "unchanged");
    assert_eq!(app.count_rows("doctors").await, 1);
});

db_test!(async fn only_admins_manage_doctors(app) {
    for (i, (role, status)) in role_matrix(&[Role::Admin], 201).into_iter().enumerate() {
        let name = format!("Dr. {i}");
        let created = app.request(Method::POST, role, "/api/v1/doctors", Some(&doctor_body(&name))).await;
        assert_eq!(created.status, status, "create as {role:?}");
        let doctor = if status == 201 { created.body } else { create_doctor(&app, &name).await };
        let path = format!("/api/v1/doctors/{}", doctor["id"].as_str().unwrap());
        let ok = |expected| if status == 201 { expected } else { status };
        let updated = app.request(Method::PUT, role, &path, Some(&doctor_body("Dr. Renamed"))).await;
        assert_eq!(updated.status, ok(200), "update as {role:?}");
        let deleted = app.request(Method::DELETE, role, &path, None).await;
        assert_eq!(deleted.status, ok(204), "delete as {role:?}");
    }
    assert_eq!(app.count_rows("doctors").await, 5, "only the admin's doctor was deleted");
    let names = app.get(Role::Admin, "/api/v1/doctors").await.expect(200);
    assert!(names["items"].as_array().unwrap().iter().all(|d| d["name"] != "Dr. Renamed"));
    assert_eq!(app.request(Method::GET, None, "/api/v1/doctors", None).await.status, 401);
});
