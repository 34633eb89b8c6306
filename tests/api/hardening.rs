//! Strict input and the smaller doors (issue 11, items 7 and 8; issue 13, items 3 and 5):
//! each test names the finding it closes.

use crate::support::people::{create_patient, patient_body};
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn camp() -> Value {
    json!({"name": "Eye camp", "location": "Pune", "start_date": "2026-12-01", "end_date": "2026-12-02"})
}

db_test!(async fn a_json_array_is_refused_where_an_object_is_declared(app) {
    let array = br#"["ArrCamp","ArrLoc","2026-12-01","2026-12-02"]"#.to_vec();
    let camp = app.send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "application/json", array).await;
    assert_eq!(camp.status, 422, "{}", camp.text);
    assert_eq!(camp.body["error"]["details"]["fields"][0]["field"], "body");
    create_patient(&app, "B-1").await;
    let patch = app.send_raw(Method::PATCH, Role::Admin, "/api/v1/patients/B-1", "application/json", br#"["x"]"#.to_vec()).await;
    assert_eq!(patch.status, 422, "{}", patch.text);
    let login = app.client.post(format!("{}/api/v1/auth/login", app.base_url))
        .header("content-type", "application/json").body(r#"["admin_user","password"]"#).send().await.unwrap();
    assert_eq!(login.status(), 422);
    assert_eq!(app.count_rows("medical_camps").await, 0);
    assert_eq!(app.emitted_event_types().await, ["patient.registered"]);
});

db_test!(async fn a_duplicate_key_is_refused_at_any_depth(app) {
    let body = br#"{"name":"A","name":"B","location":"Pune","start_date":"2026-12-01","end_date":"2026-12-02"}"#;
    let top = app.send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "application/json", body.to_vec()).await;
    assert_eq!(top.status, 400, "{}", top.text);
    assert_eq!(top.error_code(), "duplicate_key");
    let nested = br#"{"url":"https://example.org/h","event_types":["camp.created"],"metadata":{"a":1,"a":2}}"#;
    let nested = app.send_raw(Method::POST, Role::Admin, "/api/v1/webhooks/subscriptions", "application/json", nested.to_vec()).await;
    assert_eq!(nested.status, 400, "{}", nested.text);
    assert_eq!(nested.error_code(), "duplicate_key");
    assert_eq!(app.count_rows("medical_camps").await, 0);
    assert_eq!(app.count_rows("webhook_subscriptions").await, 0);
});

db_test!(async fn a_wrong_enum_value_or_type_names_the_field(app) {
    for priority in [json!(1), json!("urgent"), json!(null), json!({"a": 1})] {
        let body = json!({"queue_entry_id": "qe_01jdq3v8m2x7c9k4t6w0y5z1ab", "priority": priority});
        let answer = app.put(Role::Admin, "/api/v1/queue/priority", &body).await;
        assert_eq!(answer.status, 422, "{priority}: {}", answer.text);
        assert_eq!(answer.error_code(), "validation_failed");
        let field = &answer.body["error"]["details"]["fields"][0];
        assert_eq!(field["field"], "priority", "{}", answer.text);
        assert_eq!(field["allowed"], json!(["normal", "high", "emergency"]), "{}", answer.text);
        assert!(answer.body["error"]["message"].as_str().unwrap().contains("normal, high, emergency"));
    }
    let mut wrong_type = camp();
    wrong_type["name"] = json!(5);
    let answer = app.post(Role::Admin, "/api/v1/medical-camps", &wrong_type).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.body["error"]["details"]["fields"][0]["field"], "name");
    let mut missing = camp();
    missing.as_object_mut().unwrap().remove("location");
    let answer = app.post(Role::Admin, "/api/v1/medical-camps", &missing).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["error"]["details"]["fields"][0]["field"], "location");
    assert_eq!(app.count_rows("medical_camps").await, 0);
});

db_test!(async fn invalid_utf8_in_a_path_or_query_is_a_json_400(app) {
    for (path, code) in [("/api/v1/patients/%FF%FE", "invalid_path"), ("/api/v1/patients?q=%FF", "invalid_query"),
        ("/api/v1/medical-camps?on_date=%C3%28", "invalid_query")] {
        let answer = app.get(Role::Admin, path).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
        assert_eq!(answer.error_code(), code, "{path}");
    }
});

db_test!(async fn dates_outside_1900_to_2200_are_refused(app) {
    for (start, end) in [("0000-01-01", "2026-01-01"), ("-0001-01-01", "2026-01-01"), ("1899-12-31", "2026-01-01"),
        ("2026-01-01", "2201-01-01"), ("2026-1-01", "2026-01-02"), ("+2026-01-01", "2026-01-02")] {
        let mut body = camp();
        body["start_date"] = json!(start);
        body["end_date"] = json!(end);
        let answer = app.post(Role::Admin, "/api/v1/medical-camps", &body).await;
        assert_eq!(answer.status, 422, "{start}..{end}: {}", answer.text);
    }
    let mut bounds = camp();
    bounds["start_date"] = json!("1900-01-01");
    bounds["end_date"] = json!("2200-12-31");
    app.post(Role::Admin, "/api/v1/medical-camps", &bounds).await.expect(201);
    let mut patient = patient_body("B-9");
    patient["birth_date"] = json!("0000-02-29");
    assert_eq!(app.post(Role::Admin, "/api/v1/patients", &patient).await.status, 422);
    assert_eq!(app.count_rows("patients").await, 0);
});

