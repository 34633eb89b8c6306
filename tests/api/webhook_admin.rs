//! The webhook administration API (SPEC §5) on the embedded engine.

use crate::camps::create_camp;
use crate::delivery::deliveries_of;
use crate::support::{Reply, TestApp, TestReceiver, eventually};
use ehrs::auth::Role;
use ehrs::config::parse_schedule;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

async fn audit_actions(app: &TestApp, subscription: &str) -> Vec<String> {
    let audit = app
        .get(
            Role::Admin,
            &format!("/api/v1/webhooks/audit?subscription_id={subscription}"),
        )
        .await
        .expect(200);
    let mut actions: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    actions.reverse();
    actions
}

db_test!(async fn subscription_lifecycle_never_shows_the_secret_again(app) {
    let receiver = TestReceiver::start().await;
    let created = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url, "description": "lab", "event_types": ["camp.created"], "payload": "id_only"}))
        .await
        .expect(201);
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["payload"], "id_only");
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/webhooks/subscriptions/{id}");

    let updated = app.put(Role::Admin, &path, &json!({"event_types": [], "description": "all events"})).await.expect(200);
    assert_eq!(updated["event_types"], json!([]));
    assert_eq!(updated["url"], receiver.url);
    let toggled = app.request(Method::PUT, Some(Role::Admin), &format!("{path}/toggle"), None).await.expect(200);
    assert_eq!(toggled["enabled"], false);
    let toggled = app.put(Role::Admin, &format!("{path}/toggle"), &json!({"enabled": true})).await.expect(200);
    assert_eq!(toggled["enabled"], true);

    for body in [
        app.get(Role::Admin, &path).await.text,
        app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await.text,
        app.get(Role::Admin, "/api/v1/webhooks/audit").await.text,
        app.get(Role::Admin, &format!("/api/v1/webhooks/logs/{id}")).await.text,
    ] {
        assert!(!body.contains(&secret), "the secret leaked: {body}");
        assert!(!body.contains("\"secret\""), "a secret field leaked: {body}");
    }
    let stored: String = sqlx::query_scalar("SELECT secret_enc FROM webhook_subscriptions WHERE id = $1")
        .bind(&id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(!stored.contains(secret.trim_start_matches("whsec_")), "stored in plain text");

    app.delete(Role::Admin, &path).await.expect(204);
    assert_eq!(app.get(Role::Admin, &path).await.status, 404);
    assert_eq!(
        audit_actions(&app, &id).await,
        ["subscription.created", "subscription.updated", "subscription.disabled", "subscription.enabled", "subscription.deleted"]
    );
    let audit = app.get(Role::Admin, "/api/v1/webhooks/audit").await.expect(200);
    assert_eq!(audit["items"][0]["actor"], "admin_user");
});

db_test!(
    settings = |s| s.webhooks_allow_insecure = false,
    async fn create_and_update_refuse_bad_targets_and_filters(app) {
        let plain = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "http://93.184.216.34/hook"})).await;
        assert_eq!(plain.status, 422);
        let unknown = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "https://93.184.216.34/hook", "event_types": ["patient.exploded"]}))
            .await;
        assert_eq!(unknown.status, 422);
        assert!(unknown.text.contains("patient.registered"), "the valid types are listed: {}", unknown.text);
        let created = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "https://93.184.216.34/hook"})).await.expect(201);
        let path = format!("/api/v1/webhooks/subscriptions/{}", created["id"].as_str().unwrap());
        assert_eq!(app.put(Role::Admin, &path, &json!({"url": "https://10.0.0.8/hook"})).await.status, 422);
        assert_eq!(app.put(Role::Admin, &path, &json!({"event_types": ["nope"]})).await.status, 422);
        assert_eq!(app.put(Role::Admin, &path, &json!({"secret": "mine"})).await.status, 422);
        assert_eq!(app.get(Role::Admin, &path).await.expect(200)["url"], "https://93.184.216.34/hook");
    }
);

