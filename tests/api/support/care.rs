//! Fixtures for the care modules: medicines, consultations, queue and prescriptions.
//!
//! Patients, doctors and camp registrations are seeded with SQL through `app.state.db`,
//! because their API is being built in parallel. They will be switched to the API
//! (`POST /patients`, the doctors CRUD, `POST /patients/{book_no}/register`) once it
//! exists; the signatures here stay the same.

use super::TestApp;
use ehrs::auth::Role;
use ehrs::ids::{DoctorId, PatientId, RegistrationId};
use ehrs::time::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Inserts a patient with this book number; returns the patient id.
pub async fn seed_patient(app: &TestApp, book_no: &str) -> String {
    let id = PatientId::generate();
    let now = Timestamp::now();
    sqlx::query(
        "INSERT INTO patients (id, book_no, name, sex, age, created_at, updated_at) VALUES ($1, $2, $3, 'female', 40, $4, $4)",
    )
    .bind(&id)
    .bind(book_no)
    .bind(format!("Patient {book_no}"))
    .bind(now)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    id.to_string()
}

/// Inserts a doctor; returns the doctor id.
pub async fn seed_doctor(app: &TestApp) -> String {
    let id = DoctorId::generate();
    let now = Timestamp::now();
    sqlx::query("INSERT INTO doctors (id, name, specialty, created_at, updated_at) VALUES ($1, 'Dr. Rao', 'general', $2, $2)")
        .bind(&id)
        .bind(now)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    id.to_string()
}

/// Registers the patient at the camp.
pub async fn seed_registration(app: &TestApp, patient_id: &str, camp_id: &str) {
    sqlx::query(
        "INSERT INTO camp_registrations (id, patient_id, camp_id, registered_by, created_at) VALUES ($1, $2, $3, 'test', $4)",
    )
    .bind(RegistrationId::generate())
    .bind(patient_id)
    .bind(camp_id)
    .bind(Timestamp::now())
    .execute(app.state.db.pool())
    .await
    .unwrap();
}

/// A camp (through the API) with one doctor.
pub struct Clinic {
    pub camp_id: String,
    pub doctor_id: String,
}

pub async fn clinic(app: &TestApp) -> Clinic {
    let camp = crate::camps::create_camp(app).await;
    Clinic {
        camp_id: camp["id"].as_str().unwrap().to_string(),
        doctor_id: seed_doctor(app).await,
    }
}

impl Clinic {
    /// A new patient with this book number, registered at the camp; returns the patient id.
    pub async fn patient(&self, app: &TestApp, book_no: &str) -> String {
        let patient = seed_patient(app, book_no).await;
        seed_registration(app, &patient, &self.camp_id).await;
        patient
    }

    pub fn assign_body(&self, book_no: &str) -> Value {
        json!({"book_no": book_no, "doctor_id": self.doctor_id, "camp_id": self.camp_id})
    }

    /// Assigns the (registered) patient to the clinic's doctor; returns the consultation.
    pub async fn assign(&self, app: &TestApp, book_no: &str) -> Value {
        app.post(
            Role::Nurse,
            "/api/v1/doctors/assign-doctor",
            &self.assign_body(book_no),
        )
        .await
        .expect(201)
    }

    /// Registers a new patient and opens a consultation for them.
    pub async fn consultation(&self, app: &TestApp, book_no: &str) -> Value {
        self.patient(app, book_no).await;
        self.assign(app, book_no).await
    }
}

/// A fresh camp, doctor and patient, and an open consultation for the patient.
pub async fn open_consultation(app: &TestApp, book_no: &str) -> Value {
    clinic(app).await.consultation(app, book_no).await
}

/// Moves a queue entry to `status` (as admin) and returns the answer.
pub async fn move_queue(app: &TestApp, queue_entry_id: &str, status: &str) -> Value {
    app.put(
        Role::Admin,
        "/api/v1/queue/status-update",
        &json!({"queue_entry_id": queue_entry_id, "status": status}),
    )
    .await
    .expect(200)
}

