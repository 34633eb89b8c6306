//! Safe retries: an `Idempotency-Key` makes a write happen once, whatever the network did
//! to its answer; reused keys, concurrent retries and other users' keys.

use crate::support::care::*;
use crate::support::people::patient_body;
use crate::support::{TestApp, TestResponse};
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Sends `body` as `role` with `key`.
async fn send_with_key(
    app: &TestApp,
    method: Method,
    role: Role,
    path: &str,
    body: &Value,
    key: &str,
) -> TestResponse {
    TestResponse::read(
        app.client
            .request(method, format!("{}{path}", app.base_url))
            .bearer_auth(app.token(role))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request failed"),
    )
    .await
}

fn replayed(response: &TestResponse) -> bool {
    response
        .headers
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true")
}

/// A consultation and a medicine to prescribe: the prescription route and its body.
async fn prescription_request(app: &TestApp) -> (String, Value) {
    let consultation = open_consultation(app, "B-1").await;
    let medicine = create_medicine(app, "Paracetamol", 50).await;
    let path = format!("/api/v1/consultations/{}/prescription", id(&consultation));
    (path, prescription_body(&id(&medicine), 10))
}

async fn prescription_events(app: &TestApp) -> usize {
    app.emitted_event_types()
        .await
        .iter()
        .filter(|t| *t == "prescription.added")
        .count()
}

db_test!(async fn a_retried_prescription_is_written_once_and_answered_as_the_first_time(app) {
    let (path, body) = prescription_request(&app).await;
    let first = send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "rx-0001").await;
    assert!(!replayed(&first));
    let first = first.expect(201);
    let retry = send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "rx-0001").await;
    assert!(replayed(&retry), "the retry is marked as a replay: {:?}", retry.headers);
    assert_eq!(retry.headers["content-type"], "application/json");
    assert_eq!(retry.expect(201), first, "the retry gets the first answer, byte for byte");
    assert_eq!(app.count_rows("prescriptions").await, 1);
    assert_eq!(prescription_events(&app).await, 1, "one event, not two");

    // A new key is a new prescription.
    send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "rx-0002").await.expect(201);
    assert_eq!(app.count_rows("prescriptions").await, 2);
    assert_eq!(prescription_events(&app).await, 2);
});

db_test!(async fn a_prescription_whose_client_went_away_is_retried_into_one_write(app) {
    let (path, body) = prescription_request(&app).await;
    let body_text = body.to_string();
    // The tablet sends the whole request, then its Wi-Fi drops: it never reads an answer.
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nIdempotency-Key: lost-answer\r\nContent-Length: {}\r\n\r\n{body_text}",
        app.addr,
        app.token(Role::Doctor),
        body_text.len(),
    );
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    drop(stream);

    // It retries with the same key until the server answers (409 while the first runs).
    let mut retry;
    let mut tries = 0;
    loop {
        retry = send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "lost-answer").await;
        if retry.status != 409 {
            break;
        }
        assert_eq!(retry.error_code(), "request_in_progress", "{}", retry.text);
        tries += 1;
        assert!(tries < 100, "the first request never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answer = retry.expect(201);
    assert_eq!(app.count_rows("prescriptions").await, 1, "one prescription");
    assert_eq!(prescription_events(&app).await, 1, "one event");
    let listed = app.get(Role::Pharmacist, "/api/v1/prescriptions").await.expect(200);
    assert_eq!(listed["items"][0]["id"], answer["id"], "the retry answers with the prescription written");
});

db_test!(async fn a_key_reused_for_another_request_is_refused_and_writes_nothing(app) {
    let (path, body) = prescription_request(&app).await;
    send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "reused").await.expect(201);
    let mut other = body.clone();
    other["quantity"] = json!(11);
    let refused = send_with_key(&app, Method::POST, Role::Doctor, &path, &other, "reused").await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.error_code(), "idempotency_key_reused");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("new key"), "{}", refused.text);
    assert!(refused.body["error"]["details"]["first_used_at"].is_string());
    // The same key on another route is another request too.
    let patient = send_with_key(&app, Method::POST, Role::Doctor, "/api/v1/patients", &patient_body("B-9"), "reused").await;
    assert_eq!(patient.error_code(), "idempotency_key_reused", "{}", patient.text);
    assert_eq!(app.count_rows("prescriptions").await, 1);
    assert_eq!(prescription_events(&app).await, 1);
});