db_test!(async fn every_admin_route_is_admin_only(app) {
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    let sub = format!("/api/v1/webhooks/subscriptions/{id}");
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/webhooks/subscriptions".into()),
        (Method::POST, "/api/v1/webhooks/subscriptions".into()),
        (Method::GET, sub.clone()),
        (Method::PUT, sub.clone()),
        (Method::DELETE, sub.clone()),
        (Method::PUT, format!("{sub}/toggle")),
        (Method::POST, format!("{sub}/test")),
        (Method::POST, format!("{sub}/rotate-secret")),
        (Method::GET, format!("{sub}/failure-stats")),
        (Method::POST, format!("{sub}/recover")),
        (Method::GET, "/api/v1/webhooks/logs".into()),
        (Method::GET, format!("/api/v1/webhooks/logs/{id}")),
        (Method::POST, "/api/v1/webhooks/logs/msg_01jdq3v8m2x7c9k4t6w0y5z1ab/retry".into()),
        (Method::GET, "/api/v1/webhooks/audit".into()),
    ];
    for (method, path) in routes {
        for role in [Role::Doctor, Role::Nurse, Role::Pharmacist, Role::Volunteer] {
            let response = app.request(method.clone(), Some(role), &path, Some(&json!({}))).await;
            assert_eq!(response.status, 403, "{method} {path} as {role:?}");
        }
        assert_eq!(app.request(method.clone(), None, &path, Some(&json!({}))).await.status, 401, "{method} {path} anonymous");
    }
    assert!(app.get(Role::Admin, &sub).await.status == 200, "the refused calls changed nothing");
    assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/subscriptions/sub_nonsense").await.status, 404);
    assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/subscriptions/sub_01jdq3v8m2x7c9k4t6w0y5z1ab").await.status, 404);
});

db_test!(async fn the_test_route_sends_now_and_answers_with_the_attempt(app) {
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::Status(503)]);
    // A filtered subscription takes a test event when its filter names webhook.test.
    let (id, secret) = app.subscribe(&receiver.url, &["camp.deleted", "webhook.test"], "full").await;
    let path = format!("/api/v1/webhooks/subscriptions/{id}/test");
    let failed = app.post(Role::Admin, &path, &json!({})).await.expect(200);
    assert_eq!(failed["attempt"]["status_code"], 503);
    let sent = app.request(Method::POST, Some(Role::Admin), &path, None).await.expect(200);
    assert_eq!(sent["attempt"]["status_code"], 200);
    assert_eq!(sent["attempt"]["response_body"], "ok");
    assert!(sent["attempt"]["id"].as_str().unwrap().starts_with("atm_"));
    let got = receiver.received();
    assert_eq!(got.len(), 2, "sent at once, whatever the filter");
    assert_eq!(got[1].json["type"], "webhook.test");
    assert_eq!(got[1].json["data"]["subscription_id"], id.as_str());
    assert!(got[1].verify(&secret));
    assert_eq!(got[1].webhook_id(), sent["message_id"].as_str().unwrap());
});

db_test!(
    settings = |s| s.webhook_secret_overlap = Duration::from_secs(2),
    async fn rotation_signs_with_both_secrets_during_the_overlap(app) {
        let receiver = TestReceiver::start().await;
        let (id, old_secret) = app.subscribe(&receiver.url, &[], "full").await;
        let rotated = app.post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/rotate-secret"), &json!({})).await.expect(200);
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, old_secret);

        create_camp(&app).await;
        let during = receiver.wait_for(1, PATIENCE).await.remove(0);
        assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
        assert!(during.verify(&old_secret), "a receiver holding only the old secret verifies");
        assert!(during.verify(&new_secret), "a receiver holding only the new secret verifies");

        tokio::time::sleep(Duration::from_millis(2100)).await;
        create_camp(&app).await;
        let after = receiver.wait_for(2, PATIENCE).await.remove(1);
        assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
        assert!(after.verify(&new_secret));
        assert!(!after.verify(&old_secret), "after the overlap the old secret no longer verifies");
        assert!(audit_actions(&app, &id).await.contains(&"subscription.secret_rotated".to_string()));
    }
);

