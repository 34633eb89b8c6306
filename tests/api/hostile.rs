//! Hostile clients (issue 23): each test names the probe's finding it closes.

use crate::support::people::{create_patient, patient_body};
use ehrs::auth::Role;
use serde_json::{Value, json};

const SUBSCRIPTIONS: &str = "/api/v1/webhooks/subscriptions";

fn url_reason(answer: &crate::support::TestResponse) -> String {
    let fields = answer.body["error"]["details"]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(fields[0]["field"], "url", "{}", answer.text);
    fields[0]["reason"].as_str().unwrap().to_string()
}

db_test!(async fn a_stored_url_is_exactly_the_url_called(app) {
    // Finding 3: CR/LF were stored and shown, while the engine called another path.
    for url in ["https://93.184.216.34/hook\r\nX-Injected: 1", "https://93.184.216.34/a hook", "https://93.184.216.34/\thook", " https://93.184.216.34/hook"] {
        let answer = app.post(Role::Admin, SUBSCRIPTIONS, &json!({"url": url})).await;
        assert_eq!(answer.status, 422, "{url:?}: {}", answer.text);
        let reason = url_reason(&answer);
        assert!(reason.contains("control characters") || reason.contains("spaces"), "{reason}");
    }
    assert_eq!(app.count_rows("webhook_subscriptions").await, 0);
    // One normal form, stored and shown: scheme and host in lower case, the default port
    // dropped, the path kept.
    let created = app.post(Role::Admin, SUBSCRIPTIONS, &json!({"url": "HTTPS://93.184.216.34:443/Hook?x=1"})).await.expect(201);
    assert_eq!(created["url"], "https://93.184.216.34/Hook?x=1");
    let path = format!("{SUBSCRIPTIONS}/{}", created["id"].as_str().unwrap());
    let updated = app.put(Role::Admin, &path, &json!({"url": "https://93.184.216.34:443/other"})).await.expect(200);
    assert_eq!(updated["url"], "https://93.184.216.34/other");
    assert_eq!(app.get(Role::Admin, &path).await.body["url"], "https://93.184.216.34/other");
});

db_test!(async fn a_teredo_address_is_refused(app) {
    // Finding 4: its embedded client address decodes to 127.0.0.1.
    let answer = app.post(Role::Admin, SUBSCRIPTIONS, &json!({"url": "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"})).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(url_reason(&answer).contains("2001:0:4136:e378:8000:63bf:80ff:fffe"));
});

db_test!(async fn a_retry_to_one_subscription_keeps_to_its_filter(app) {
    // Finding 5: a retry sent a patient.registered to a subscription filtered to webhook.test.
    let (subscription, _) = app.subscribe("http://127.0.0.1:9/h", &["webhook.test"], "full").await;
    create_patient(&app, "HOST-1").await;
    let logs = app.get(Role::Admin, "/api/v1/webhooks/logs").await.expect(200);
    let message = logs["items"][0]["id"].as_str().expect("the patient's message").to_string();
    let retry = format!("/api/v1/webhooks/logs/{message}/retry");
    let answer = app.post(Role::Admin, &retry, &json!({"subscription_id": subscription})).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.error_code(), "event_type_not_subscribed");
    assert_eq!(answer.body["error"]["details"]["event_type"], "patient.registered");
    assert_eq!(app.count_rows("webhook_deliveries").await, 0, "nothing was queued");
});

db_test!(async fn control_characters_and_direction_controls_are_refused(app) {
    // Finding 7: they were stored and sent on to partners.
    let mut forged = patient_body("CTRL-1");
    forged["name"] = json!("Line1\r\nLine2\u{202e}evil\u{0007}");
    let answer = app.post(Role::Admin, "/api/v1/patients", &forged).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.body["error"]["details"]["fields"][0]["field"], "name");
    assert!(answer.body["error"]["details"]["fields"][0]["reason"].as_str().unwrap().contains("U+000D"));
    let mut nul = patient_body("CTRL-2");
    nul["address"] = json!("\u{0000}");
    assert_eq!(app.post(Role::Admin, "/api/v1/patients", &nul).await.status, 422);
    let mut reversed = patient_body("CTRL-3");
    reversed["name"] = json!("Asha \u{202e}litaP");
    let answer = app.post(Role::Admin, "/api/v1/patients", &reversed).await;
    assert!(answer.text.contains("invisible direction controls"), "{}", answer.text);
    assert_eq!(app.count_rows("patients").await, 0);
    assert!(app.emitted_event_types().await.is_empty(), "nothing was sent on");
    // Free text keeps its line breaks and tabs; a one-line field refuses them.
    let described = json!({"url": "http://127.0.0.1:9/h", "description": "lab\n\tsecond line"});
    let created = app.post(Role::Admin, SUBSCRIPTIONS, &described).await.expect(201);
    assert_eq!(created["description"], "lab\n\tsecond line");
    let camp = crate::camps::create_camp(&app).await;
    let path = format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap());
    let mut body: Value = crate::camps::camp_body();
    body["name"] = json!("Eye camp\u{0000}");
    assert_eq!(app.put(Role::Admin, &path, &body).await.status, 422);
});

