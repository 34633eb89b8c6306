//! The receiver, row by row of SPEC §6's table. A refused request queues nothing.

use crate::support::inbound::*;
use ehrs::auth::Role;
use serde_json::json;

db_test!(async fn a_signed_event_is_accepted_with_its_job(app) {
    let source = default_source(&app).await;
    let accepted = send_event(&app, &source, &lab_event("lab-1", "B-1", "negative", None)).await.expect(202);
    assert!(accepted["job_id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["duplicate"], false);
    // 202 means committed: the job row and the received-event row exist.
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(accepted["job_id"].as_str().unwrap())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "queued");
    assert_eq!(app.count_rows("inbound_events").await, 1);
    // The edges of the window are inside it.
    let event = lab_event("lab-2", "B-1", "negative", None);
    assert_eq!(send_signed_at(&app, &source, now_secs() - 298, event.to_string().as_bytes()).await.status, 202);
    let event = lab_event("lab-3", "B-1", "negative", None);
    assert_eq!(send_signed_at(&app, &source, now_secs() + 298, event.to_string().as_bytes()).await.status, 202);
});

db_test!(async fn unknown_inactive_and_deleted_sources_are_404(app) {
    let source = default_source(&app).await;
    let event = lab_event("e1", "B-1", "ok", None);
    let unknown = Source { id: "src_01jdq3v8m2x7c9k4t6w0y5z1ab".into(), secret: source.secret.clone() };
    assert_eq!(send_event(&app, &unknown, &event).await.status, 404);
    let malformed = Source { id: "nonsense".into(), secret: source.secret.clone() };
    assert_eq!(send_event(&app, &malformed, &event).await.status, 404);

    let path = format!("{SOURCES}/{}", source.id);
    app.put(Role::Admin, &path, &json!({"name": "Lab", "allowed_event_types": ["lab.result.ready"], "is_active": false}))
        .await
        .expect(200);
    assert_eq!(send_event(&app, &source, &event).await.status, 404, "inactive source");
    app.delete(Role::Admin, &path).await.expect(204);
    assert_eq!(send_event(&app, &source, &event).await.status, 404, "deleted source");
    assert_eq!(app.count_rows("jobs").await, 0);
});

db_test!(async fn bad_timestamps_are_401(app) {
    let source = default_source(&app).await;
    let body = lab_event("e1", "B-1", "ok", None).to_string();
    for offset in [-301, 301, -3600, 86_400] {
        let response = send_signed_at(&app, &source, now_secs() + offset, body.as_bytes()).await;
        assert_eq!(response.status, 401, "offset {offset}: {}", response.text);
    }
    let signature = ehrs::inbound::sign(&source.secret, now_secs(), body.as_bytes());
    assert_eq!(send_raw(&app, &source.path(), None, Some(&signature), body.clone().into_bytes()).await.status, 401);
    for bad in ["", "yesterday", "1.7e9", "-1", " 1700000000"] {
        let response = send_raw(&app, &source.path(), Some(bad), Some(&signature), body.clone().into_bytes()).await;
        assert_eq!(response.status, 401, "timestamp {bad:?}");
    }
    assert_eq!(app.count_rows("jobs").await, 0);
});

db_test!(async fn bad_signatures_are_401(app) {
    let source = default_source(&app).await;
    let now = now_secs();
    let ts = now.to_string();
    let send = |signature: Option<String>, body: &'static [u8]| {
        let app = &app;
        let path = source.path();
        let ts = ts.clone();
        async move { send_raw(app, &path, Some(&ts), signature.as_deref(), body.to_vec()).await.status }
    };
    let compact: &[u8] = br#"{"event_type":"lab.result.ready","event_id":"e1","data":{"book_no":"B-1","result":"ok"}}"#;
    let spaced: &[u8] = br#"{"event_type": "lab.result.ready", "event_id": "e1", "data": {"book_no": "B-1", "result": "ok"}}"#;
    let good = ehrs::inbound::sign(&source.secret, now, compact);
    // Signed over one serialisation, sent as another: the HMAC is over the raw bytes.
    assert_eq!(send(Some(good.clone()), spaced).await, 401);
    assert_eq!(send(Some(ehrs::inbound::sign(&source.secret, now, br#"{"a":1}"#)), br#"{"a": 1}"#).await, 401);
    assert_eq!(send(None, compact).await, 401);
    assert_eq!(send(Some(ehrs::inbound::sign("whsec_wrong", now, compact)), compact).await, 401);
    assert_eq!(send(Some(ehrs::inbound::sign(&source.secret, now - 1, compact)), compact).await, 401);
    assert_eq!(send(Some(good.trim_start_matches("sha256=").to_string()), compact).await, 401);
    assert_eq!(send(Some("sha256=not-hex".into()), compact).await, 401);
    assert_eq!(send(Some("sha256=".into()), compact).await, 401);
    assert_eq!(send(Some(good.to_uppercase().replace("SHA256=", "sha256=")), compact).await, 202, "hex is case-insensitive");
    assert_eq!(app.count_rows("jobs").await, 1);
});

db_test!(async fn oversized_and_malformed_bodies_are_refused(app) {
    let source = default_source(&app).await;
    let mut huge = br#"{"event_type":"lab.result.ready","event_id":"big","data":{"book_no":"B-1","result":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 300 * 1024));
    huge.extend(br#""}}"#);
    let response = send_signed_at(&app, &source, now_secs(), &huge).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "payload_too_large");

    let not_json = send_signed_at(&app, &source, now_secs(), b"event_type=lab.result.ready").await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.error_code(), "malformed_json");
    assert_eq!(send_signed_at(&app, &source, now_secs(), b"").await.status, 400);
    for body in [json!([1, 2]), json!({"event_type": "lab.result.ready", "event_id": "e1"}),
        json!({"event_type": "lab.result.ready", "event_id": "e1", "data": "text"}),
        json!({"event_type": "lab.result.ready", "event_id": "", "data": {}})] {
        let response = send_event(&app, &source, &body).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text);
    }
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.count_rows("inbound_events").await, 0);
});

db_test!(async fn event_types_outside_the_allow_list_are_422(app) {
    let source = create_source(&app, &["lab.result.ready", "ping"], json!({})).await;
    let stock = send_event(&app, &source, &stock_event("s1", "med_01jdq3v8m2x7c9k4t6w0y5z1ab", 3)).await;
    assert_eq!(stock.status, 422);
    assert_eq!(stock.error_code(), "event_type_not_allowed");
    let ping = send_event(&app, &source, &json!({"event_type": "ping", "event_id": "p1", "data": {}})).await;
    assert_eq!(ping.status, 422);
    assert_eq!(ping.error_code(), "no_action_for_event_type");
    let missing_field = send_event(&app, &source, &json!({"event_type": "lab.result.ready", "event_id": "l1", "data": {"result": "ok"}})).await;
    assert_eq!(missing_field.status, 422);
    assert_eq!(missing_field.error_code(), "invalid_event_data");
    let blank = send_event(&app, &source, &lab_event("l2", " ", "ok", None)).await;
    assert_eq!(blank.status, 422);
    assert_eq!(blank.body["error"]["details"]["fields"][0]["field"], "data.book_no");
    assert_eq!(app.count_rows("jobs").await, 0);
});

db_test!(async fn a_replayed_event_id_answers_200_with_the_first_job(app) {
    let source = default_source(&app).await;
    let event = lab_event("lab-77", "B-1", "ok", None);
    let first = send_event(&app, &source, &event).await.expect(202);
    let again = send_event(&app, &source, &event).await.expect(200);
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(again["duplicate"], true);
    // A different body under the same id is still the same event: not enqueued.
    let changed = send_event(&app, &source, &lab_event("lab-77", "B-2", "changed", None)).await.expect(200);
    assert_eq!(changed["job_id"], first["job_id"]);
    assert_eq!(app.count_rows("jobs").await, 1);
    assert_eq!(app.count_rows("inbound_events").await, 1);

    // Concurrent replays meet at the unique index: one job in all.
    let burst = lab_event("lab-88", "B-1", "ok", None);
    let answers = futures_util::future::join_all((0..6).map(|_| send_event(&app, &source, &burst))).await;
    let created = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(created, 1, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(answers.iter().all(|a| a.status == 202 || a.status == 200));
    let job_ids: std::collections::HashSet<_> = answers.iter().map(|a| a.body["job_id"].clone()).collect();
    assert_eq!(job_ids.len(), 1);
    assert_eq!(app.count_rows("jobs").await, 2);

    // The same event id from another source is another event.
    let other = default_source(&app).await;
    send_event(&app, &other, &event).await.expect(202);
    assert_eq!(app.count_rows("jobs").await, 3);
});

db_test!(async fn a_signed_body_with_a_duplicate_key_is_refused(app) {
    let source = default_source(&app).await;
    let body = br#"{"event_type":"lab.result.ready","event_id":"d1","data":{"book_no":"B-1","result":"ok","result":"changed"}}"#;
    let answer = send_signed_at(&app, &source, now_secs(), body).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.error_code(), "duplicate_key");
    let top = br#"{"event_type":"lab.result.ready","event_id":"d2","event_id":"d3","data":{"book_no":"B-1","result":"ok"}}"#;
    assert_eq!(send_signed_at(&app, &source, now_secs(), top).await.error_code(), "duplicate_key");
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.count_rows("inbound_events").await, 0);
});