db_test!(
    settings = |s| {
        s.webhook_retry_schedule = parse_schedule("30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms").unwrap();
        s.webhook_autopause_after = 5;
        s.webhook_endpoint_concurrency = 1;
    },
    async fn auto_pause_happens_once_under_concurrency_and_the_backlog_follows_in_order(app) {
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Status(500));
        let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
        // A second worker with many deliveries in flight at once races the first.
        let mut busy = (*app.state.settings).clone();
        busy.webhook_endpoint_concurrency = 8;
        let second_worker = ehrs::testing::start_delivery_engine(&app.state, &busy);
        futures_util::future::join_all((0..12).map(|_| create_camp(&app))).await;

        let stats_path = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
        eventually("the subscription is paused", || async {
            app.get(Role::Admin, &stats_path).await.body["enabled"] == false
        })
        .await;
        second_worker.stop().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = app.get(Role::Admin, &stats_path).await.expect(200);
        assert_eq!(stats["auto_paused"], true);
        assert!(stats["consecutive_failures"].as_i64().unwrap() >= 5);
        assert!(stats["paused_reason"].as_str().unwrap().contains("5 consecutive"));
        // Events emitted after the pause have no delivery (a disabled subscription receives
        // nothing); every delivery made before it is kept, pending.
        let held = deliveries_of(&app, &id).await;
        assert!(held.len() >= 5 && held.iter().all(|d| d.0 == "pending"), "{held:?}");
        assert_eq!(stats["pending_deliveries"], held.len() as i64, "nothing is dropped while paused");
        let pauses = audit_actions(&app, &id).await.iter().filter(|a| *a == "subscription.auto_paused").count();
        assert_eq!(pauses, 1, "paused exactly once");

        // Deliveries that come due while paused are held, then go out in order.
        let attempts_while_paused = receiver.received().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), attempts_while_paused, "nothing is sent while paused");
        receiver.always(Reply::Status(200));
        app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}"), &json!({})).await.expect(200);
        sqlx::query("UPDATE webhook_subscriptions SET enabled = 0 WHERE id = $1").bind(&id).execute(app.state.db.pool()).await.unwrap();
        let enabled = app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/toggle"), &json!({"enabled": true})).await.expect(200);
        assert_eq!(enabled["paused_reason"], Value::Null);
        eventually("the backlog is delivered", || async {
            deliveries_of(&app, &id).await.iter().all(|d| d.0 == "delivered")
        })
        .await;
        let after: Vec<i64> = receiver.received()[attempts_while_paused..]
            .iter()
            .map(|r| r.json["sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(after.len(), held.len());
        assert_eq!(after, (1..=held.len() as i64).collect::<Vec<_>>(), "in order, with the original sequence numbers");
        let stats = app.get(Role::Admin, &stats_path).await.expect(200);
        assert_eq!(stats["consecutive_failures"], 0);
    }
);

db_test!(
    settings = |s| s.webhook_retry_schedule = parse_schedule("30ms").unwrap(),
    async fn logs_filter_and_page_and_retry_keeps_the_webhook_id(app) {
        let receiver = TestReceiver::start().await;
        let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
        receiver.script([Reply::Status(500), Reply::Status(500)]);
        create_camp(&app).await; // fails twice: exhausted
        eventually("exhausted", || async { deliveries_of(&app, &id).await.first().is_some_and(|d| d.0 == "exhausted") }).await;
        create_camp(&app).await;
        create_camp(&app).await;
        eventually("delivered", || async { deliveries_of(&app, &id).await.iter().filter(|d| d.0 == "delivered").count() == 2 }).await;

        let all = app.get(Role::Admin, "/api/v1/webhooks/logs").await.expect(200);
        assert_eq!(all["items"].as_array().unwrap().len(), 3);
        assert_eq!(all["next_cursor"], Value::Null);
        let exhausted = app.get(Role::Admin, "/api/v1/webhooks/logs?status=exhausted").await.expect(200);
        assert_eq!(exhausted["items"].as_array().unwrap().len(), 1);
        let message = exhausted["items"][0].clone();
        assert_eq!(message["deliveries"][0]["status"], "exhausted");
        assert_eq!(message["deliveries"][0]["attempts"], 2);
        assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/logs?status=delivered").await.expect(200)["items"].as_array().unwrap().len(), 2);
        assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/logs?event_type=camp.deleted").await.expect(200)["items"].as_array().unwrap().len(), 0);
        assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/logs?status=bogus").await.status, 422);
        assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/logs?since=2999-01-01T00:00:00Z").await.expect(200)["items"].as_array().unwrap().len(), 0);

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/webhooks/logs?limit=1&cursor={c}"),
                None => "/api/v1/webhooks/logs?limit=1".to_string(),
            };
            let page = app.get(Role::Admin, &path).await.expect(200);
            seen.push(page["items"][0]["id"].as_str().unwrap().to_string());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 3, "cursor paging visits every message once: {seen:?}");

        let attempts = app.get(Role::Admin, &format!("/api/v1/webhooks/logs/{id}")).await.expect(200);
        assert_eq!(attempts["items"].as_array().unwrap().len(), 4);

        let msg = message["id"].as_str().unwrap();
        let requeued = app.post(Role::Admin, &format!("/api/v1/webhooks/logs/{msg}/retry"), &json!({})).await.expect(202);
        assert_eq!(requeued["requeued"], 1);
        eventually("the retried message arrives", || async { receiver.received().iter().filter(|r| r.webhook_id() == msg).count() == 3 }).await;
        eventually("and is recorded delivered", || async { deliveries_of(&app, &id).await.iter().all(|d| d.0 == "delivered") }).await;
        // To one subscription explicitly: sent again even though delivered.
        app.post(Role::Admin, &format!("/api/v1/webhooks/logs/{msg}/retry"), &json!({"subscription_id": id})).await.expect(202);
        eventually("sent once more", || async { receiver.received().iter().filter(|r| r.webhook_id() == msg).count() == 4 }).await;
        assert_eq!(app.post(Role::Admin, "/api/v1/webhooks/logs/msg_01jdq3v8m2x7c9k4t6w0y5z1ab/retry", &json!({})).await.status, 404);
    }
);