/// Creates a medicine (tablet, 500 mg) as admin and returns it.
pub async fn create_medicine(app: &TestApp, name: &str, stock: i64) -> Value {
    let body =
        json!({"name": name, "form": "tablet", "strength": "500 mg", "stock_quantity": stock});
    app.post(Role::Admin, "/api/v1/medicines", &body)
        .await
        .expect(201)
}

pub async fn stock_of(app: &TestApp, medicine_id: &str) -> i64 {
    let medicine = app
        .get(Role::Admin, &format!("/api/v1/medicines/{medicine_id}"))
        .await
        .expect(200);
    medicine["stock_quantity"].as_i64().unwrap()
}

pub fn prescription_body(medicine_id: &str, quantity: i64) -> Value {
    json!({"medicine_id": medicine_id, "dosage": "1 tablet", "frequency": "twice a day", "days": 5, "quantity": quantity})
}

/// Prescribes `quantity` units of the medicine in the consultation (as doctor).
pub async fn prescribe(
    app: &TestApp,
    consultation_id: &str,
    medicine_id: &str,
    quantity: i64,
) -> Value {
    let path = format!("/api/v1/consultations/{consultation_id}/prescription");
    app.post(
        Role::Doctor,
        &path,
        &prescription_body(medicine_id, quantity),
    )
    .await
    .expect(201)
}

/// Sends a pharmacy update of a prescription (as pharmacist).
pub async fn dispatch(app: &TestApp, prescription_id: &str, body: &Value) -> super::TestResponse {
    app.put(
        Role::Pharmacist,
        &format!("/api/v1/consultations/prescriptions/{prescription_id}"),
        body,
    )
    .await
}

pub fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// One write request, prepared by a role-matrix test.
pub struct Write {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

impl Write {
    pub fn new(method: Method, path: impl Into<String>, body: Value) -> Write {
        Write {
            method,
            path: path.into(),
            body: Some(body),
        }
    }

    pub fn delete(path: impl Into<String>) -> Write {
        Write {
            method: Method::DELETE,
            path: path.into(),
            body: None,
        }
    }
}

/// The role matrix of one write: `prepare(role)` sets up fresh fixtures (as admin) and
/// returns the request; sent as `role` it must answer `ok` for the roles in `allowed` and
/// 403, emitting nothing, for the others; sent with no token, 401.
///
/// `prepare` is a closure returning an `async move` block (not an async closure, whose
/// futures the compiler cannot yet prove `Send` for the spawned test body).
pub async fn check_roles<F: Future<Output = Write>>(
    app: &TestApp,
    allowed: &[Role],
    ok: u16,
    prepare: impl Fn(Option<Role>) -> F,
) {
    for role in Role::ALL.into_iter().map(Some).chain([None]) {
        let write = prepare(role).await;
        let events = app.emitted_event_types().await.len();
        let status = app
            .request(write.method, role, &write.path, write.body.as_ref())
            .await
            .status;
        let expected = match role {
            Some(role) if allowed.contains(&role) => ok,
            Some(_) => 403,
            None => 401,
        };
        assert_eq!(status, expected, "{role:?} on {}", write.path);
        if expected != ok {
            assert_eq!(
                app.emitted_event_types().await.len(),
                events,
                "a refused {role:?} write emitted an event"
            );
        }
    }
}

/// Marks the outbox as it is now, to see later which events a write added.
pub struct Mark(HashSet<String>);

pub async fn mark(app: &TestApp) -> Mark {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM webhook_messages")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    Mark(ids.into_iter().collect())
}

/// The events (type, `{"data", "changed_fields"}`) emitted since `mark`, sorted by type:
/// events of one transaction share a millisecond, so their order in the outbox is not
/// observable through `created_at`.
pub async fn events_since(app: &TestApp, mark: &Mark) -> Vec<(String, Value)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, event_type, payload FROM webhook_messages")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    let mut events: Vec<(String, Value)> = rows
        .into_iter()
        .filter(|(id, _, _)| !mark.0.contains(id))
        .map(|(_, event_type, payload)| (event_type, serde_json::from_str(&payload).unwrap()))
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events
}

pub async fn types_since(app: &TestApp, mark: &Mark) -> Vec<String> {
    events_since(app, mark)
        .await
        .into_iter()
        .map(|(event_type, _)| event_type)
        .collect()
}