db_test!(async fn concurrent_retries_with_one_key_write_once(app) {
    let (path, body) = prescription_request(&app).await;
    let sends = (0..8).map(|_| send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "burst"));
    let answers = futures_util::future::join_all(sends).await;
    let mut written = None;
    for answer in &answers {
        match answer.status {
            201 => {
                let id = answer.body["id"].clone();
                assert_eq!(written.get_or_insert(id.clone()), &id, "every 201 names the same prescription");
            }
            409 => assert_eq!(answer.error_code(), "request_in_progress", "{}", answer.text),
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert!(written.is_some(), "one of them ran");
    assert_eq!(app.count_rows("prescriptions").await, 1);
    assert_eq!(prescription_events(&app).await, 1);
    let after = send_with_key(&app, Method::POST, Role::Doctor, &path, &body, "burst").await;
    assert!(replayed(&after));
    assert_eq!(after.expect(201)["id"], written.unwrap());
});

db_test!(async fn keys_of_different_users_do_not_collide(app) {
    let by_volunteer = send_with_key(&app, Method::POST, Role::Volunteer, "/api/v1/patients", &patient_body("B-1"), "same-key").await;
    let by_nurse = send_with_key(&app, Method::POST, Role::Nurse, "/api/v1/patients", &patient_body("B-2"), "same-key").await;
    assert!(!replayed(&by_nurse));
    assert_eq!(by_volunteer.expect(201)["book_no"], "B-1");
    assert_eq!(by_nurse.expect(201)["book_no"], "B-2");
    assert_eq!(app.count_rows("patients").await, 2);
});

db_test!(async fn a_refused_write_is_not_remembered(app) {
    let mut invalid = patient_body("B-1");
    invalid["sex"] = json!("x");
    let refused = send_with_key(&app, Method::POST, Role::Volunteer, "/api/v1/patients", &invalid, "fix-and-retry").await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    // The request changed nothing, so the corrected one runs under the same key.
    let fixed = send_with_key(&app, Method::POST, Role::Volunteer, "/api/v1/patients", &patient_body("B-1"), "fix-and-retry").await;
    assert!(!replayed(&fixed));
    fixed.expect(201);
    assert_eq!(app.count_rows("idempotency_keys").await, 1);
});

db_test!(async fn a_malformed_key_is_refused_before_anything_runs(app) {
    for key in ["", &"k".repeat(256), "two words"] {
        let refused = send_with_key(&app, Method::POST, Role::Volunteer, "/api/v1/patients", &patient_body("B-1"), key).await;
        assert_eq!(refused.status, 422, "{key:?}: {}", refused.text);
        assert_eq!(refused.body["error"]["details"]["fields"][0]["field"], "Idempotency-Key", "{}", refused.text);
    }
    assert_eq!(app.count_rows("patients").await, 0);
});

db_test!(async fn a_remembered_answer_is_sealed_at_rest(app) {
    let patient = send_with_key(&app, Method::POST, Role::Volunteer, "/api/v1/patients", &patient_body("B-SEALED-1"), "sealed").await.expect(201);
    let stored: Vec<String> = sqlx::query_scalar("SELECT answer_sealed FROM idempotency_keys")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("v1:"), "sealed under the server key");
    assert!(!stored[0].contains("B-SEALED-1"), "no patient data in plain form");
    assert!(!stored[0].contains(patient["id"].as_str().unwrap()));
});

db_test!(async fn a_subscription_created_twice_with_one_key_exists_once(app) {
    let receiver = crate::support::TestReceiver::start().await;
    let body = json!({"url": receiver.url, "event_types": ["patient.registered"]});
    let first = send_with_key(&app, Method::POST, Role::Admin, "/api/v1/webhooks/subscriptions", &body, "sub-1").await;
    let retry = send_with_key(&app, Method::POST, Role::Admin, "/api/v1/webhooks/subscriptions", &body, "sub-1").await;
    assert!(replayed(&retry), "{} {}", retry.status, retry.text);
    assert_eq!(retry.expect(201), first.expect(201), "the same id and secret");
    let listed = app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await.expect(200);
    assert_eq!(listed["total"], 1);
});

#[test]
fn every_signed_in_write_declares_the_key_in_the_document() {
    let document = serde_json::to_value(ehrs::router::document()).unwrap();
    let mut declared = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let signed_in = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let takes_key = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
            assert_eq!(takes_key, signed_in, "{method} {path}");
            if takes_key {
                declared += 1;
                let conflict = operation["responses"]["409"]["description"]
                    .as_str()
                    .unwrap_or("");
                assert!(
                    conflict.contains("request_in_progress"),
                    "{method} {path}: {conflict}"
                );
                let invalid = operation["responses"]["422"]["description"]
                    .as_str()
                    .unwrap_or("");
                assert!(
                    invalid.contains("idempotency_key_reused"),
                    "{method} {path}: {invalid}"
                );
            }
        }
    }
    assert!(declared >= 30, "only {declared} writes declare the key");
    let login = &document["paths"]["/api/v1/auth/login"]["post"];
    assert!(
        login.get("parameters").is_none()
            || !login["parameters"].to_string().contains("Idempotency-Key")
    );
}