db_test!(
    settings = |s| s.webhook_retry_schedule = parse_schedule("").unwrap(),
    async fn recover_requeues_a_window_with_original_ids(app) {
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Status(500));
        let (id, secret) = app.subscribe(&receiver.url, &[], "full").await;
        for _ in 0..3 {
            create_camp(&app).await;
        }
        eventually("all exhausted", || async {
            let d = deliveries_of(&app, &id).await;
            d.len() == 3 && d.iter().all(|d| d.0 == "exhausted")
        })
        .await;
        let failed_ids: Vec<String> = receiver.received().iter().map(|r| r.webhook_id().to_string()).collect();
        receiver.always(Reply::Status(200));
        let path = format!("/api/v1/webhooks/subscriptions/{id}/recover");
        assert_eq!(app.post(Role::Admin, &path, &json!({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})).await.status, 422);
        let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let recovered = app.post(Role::Admin, &path, &json!({"since": since})).await.expect(202);
        assert_eq!(recovered["requeued"], 3);
        let got = receiver.wait_for(6, PATIENCE).await;
        let mut again: Vec<String> = got[3..].iter().map(|r| r.webhook_id().to_string()).collect();
        let mut before = failed_ids.clone();
        again.sort();
        before.sort();
        assert_eq!(again, before, "the same messages, with their original webhook-ids");
        assert!(got[3..].iter().all(|r| r.verify(&secret)));
    }
);

db_test!(async fn retention_clears_payloads_but_keeps_the_log(app) {
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    create_camp(&app).await;
    receiver.wait_for(1, PATIENCE).await;
    eventually("delivered", || async { deliveries_of(&app, &id).await.iter().all(|d| d.0 == "delivered") }).await;
    let purged = ehrs::testing::purge_webhook_payloads(&app.state, 0).await.unwrap();
    assert_eq!(purged.payloads, 1);
    assert_eq!(purged.response_bodies, 1);
    let payload: Option<String> = sqlx::query_scalar("SELECT payload FROM webhook_messages").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(payload, None);
    let logs = app.get(Role::Admin, "/api/v1/webhooks/logs").await.expect(200);
    assert_eq!(logs["items"][0]["deliveries"][0]["status"], "delivered");
    let attempts = app.get(Role::Admin, &format!("/api/v1/webhooks/logs/{id}")).await.expect(200);
    assert_eq!(attempts["items"][0]["status_code"], 200);
    assert_eq!(attempts["items"][0]["response_body"], Value::Null);
    let msg = logs["items"][0]["id"].as_str().unwrap();
    let retry = app.post(Role::Admin, &format!("/api/v1/webhooks/logs/{msg}/retry"), &json!({"subscription_id": id})).await;
    assert_eq!(retry.status, 409);
    assert_eq!(retry.error_code(), "payload_expired");
});