db_test!(async fn delta_cannot_pass_the_attendance_cap(app) {
    // Finding 8: two deltas of 1,000,000 gave 2,000,001.
    let camp = crate::camps::create_camp(&app).await;
    let path = format!("/api/v1/medical-camps/{}/update-attended-count", camp["id"].as_str().unwrap());
    app.post(Role::Admin, &path, &json!({"delta": 1_000_000})).await.expect(200);
    let answer = app.post(Role::Admin, &path, &json!({"delta": 1})).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("above its maximum of 1000000"), "{}", answer.text);
    let camp = app.get(Role::Admin, &format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(camp["attended_count"], 1_000_000);
});

db_test!(async fn a_timestamp_error_does_not_tell_the_server_s_clock(app) {
    // Finding 9: "now 1796283648" told any caller the server's time.
    use crate::support::inbound::{default_source, send_signed_at};
    let source = default_source(&app).await;
    let answer = send_signed_at(&app, &source, 1_000, br#"{"event_type":"lab.result.ready","event_id":"t1","data":{}}"#).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    let message = answer.body["error"]["message"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    assert!(!message.contains(&now[..6]), "{message}");
    assert!(message.contains("check the sender's clock"), "{message}");
});

db_test!(async fn the_schema_states_the_text_rules(app) {
    let doc = app.request(reqwest::Method::GET, None, "/openapi.json", None).await.expect(200);
    let schemas = &doc["components"]["schemas"];
    let name = schemas["MedicineInput"]["properties"]["name"]["pattern"].as_str().unwrap();
    let notes = schemas["ConsultationUpdate"]["properties"]["notes"]["pattern"].as_str().unwrap();
    let url = schemas["NewSubscription"]["properties"]["url"]["pattern"].as_str().unwrap();
    assert!(name.contains(r"\u0000-\u001f") && name.contains(r"\u202a-\u202e"), "{name}");
    assert!(notes.contains(r"\u0000-\u0008\u000b-\u001f"), "free text keeps line breaks and tabs: {notes}");
    assert!(url.starts_with(r"^[^\s"), "{url}");
});

db_test!(async fn a_dripped_body_gets_408_at_one_deadline_for_the_whole_body(app) {
    // Finding 1: one byte every 45 s kept a login open for ever, the 60 s limit restarting
    // on every chunk; a body that never started got 400 `invalid_body`.
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ehrs::server::ServerLimits { header_read: Duration::from_secs(10), body_read: Duration::from_secs(2), ..Default::default() };
    tokio::spawn(ehrs::server::serve(listener, ehrs::router::router(app.state.clone()), limits, std::future::pending()));
    for drip in [true, false] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        // One byte every 300 ms (each well inside any per-chunk limit), or nothing at all.
        while started.elapsed() < Duration::from_secs(8) {
            if drip {
                let _ = stream.write_all(b" ").await;
            }
            match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
                Err(_) => continue,
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "drip {drip}: {answer:?} after {:?}", started.elapsed());
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5), "at the deadline, not later: {:?}", started.elapsed());
    }
});

db_test!(
    settings = |s| s.metrics_token = Some("scrape-me-0123456789".into()),
    async fn metrics_need_the_metrics_token_when_one_is_set(app) {
        // Finding 6: /metrics told anyone on the camp's network how many patients were
        // registered and how many logins failed. Without a token only this machine may
        // read it (the default tests elsewhere read it from 127.0.0.1).
        let url = format!("{}/metrics", app.base_url);
        let none = app.client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401);
        let body: Value = none.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("EHRS_METRICS_TOKEN"));
        let wrong = app.client.get(&url).bearer_auth("scrape-me-0123456788").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let right = app.client.get(&url).bearer_auth("scrape-me-0123456789").send().await.unwrap();
        assert_eq!(right.status(), 200);
        assert!(right.text().await.unwrap().contains("ehrs_"));
    }
);

db_test!(
    settings = |s| s.webhook_max_subscriptions = 2,
    async fn subscriptions_are_capped(app) {
        // Finding 9: 600 subscriptions were created in 0.6 s.
        for n in 0..2 {
            app.post(Role::Admin, SUBSCRIPTIONS, &json!({"url": format!("http://127.0.0.1:9/h{n}")})).await.expect(201);
        }
        let answer = app.post(Role::Admin, SUBSCRIPTIONS, &json!({"url": "http://127.0.0.1:9/h3"})).await;
        assert_eq!(answer.status, 409, "{}", answer.text);
        assert_eq!(answer.error_code(), "subscription_limit");
        assert_eq!(answer.body["error"]["details"]["limit"], 2);
        assert!(answer.body["error"]["message"].as_str().unwrap().contains("EHRS_WEBHOOK_MAX_SUBSCRIPTIONS"));
        assert_eq!(app.count_rows("webhook_subscriptions").await, 2);
    }
);

