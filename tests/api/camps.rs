//! Medical camps: CRUD, attendance, validation, roles, and the events they emit.

use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

pub fn camp_body() -> Value {
    json!({"name": "Pune Health Camp", "location": "Shivaji Nagar, Pune", "start_date": "2026-11-28", "end_date": "2026-11-29"})
}

/// Creates a camp as admin and returns it.
pub async fn create_camp(app: &crate::support::TestApp) -> Value {
    app.post(Role::Admin, "/api/v1/medical-camps/", &camp_body())
        .await
        .expect(201)
}

db_test!(async fn camp_lifecycle_emits_its_events(app) {
    let camp = create_camp(&app).await;
    let id = camp["id"].as_str().unwrap();
    assert!(id.starts_with("camp_"));
    assert_eq!(camp["attended_count"], 0);

    let fetched = app.get(Role::Volunteer, &format!("/api/v1/medical-camps/{id}")).await.expect(200);
    assert_eq!(fetched["name"], "Pune Health Camp");

    let mut changed = camp_body();
    changed["location"] = json!("Kothrud, Pune");
    let updated = app.put(Role::Admin, &format!("/api/v1/medical-camps/{id}/"), &changed).await.expect(200);
    assert_eq!(updated["location"], "Kothrud, Pune");

    let counted = app
        .post(Role::Volunteer, &format!("/api/v1/medical-camps/{id}/update-attended-count"), &json!({"delta": 3}))
        .await
        .expect(200);
    assert_eq!(counted["attended_count"], 3);
    let set = app
        .post(Role::Nurse, &format!("/api/v1/medical-camps/{id}/update-attended-count"), &json!({"attended_count": 10}))
        .await
        .expect(200);
    assert_eq!(set["attended_count"], 10);

    app.delete(Role::Admin, &format!("/api/v1/medical-camps/{id}")).await.expect(204);
    assert_eq!(app.get(Role::Admin, &format!("/api/v1/medical-camps/{id}")).await.status, 404);

    assert_eq!(
        app.emitted_event_types().await,
        ["camp.created", "camp.updated", "camp.attendance_updated", "camp.attendance_updated", "camp.deleted"]
    );
    let updates = app.emitted_payloads("camp.updated").await;
    assert_eq!(updates[0]["changed_fields"], json!(["location"]));
    assert_eq!(updates[0]["data"]["location"], "Kothrud, Pune");
    let attendance = app.emitted_payloads("camp.attendance_updated").await;
    assert_eq!(attendance[1]["changed_fields"], json!(["attended_count"]));
});

db_test!(async fn list_filters_and_pages(app) {
    create_camp(&app).await;
    let mut other = camp_body();
    other["location"] = json!("Nashik");
    other["start_date"] = json!("2026-12-05");
    other["end_date"] = json!("2026-12-05");
    app.post(Role::Admin, "/api/v1/medical-camps", &other).await.expect(201);

    let all = app.get(Role::Nurse, "/api/v1/medical-camps").await.expect(200);
    assert_eq!(all["total"], 2);
    let nashik = app.get(Role::Nurse, "/api/v1/medical-camps?location=nash").await.expect(200);
    assert_eq!(nashik["total"], 1);
    assert_eq!(nashik["items"][0]["location"], "Nashik");
    let on_date = app.get(Role::Nurse, "/api/v1/medical-camps?on_date=2026-11-29").await.expect(200);
    assert_eq!(on_date["total"], 1);
    let page = app.get(Role::Nurse, "/api/v1/medical-camps?limit=1&offset=1").await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(Role::Nurse, "/api/v1/medical-camps?limit=0").await.status, 422);
    assert_eq!(app.get(Role::Nurse, "/api/v1/medical-camps?limit=abc").await.status, 422);
    assert_eq!(app.get(Role::Nurse, "/api/v1/medical-camps?on_date=tomorrow").await.status, 422);
});

db_test!(async fn bad_input_is_refused_and_writes_nothing(app) {
    let mut reversed = camp_body();
    reversed["end_date"] = json!("2026-11-01");
    let response = app.post(Role::Admin, "/api/v1/medical-camps", &reversed).await;
    assert_eq!(response.status, 422);
    assert_eq!(response.body["error"]["details"]["fields"][0]["field"], "end_date");

    let missing = app.post(Role::Admin, "/api/v1/medical-camps", &json!({"name": "x"})).await;
    assert_eq!(missing.status, 422);
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("location"));

    let malformed = app
        .send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "application/json", b"{\"name\":".to_vec())
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.error_code(), "malformed_json");

    let not_json = app
        .send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(not_json.status, 415);

    let huge = app
        .send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "application/json", vec![b' '; 2 * 1024 * 1024])
        .await;
    assert_eq!(huge.status, 413);
    assert_eq!(huge.error_code(), "payload_too_large");

    assert_eq!(app.get(Role::Admin, "/api/v1/medical-camps/camp_nonsense").await.status, 404);
    assert_eq!(app.get(Role::Admin, "/api/v1/medical-camps/camp_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
    let count = app
        .post(Role::Admin, "/api/v1/medical-camps/camp_01jdq3v8m2x7c9k4t6w0y5z1ab/update-attended-count", &json!({"delta": 1}))
        .await;
    assert_eq!(count.status, 404);

    assert_eq!(app.count_rows("medical_camps").await, 0);
    assert!(app.emitted_event_types().await.is_empty());
});

db_test!(async fn attendance_cannot_go_negative(app) {
    let camp = create_camp(&app).await;
    let path = format!("/api/v1/medical-camps/{}/update-attended-count", camp["id"].as_str().unwrap());
    assert_eq!(app.post(Role::Admin, &path, &json!({"delta": -1})).await.status, 422);
    let both = app.post(Role::Admin, &path, &json!({"delta": 1, "attended_count": 3})).await;
    assert_eq!(both.status, 422);
    assert_eq!(
        both.body["error"]["message"],
        "invalid request: attended_count must not be given together with delta"
    );
    let neither = app.post(Role::Admin, &path, &json!({})).await;
    assert_eq!(neither.status, 422);
    assert_eq!(
        neither.body["error"]["message"],
        "invalid request: attended_count is required when delta is not given"
    );
    assert_eq!(app.emitted_event_types().await, ["camp.created"]);
});

db_test!(async fn only_admins_manage_camps(app) {
    for role in [Role::Doctor, Role::Nurse, Role::Pharmacist, Role::Volunteer] {
        assert_eq!(app.post(role, "/api/v1/medical-camps", &camp_body()).await.status, 403);
    }
    let camp = create_camp(&app).await;
    let path = format!("/api/v1/medical-camps/{}/update-attended-count", camp["id"].as_str().unwrap());
    assert_eq!(app.post(Role::Pharmacist, &path, &json!({"delta": 1})).await.status, 403);
    assert_eq!(app.post(Role::Doctor, &path, &json!({"delta": 1})).await.status, 403);
    assert_eq!(app.request(Method::GET, None, "/api/v1/medical-camps", None).await.status, 401);
});
