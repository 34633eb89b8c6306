//! Helpers for inbound-webhook tests: sources, signed sends, and clinical seed rows.

use super::{TestApp, TestResponse};
use ehrs::auth::Role;
use ehrs::ids::{MedicineId, PatientId, VitalsId};
use serde_json::{Value, json};

pub const SOURCES: &str = "/api/v1/webhooks/inbound-sources";
pub const EVENTS: &str = "/api/v1/webhooks/inbound-events";

/// A created source: its id and its secret (shown only at creation).
pub struct Source {
    pub id: String,
    pub secret: String,
}

impl Source {
    pub fn path(&self) -> String {
        format!("/api/v1/webhooks/inbound/{}", self.id)
    }
}

/// Creates a source as admin.
pub async fn create_source(app: &TestApp, allowed: &[&str], mapping: Value) -> Source {
    let body =
        json!({"name": "City Lab", "allowed_event_types": allowed, "action_mapping": mapping});
    let created = app.post(Role::Admin, SOURCES, &body).await.expect(201);
    Source {
        id: created["id"].as_str().unwrap().to_string(),
        secret: created["secret"].as_str().unwrap().to_string(),
    }
}

/// A source that sends both actions under their own names.
pub async fn default_source(app: &TestApp) -> Source {
    create_source(
        app,
        &["lab.result.ready", "pharmacy.stock.update"],
        json!({}),
    )
    .await
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `body` to `path` with the given inbound headers (each optional), no bearer token.
pub async fn send_raw(
    app: &TestApp,
    path: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: Vec<u8>,
) -> TestResponse {
    let mut request = app
        .client
        .post(format!("{}{}", app.base_url, path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(timestamp) = timestamp {
        request = request.header("X-EHRS-Timestamp", timestamp);
    }
    if let Some(signature) = signature {
        request = request.header("X-EHRS-Signature", signature);
    }
    TestResponse::read(request.send().await.expect("request failed")).await
}

/// Sends `body` signed correctly with `timestamp`.
pub async fn send_signed_at(
    app: &TestApp,
    source: &Source,
    timestamp: i64,
    body: &[u8],
) -> TestResponse {
    let signature = ehrs::inbound::sign(&source.secret, timestamp, body);
    send_raw(
        app,
        &source.path(),
        Some(&timestamp.to_string()),
        Some(&signature),
        body.to_vec(),
    )
    .await
}

/// Sends `event` signed correctly, now.
pub async fn send_event(app: &TestApp, source: &Source, event: &Value) -> TestResponse {
    send_signed_at(app, source, now_secs(), event.to_string().as_bytes()).await
}

pub fn lab_event(event_id: &str, book_no: &str, result: &str, test_name: Option<&str>) -> Value {
    let mut data = json!({"book_no": book_no, "result": result});
    if let Some(test) = test_name {
        data["test_name"] = json!(test);
    }
    json!({"event_type": "lab.result.ready", "event_id": event_id, "data": data})
}

pub fn stock_event(event_id: &str, medicine_id: &str, quantity: i64) -> Value {
    json!({"event_type": "pharmacy.stock.update", "event_id": event_id, "data": {"medicine_id": medicine_id, "quantity": quantity}})
}

/// Runs every due job (as the runner would) and returns how many attempts ran.
pub async fn run_jobs(app: &TestApp) -> usize {
    ehrs::testing::run_due_jobs(&app.state)
        .await
        .expect("run_due_jobs")
}

/// The received events, as the admin sees them.
pub async fn events(app: &TestApp, query: &str) -> Value {
    app.get(Role::Admin, &format!("{EVENTS}{query}"))
        .await
        .expect(200)
}

// Seed helpers: rows written with SQL because the patients, vitals and medicines APIs are
// built in parallel elsewhere. Replace with API calls once those modules land.

/// Seeds a patient; returns its id.
pub async fn seed_patient(app: &TestApp, book_no: &str) -> String {
    let id = PatientId::generate();
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("INSERT INTO patients (id, book_no, name, sex, age, created_at, updated_at) VALUES ($1, $2, 'Asha Patil', 'female', 42, $3, $3)")
        .bind(&id)
        .bind(book_no)
        .bind(ehrs::db::now_ms())
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

/// Seeds a vitals row for `patient_id` taken at `created_at` (Unix ms); returns its id.
pub async fn seed_vitals(
    app: &TestApp,
    patient_id: &str,
    created_at: i64,
    note: Option<&str>,
) -> String {
    let id = VitalsId::generate();
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("INSERT INTO vitals (id, patient_id, bp, extra_note, recorded_by, created_at, updated_at) VALUES ($1, $2, '120/80', $3, 'seed', $4, $4)")
        .bind(&id)
        .bind(patient_id)
        .bind(note)
        .bind(created_at)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

pub async fn vitals_note(app: &TestApp, vitals_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT extra_note FROM vitals WHERE id = $1")
        .bind(vitals_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// Seeds a medicine with `stock`; returns its id.
pub async fn seed_medicine(app: &TestApp, stock: i64) -> String {
    let id = MedicineId::generate();
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("INSERT INTO medicines (id, name, form, strength, stock_quantity, created_at, updated_at) VALUES ($1, 'Paracetamol', 'tablet', '500 mg', $2, $3, $3)")
        .bind(&id)
        .bind(stock)
        .bind(ehrs::db::now_ms())
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

pub async fn medicine_stock(app: &TestApp, medicine_id: &str) -> i64 {
    sqlx::query_scalar("SELECT stock_quantity FROM medicines WHERE id = $1")
        .bind(medicine_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}