db_test!(async fn a_test_event_keeps_to_the_subscription_s_filter(app) {
    // "Filters hold everywhere": the test button sent webhook.test past any filter.
    let (filtered, _) = app.subscribe("http://127.0.0.1:9/h", &["patient.registered"], "full").await;
    let answer = app.post(Role::Admin, &format!("{SUBSCRIPTIONS}/{filtered}/test"), &json!({})).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.error_code(), "event_type_not_subscribed");
    assert!(answer.body["error"]["message"].as_str().unwrap().contains("add webhook.test to its event_types"));
    assert_eq!(app.count_rows("webhook_messages").await, 0, "nothing was recorded");
    let (taking, _) = app.subscribe("http://127.0.0.1:9/h", &["webhook.test"], "full").await;
    app.post(Role::Admin, &format!("{SUBSCRIPTIONS}/{taking}/test"), &json!({})).await.expect(200);
});

db_test!(
    settings = |s| s.webhook_retry_schedule = ehrs::config::parse_schedule("").unwrap(),
    async fn a_recovery_sends_only_what_the_filter_takes_now(app) {
        // A recovery sent every failed message of the window, also types the filter no
        // longer takes.
        use crate::support::{Reply, TestReceiver, eventually};
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Status(500));
        let (id, _) = app.subscribe(&receiver.url, &["camp.created", "patient.registered"], "full").await;
        crate::camps::create_camp(&app).await;
        create_patient(&app, "HOST-R1").await;
        eventually("both exhausted", || async {
            let deliveries = crate::delivery::deliveries_of(&app, &id).await;
            deliveries.len() == 2 && deliveries.iter().all(|d| d.0 == "exhausted")
        })
        .await;
        let path = format!("{SUBSCRIPTIONS}/{id}");
        app.put(Role::Admin, &path, &json!({"event_types": ["patient.registered"]})).await.expect(200);
        receiver.always(Reply::Status(200));
        let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let recovered = app.post(Role::Admin, &format!("{path}/recover"), &json!({"since": since})).await.expect(202);
        assert_eq!(recovered["requeued"], 1);
        let got = receiver.wait_for(3, std::time::Duration::from_secs(20)).await;
        assert_eq!(got[2].json["type"], "patient.registered");
    }
);

db_test!(
    settings = |s| s.inbound_max_sources = 1,
    async fn inbound_sources_are_capped(app) {
        // Caps that agree: subscriptions had a maximum, inbound sources none.
        let sources = "/api/v1/webhooks/inbound-sources";
        app.post(Role::Admin, sources, &json!({"name": "Lab one", "allowed_event_types": ["lab.result.ready"]})).await.expect(201);
        let answer = app.post(Role::Admin, sources, &json!({"name": "Lab two", "allowed_event_types": ["lab.result.ready"]})).await;
        assert_eq!(answer.status, 409, "{}", answer.text);
        assert_eq!(answer.error_code(), "source_limit");
        assert_eq!(answer.body["error"]["details"]["limit"], 1);
        assert!(answer.body["error"]["message"].as_str().unwrap().contains("EHRS_INBOUND_MAX_SOURCES"));
        assert_eq!(app.count_rows("inbound_sources").await, 1);
    }
);

db_test!(async fn an_unknown_query_parameter_is_refused_like_an_unknown_body_field(app) {
    // Finding 9: unknown query parameters were accepted without a word, so a misspelt
    // filter answered with every record.
    let answer = app.get(Role::Admin, "/api/v1/patients?limt=5&limit=5").await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let fields = answer.body["error"]["details"]["fields"].as_array().unwrap().clone();
    assert_eq!(fields.len(), 1, "{}", answer.text);
    assert_eq!(fields[0]["field"], "limt");
    assert!(fields[0]["reason"].as_str().unwrap().contains("known: q, camp_id, limit, offset"), "{}", answer.text);
    let health = app.client.get(format!("{}/health?verbose=1", app.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 422);
    app.get(Role::Admin, "/api/v1/patients?limit=5").await.expect(200);
    // The portal's files are not API routes: a cache-busting query is no error.
    let page = app.client.get(format!("{}/portal/?v=2", app.base_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
});

db_test!(async fn answers_hyper_writes_itself_carry_the_json_error(app) {
    // Finding 9: a 200 KB URI got 414 with an empty body; so did 431 and 400.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let many_headers: String = (0..120).map(|n| format!("X-Extra-{n}: 1\r\n")).collect();
    let cases = [
        (format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200_000)), "414", "uri_too_long"),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), "431", "headers_too_large"),
        (format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(500_000)), "431", "headers_too_large"),
        ("BREW /pot HTCPCP\r\n\r\n".to_string(), "400", "malformed_request"),
    ];
    for (request, status, code) in cases {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{code}: {answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], code);
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
});
