//! Fixtures for patients, registrations, vitals and doctors, shared by every module's
//! tests, and the role matrix used by the role tests.

use super::TestApp;
use ehrs::auth::Role;
use serde_json::{Value, json};

/// A valid `POST /patients` body.
pub fn patient_body(book_no: &str) -> Value {
    json!({"book_no": book_no, "name": "Asha Patil", "sex": "female", "age": 42,
           "phone": "+91 98220-12345", "address": "Kothrud, Pune"})
}

/// Creates a patient as admin and returns it.
pub async fn create_patient(app: &TestApp, book_no: &str) -> Value {
    app.post(Role::Admin, "/api/v1/patients", &patient_body(book_no))
        .await
        .expect(201)
}

/// A book number as a path segment (`/` percent-encoded).
pub fn book_path(book_no: &str) -> String {
    book_no.replace('/', "%2F")
}

/// Registers the patient at the camp as admin and returns the registration.
pub async fn register_patient(app: &TestApp, book_no: &str, camp_id: &str) -> Value {
    let path = format!("/api/v1/patients/{}/register", book_path(book_no));
    app.post(Role::Admin, &path, &json!({"camp_id": camp_id}))
        .await
        .expect(201)
}

/// A valid `PUT /patients/vitals/{book_no}` body.
pub fn vitals_body() -> Value {
    json!({"bp": "120/80", "pulse": 72, "temperature": 36.8, "weight": 61.5, "height": 158.0,
           "spo2": 98, "blood_sugar": 110.0, "extra_note": "fasting"})
}

/// Records vitals for the patient as admin and returns them.
pub async fn record_vitals(app: &TestApp, book_no: &str, body: &Value) -> Value {
    let path = format!("/api/v1/patients/vitals/{}", book_path(book_no));
    app.put(Role::Admin, &path, body).await.expect(201)
}

pub fn doctor_body(name: &str) -> Value {
    json!({"name": name, "specialty": "General Medicine"})
}

/// Creates a doctor as admin and returns it.
pub async fn create_doctor(app: &TestApp, name: &str) -> Value {
    app.post(Role::Admin, "/api/v1/doctors", &doctor_body(name))
        .await
        .expect(201)
}

/// The id of the test user holding `role` (`<role>_user`).
pub async fn user_id(app: &TestApp, role: Role) -> String {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(format!("{}_user", role.as_str()))
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// Every caller of a write and the status it must get: `ok` for the `allowed` roles,
/// 403 for the other roles, 401 without a token (`None`).
pub fn role_matrix(allowed: &[Role], ok: u16) -> Vec<(Option<Role>, u16)> {
    Role::ALL
        .into_iter()
        .map(|role| (Some(role), if allowed.contains(&role) { ok } else { 403 }))
        .chain([(None, 401)])
        .collect()
}
