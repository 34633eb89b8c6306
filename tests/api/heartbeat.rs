//! Heartbeats: a quiet subscription hears `webhook.heartbeat` with its last sequence
//! number every `heartbeat_interval`; traffic suppresses them; the setting's rules.

use crate::support::people::create_patient;
use crate::support::{TestApp, TestReceiver, eventually};
use ehrs::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

/// Subscribes `receiver` to every event with heartbeats every `interval`.
async fn subscribe_with_heartbeat(
    app: &TestApp,
    receiver: &TestReceiver,
    interval: &str,
) -> (String, String) {
    let created = app
        .post(
            Role::Admin,
            "/api/v1/webhooks/subscriptions",
            &json!({"url": receiver.url, "heartbeat_interval": interval}),
        )
        .await
        .expect(201);
    assert_eq!(created["heartbeat_interval"], interval);
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// Waits until no delivery is pending: every one sent and recorded.
async fn settled(app: &TestApp) {
    eventually("every delivery recorded", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'",
        )
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
            == 0
    })
    .await;
}

fn heartbeats(received: &[crate::support::Received]) -> Vec<Value> {
    received
        .iter()
        .map(|r| r.json.clone())
        .filter(|j| j["type"] == "webhook.heartbeat")
        .collect()
}

db_test!(async fn a_quiet_subscription_hears_heartbeats_carrying_its_last_sequence(app) {
    let receiver = TestReceiver::start().await;
    let (id, secret) = subscribe_with_heartbeat(&app, &receiver, "1s").await;
    create_patient(&app, "B-1").await;
    create_patient(&app, "B-2").await;
    let received = receiver.wait_for(4, PATIENCE).await;
    for delivery in &received {
        assert!(delivery.verify(&secret), "every delivery is signed, heartbeats too");
    }
    let beats = heartbeats(&received);
    assert!(beats.len() >= 2, "two heartbeats after the traffic: {received:?}");
    for beat in &beats {
        assert_eq!(beat["data"]["subscription_id"], id);
        assert_eq!(beat["data"]["heartbeat_interval"], "1s");
        let own = beat["sequence"].as_i64().unwrap();
        assert_eq!(beat["data"]["last_sequence"].as_i64().unwrap(), own - 1, "{beat}");
    }
    assert!(
        beats.iter().any(|beat| beat["data"]["last_sequence"].as_i64() >= Some(2)),
        "a heartbeat after the two events names them: {beats:?}"
    );
    let mut sequences: Vec<i64> = received.iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect();
    sequences.sort();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>(), "heartbeats keep the sequence whole");
});

db_test!(
    settings = |s| s.webhook_clock = ehrs::time::Clock::adjustable(),
    async fn traffic_suppresses_heartbeats(app) {
        let clock = &app.state.settings.webhook_clock;
        let receiver = TestReceiver::start().await;
        subscribe_with_heartbeat(&app, &receiver, "1m").await;
        // Each delivery is recorded before the clock jumps (a jump past its lease would
        // send it again).
        create_patient(&app, "B-1").await;
        receiver.wait_for(1, PATIENCE).await;
        settled(&app).await;
        clock.advance(Duration::from_secs(40));
        create_patient(&app, "B-2").await;
        receiver.wait_for(2, PATIENCE).await;
        settled(&app).await;
        // 80 s since the subscription was made, 40 s since the last delivery: quiet.
        clock.advance(Duration::from_secs(40));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(receiver.received().len(), 2, "no heartbeat while traffic flows");
        // 70 s after the last delivery: one heartbeat, naming it.
        clock.advance(Duration::from_secs(30));
        let received = receiver.wait_for(3, PATIENCE).await;
        settled(&app).await;
        let beats = heartbeats(&received);
        assert_eq!(beats.len(), 1, "{received:?}");
        assert_eq!(beats[0]["data"]["last_sequence"], 2);
        assert_eq!(beats[0]["sequence"], 3);
        // The next waits a whole interval again.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(receiver.received().len(), 3);
        clock.advance(Duration::from_secs(61));
        eventually("a second heartbeat", || async { heartbeats(&receiver.received()).len() == 2 }).await;
    }
);

db_test!(async fn the_heartbeat_setting_is_checked_shown_and_turned_off(app) {
    let receiver = TestReceiver::start().await;
    let app = &app;
    let create = |body: Value| async move { app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &body).await };
    for (interval, reason) in [("0s", "from 1s to 24h"), ("25h", "from 1s to 24h"), ("soon", "a duration such as")] {
        let refused = create(json!({"url": receiver.url, "heartbeat_interval": interval})).await;
        assert_eq!(refused.status, 422, "{interval}");
        let field = &refused.body["error"]["details"]["fields"][0];
        assert_eq!(field["field"], "heartbeat_interval");
        assert!(field["reason"].as_str().unwrap().contains(reason), "{interval}: {field}");
    }
    let unfiltered = create(json!({"url": receiver.url, "event_types": ["camp.created"], "heartbeat_interval": "10m"})).await;
    assert_eq!(unfiltered.status, 422);
    assert!(unfiltered.text.contains("webhook.heartbeat in event_types"), "{}", unfiltered.text);

    let created = create(json!({"url": receiver.url, "event_types": ["camp.created", "webhook.heartbeat"], "heartbeat_interval": "600s"}))
        .await
        .expect(201);
    assert_eq!(created["heartbeat_interval"], "10m", "shown in the largest exact unit");
    let path = format!("/api/v1/webhooks/subscriptions/{}", created["id"].as_str().unwrap());
    let narrowed = app.put(Role::Admin, &path, &json!({"event_types": ["camp.created"]})).await;
    assert_eq!(narrowed.status, 422, "a filter that drops the heartbeats it asks for: {}", narrowed.text);
    let changed = app.put(Role::Admin, &path, &json!({"heartbeat_interval": "90s"})).await.expect(200);
    assert_eq!(changed["heartbeat_interval"], "90s");
    let kept = app.put(Role::Admin, &path, &json!({"description": "lab"})).await.expect(200);
    assert_eq!(kept["heartbeat_interval"], "90s", "left out: unchanged");
    let off = app.put(Role::Admin, &path, &json!({"heartbeat_interval": null})).await.expect(200);
    assert_eq!(off["heartbeat_interval"], json!(null));
    app.put(Role::Admin, &path, &json!({"event_types": ["camp.created"]})).await.expect(200);
    assert_eq!(app.get(Role::Admin, &path).await.expect(200)["heartbeat_interval"], json!(null));
});