db_test!(async fn a_book_number_may_not_contain_a_slash(app) {
    for book in ["SL/registrations", "PUNE/2026/7", " B-1", "B-1 "] {
        let answer = app.post(Role::Admin, "/api/v1/patients", &patient_body(book)).await;
        assert_eq!(answer.status, 422, "{book:?}: {}", answer.text);
        assert_eq!(answer.body["error"]["details"]["fields"][0]["field"], "book_no");
    }
    create_patient(&app, "SL").await;
    let renamed = app.patch(Role::Admin, "/api/v1/patients/SL", &json!({"book_no": "SL/x"})).await;
    assert_eq!(renamed.status, 422, "{}", renamed.text);
    // `/patients/SL/registrations` can only mean the registrations of SL.
    app.get(Role::Admin, "/api/v1/patients/SL/registrations").await.expect(200);
    assert_eq!(app.count_rows("patients").await, 1);
});

db_test!(async fn every_answer_carries_the_security_headers(app) {
    let no_token = app.client.get(format!("{}/api/v1/auth/me", app.base_url)).send().await.unwrap();
    let fallback = app.client.get(format!("{}/nowhere", app.base_url)).send().await.unwrap();
    let health = app.client.get(format!("{}/health", app.base_url)).send().await.unwrap();
    let document = app.client.get(format!("{}/openapi.json", app.base_url)).send().await.unwrap();
    let docs = app.client.get(format!("{}/docs", app.base_url)).send().await.unwrap();
    let asset = app.client.get(format!("{}/docs/swagger-ui.css", app.base_url)).send().await.unwrap();
    let data = app.get(Role::Admin, "/api/v1/patients").await;
    let mut all = vec![no_token.headers().clone(), fallback.headers().clone(), health.headers().clone(),
        document.headers().clone(), docs.headers().clone(), asset.headers().clone(), data.headers.clone()];
    let login = app.client.post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&json!({"username": "admin_user", "password": "wrong"})).send().await.unwrap();
    all.push(login.headers().clone());
    for headers in &all {
        assert_eq!(headers["x-content-type-options"], "nosniff", "{headers:?}");
        assert_eq!(headers["cache-control"], "no-store", "{headers:?}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{headers:?}");
        assert_eq!(headers["x-frame-options"], "DENY", "{headers:?}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    }
    let page_csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(page_csp.contains("default-src 'self'") && page_csp.contains("script-src 'self'"), "{page_csp}");
    assert!(!page_csp.contains("unsafe-eval") && !page_csp.contains("script-src 'self' 'unsafe-inline'"));
    let api_csp = data.headers["content-security-policy"].to_str().unwrap();
    assert!(api_csp.starts_with("default-src 'none'"), "{api_csp}");
});

db_test!(async fn docs_keep_no_token_and_make_no_remote_request(app) {
    let init = app.client.get(format!("{}/docs/swagger-initializer.js", app.base_url)).send().await.unwrap();
    assert_eq!(init.status(), 200);
    let script = init.text().await.unwrap();
    assert!(script.contains(r#""persistAuthorization": false"#) || script.contains(r#""persistAuthorization":false"#), "{script}");
    assert!(script.contains(r#""validatorUrl": "none""#) || script.contains(r#""validatorUrl":"none""#), "{script}");
    let page = app.client.get(format!("{}/docs", app.base_url)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing remote: {page}");
});

db_test!(async fn metrics_labels_stay_bounded_whatever_is_sent(app) {
    for i in 0..40 {
        let method = Method::from_bytes(format!("RANDOM{i}X").as_bytes()).unwrap();
        app.client.request(method, format!("{}/health", app.base_url)).send().await.unwrap();
        app.client.get(format!("{}/unmatched-{i}-zz", app.base_url)).send().await.unwrap();
        app.get(Role::Admin, &format!("/api/v1/patients/NOPE-{i}")).await;
    }
    let metrics = app.client.get(format!("{}/metrics", app.base_url)).send().await.unwrap().text().await.unwrap();
    let lines: Vec<&str> = metrics.lines().filter(|l| l.starts_with("ehrs_http_requests_total")).collect();
    assert!(lines.iter().all(|l| !l.contains("RANDOM") && !l.contains("unmatched-") && !l.contains("NOPE-")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains(r#"method="OTHER""#)), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains(r#"route="unmatched""#)), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains(r#"route="/api/v1/patients/{book_no}""#)), "{lines:#?}");
});

/// Reads until the server closes the connection; the time it took, or `None` past `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buffer),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed() {
    assert_eq!(
        ehrs::server::ServerLimits::default().header_read,
        Duration::from_secs(30),
        "the documented default"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { "ok" }).post(|body: String| async move { body }),
    );
    let limits = ehrs::server::ServerLimits {
        header_read: Duration::from_secs(1),
        body_read: Duration::from_secs(1),
        ..Default::default()
    };
    tokio::spawn(ehrs::server::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    let limit = Duration::from_secs(5);

    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, limit).await.is_some(),
        "a connection that sends nothing is closed"
    );

    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut half, limit).await.is_some(),
        "a half-sent request head is closed"
    );

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let n = idle.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut idle, limit)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        took >= Duration::from_millis(500),
        "not before the timeout: {took:?}"
    );

    let mut slow_body = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow_body, limit).await.is_some(),
        "a half-sent body is given up on"
    );
}
