//! `WEBHOOK_BACKEND=svix` against the fake Svix server (real HTTP, Svix's JSON shapes and
//! errors, real signed deliveries to local receivers). Each test runs on both databases.

use crate::support::fake_svix::FakeSvix;
use crate::support::{Backend, Reply, TestApp, TestReceiver};
use ehrs::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "testsk_ehrs_fake_svix_token";
const APP_UID: &str = "camp-test";
const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(20);

/// Declares a Svix-backend test on SQLite and PostgreSQL: `svix_test!(async fn name(app, svix) {..})`.
/// With `down` first, the fake Svix is down when the server starts.
macro_rules! svix_test {
    ($(down = $down:expr,)? async fn $name:ident($app:ident, $svix:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($app: TestApp, $svix: FakeSvix) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite, false $(|| $down)?, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Backend::Postgres, false $(|| $down)?, body).await;
            }
        }
    };
}

async fn run<F, Fut>(backend: Backend, down: bool, body: F)
where
    F: FnOnce(TestApp, FakeSvix) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let svix = FakeSvix::start(TOKEN).await;
    svix.set_down(down);
    let url = svix.url().to_string();
    let (app, cleanup) = TestApp::spawn_with(backend, move |s| {
        s.webhook_backend = "svix".into();
        s.svix_server_url = Some(url);
        s.svix_auth_token = Some(TOKEN.into());
        s.svix_app_id = APP_UID.into();
        s.svix_ops_webhook_secret = Some(OPS_SECRET.into());
        s.webhook_autopause_after = 3;
        // Under Svix the clock only times the payload retention, which a test moves.
        s.webhook_clock = ehrs::time::Clock::adjustable();
    })
    .await;
    let outcome = tokio::spawn(body(app, svix)).await;
    cleanup.run().await;
    if let Err(err) = outcome
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn health(app: &TestApp) -> Value {
    app.request(reqwest::Method::GET, None, "/health", None)
        .await
        .expect(200)
}

async fn wait_until_registered(app: &TestApp) {
    crate::support::eventually("registration with Svix", || async {
        health(app).await["webhooks"] == "ok"
    })
    .await;
}

async fn create_camp(app: &TestApp) -> Value {
    app.post(
        Role::Admin,
        "/api/v1/medical-camps",
        &crate::camps::camp_body(),
    )
    .await
    .expect(201)
}

/// Outbox event ids, oldest first.
async fn outbox_event_ids(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM webhook_messages ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

/// Svix messages carrying our `camp.*` events (the fake also holds test messages).
fn event_messages(svix: &FakeSvix) -> Vec<Value> {
    svix.messages()
        .into_iter()
        .filter(|m| m["eventType"] != "webhook.test")
        .collect()
}

/// Posts an operational webhook signed with `secret` (or unsigned with `None`).
async fn post_ops(app: &TestApp, secret: Option<&str>, webhook_id: &str, body: &Value) -> u16 {
    let payload = body.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = app
        .client
        .post(format!(
            "{}/api/v1/webhooks/internal/svix-ops",
            app.base_url
        ))
        .header("content-type", "application/json")
        .header("svix-id", webhook_id)
        .header("svix-timestamp", timestamp.to_string());
    if let Some(secret) = secret {
        let signature = svix::webhooks::Webhook::new(secret)
            .unwrap()
            .sign(webhook_id, timestamp, payload.as_bytes())
            .unwrap();
        request = request.header("svix-signature", signature);
    }
    request
        .body(payload)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The `/logs` entry of one event, as one subscription's log shows it.
async fn message_log(app: &TestApp, subscription: &str, event_id: &str) -> Value {
    let logs = app
        .get(
            Role::Admin,
            &format!("/api/v1/webhooks/logs?subscription_id={subscription}"),
        )
        .await
        .expect(200);
    let items = logs["items"].as_array().unwrap();
    items
        .iter()
        .find(|m| m["event_id"] == event_id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn endpoint_of(svix: &FakeSvix, subscription: &str) -> Value {
    svix.endpoints()
        .into_iter()
        .find(|e| e["uid"] == subscription)
        .unwrap_or_else(|| panic!("no Svix endpoint with uid {subscription}"))
}

svix_test!(async fn start_up_registers_the_application_and_every_event_type(app, svix) {
    wait_until_registered(&app).await;
    let apps = svix.apps();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["uid"], APP_UID);

    let types = svix.event_types();
    let names: std::collections::BTreeSet<&str> =
        types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: std::collections::BTreeSet<&str> =
        ehrs::outbound::EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, expected);
    // Each schema is the envelope of the OpenAPI document, self-contained, and its
    // example validates against it.
    for event_type in &types {
        let schema = &event_type["schemas"]["1"];
        assert_eq!(schema["title"], event_type["name"]);
        assert!(!schema.to_string().contains("#/components/"), "{schema}");
        let validator = jsonschema::validator_for(schema).expect("a valid JSON schema");
        let example = &schema["examples"][0];
        assert!(validator.is_valid(example), "example of {} fails its schema", event_type["name"]);
    }
    let health = health(&app).await;
    assert_eq!(health["webhook_backend"], "svix");
    assert_eq!(health["status"], "ok");
});

svix_test!(down = true, async fn with_svix_down_the_api_works_and_nothing_is_lost(app, svix) {
    let health_now = health(&app).await;
    assert_eq!(health_now["webhooks"], "degraded");
    assert!(health_now["webhooks_detail"].as_str().unwrap().contains("Svix"), "{health_now}");
    // The clinical API does not wait for Svix.
    create_camp(&app).await;
    create_camp(&app).await;
    assert_eq!(health(&app).await["queue_depth"], 2);
    assert!(event_messages(&svix).is_empty());

    svix.set_down(false);
    wait_until_registered(&app).await;
    crate::support::eventually("the outbox relayed", || async {
        event_messages(&svix).len() == 2
    })
    .await;
    // The same events (the relay sends a few at once, so not necessarily in order).
    let mut relayed: Vec<String> = event_messages(&svix)
        .iter()
        .map(|m| m["eventId"].as_str().unwrap().to_string())
        .collect();
    relayed.sort();
    let mut outbox = outbox_event_ids(&app).await;
    outbox.sort();
    assert_eq!(relayed, outbox);
    crate::support::eventually("queue drained", || async {
        health(&app).await["queue_depth"] == 0
    })
    .await;
});

svix_test!(async fn svix_failing_mid_relay_loses_and_duplicates_nothing(app, svix) {
    wait_until_registered(&app).await;
    create_camp(&app).await;
    crate::support::eventually("first event relayed", || async {
        event_messages(&svix).len() == 1
    })
    .await;

    // Svix goes down (and then rate-limits) while events keep coming.
    svix.set_down(true);
    for _ in 0..3 {
        create_camp(&app).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(event_messages(&svix).len(), 1);
    crate::support::eventually("degraded while Svix is down", || async {
        health(&app).await["webhooks"] == "degraded"
    })
    .await;
    svix.rate_limit_next(2);
    svix.set_down(false);
    crate::support::eventually("backlog relayed", || async {
        event_messages(&svix).len() == 4
    })
    .await;

    // A crash between Svix's answer and our mark: the relay sends the message again,
    // and Svix's idempotency makes it the same message.
    let creates = svix.message_create_requests();
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("UPDATE webhook_messages SET relayed_at = NULL")
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    crate::support::eventually("re-relayed", || async {
        svix.message_create_requests() >= creates + 4 && health(&app).await["queue_depth"] == 0
    })
    .await;
    let messages = event_messages(&svix);
    assert_eq!(messages.len(), 4, "one Svix message per event");
    let mut event_ids: Vec<&str> = messages.iter().map(|m| m["eventId"].as_str().unwrap()).collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 4);
    assert_eq!(health(&app).await["webhooks"], "ok");
});

svix_test!(async fn subscriptions_are_svix_endpoints(app, svix) {
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    let created = app
        .post(
            Role::Admin,
            "/api/v1/webhooks/subscriptions",
            &json!({"url": receiver.url, "description": "lab", "event_types": ["camp.created"]}),
        )
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("sub_"));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["payload"], "full");
    let endpoint = endpoint_of(&svix, id);
    assert_eq!(endpoint["url"], receiver.url);
    assert_eq!(endpoint["description"], "lab");
    assert_eq!(endpoint["channels"], json!(["full"]));
    assert_eq!(endpoint["metadata"]["ehrs_payload"], "full");
    // The secret we hand out is the one Svix signs with.
    let secret = svix
        .client()
        .endpoint()
        .get_secret(APP_UID.into(), id.into())
        .await
        .unwrap()
        .key;
    assert_eq!(created["secret"], secret);

    assert_eq!(created["ordered"], false);
    // Svix has no ordered delivery: asking for it is refused, on create and on update.
    let refused = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url, "ordered": true}))
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["error"]["details"]["fields"][0]["field"], "ordered", "{}", refused.body);
    app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}"), &json!({"ordered": true}))
        .await
        .expect(422);
    assert_eq!(created["heartbeat_interval"], json!(null));
    // Nor heartbeats: EHRS sends none through Svix.
    let refused = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url, "heartbeat_interval": "10m"}))
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["error"]["details"]["fields"][0]["field"], "heartbeat_interval", "{}", refused.body);
    assert!(refused.text.contains("embedded engine only"), "{}", refused.text);
    app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}"), &json!({"heartbeat_interval": "10m"}))
        .await
        .expect(422);

    let got = app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await.expect(200);
    assert_eq!(got["event_types"], json!(["camp.created"]));
    let list = app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await.expect(200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id);

    let updated = app
        .put(
            Role::Admin,
            &format!("/api/v1/webhooks/subscriptions/{id}"),
            &json!({"event_types": [], "payload": "id_only"}),
        )
        .await
        .expect(200);
    assert_eq!(updated["payload"], "id_only");
    assert_eq!(updated["event_types"], json!([]));
    assert_eq!(updated["description"], "lab");
    let endpoint = endpoint_of(&svix, id);
    assert_eq!(endpoint["channels"], json!(["id_only"]));
    assert_eq!(endpoint["url"], receiver.url);

    let toggled = app
        .put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/toggle"), &json!({"enabled": false}))
        .await
        .expect(200);
    assert_eq!(toggled["enabled"], false);
    assert_eq!(endpoint_of(&svix, id)["disabled"], true);

    let rotated = app
        .post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/rotate-secret"), &json!({}))
        .await
        .expect(200);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let held = svix.client().endpoint().get_secret(APP_UID.into(), id.into()).await.unwrap().key;
    assert_eq!(held, new_secret);

    assert_eq!(app.delete(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await.status, 204);
    assert!(svix.endpoints().is_empty());
    let gone = app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "not_found");
    // Every change is audited, as with the embedded engine.
    let audit = app.get(Role::Admin, "/api/v1/webhooks/audit").await.expect(200);
    assert_eq!(audit["total"], 5);
});

svix_test!(async fn svix_delivers_what_the_outbox_holds_signed_with_the_subscription_secret(app, _svix) {
    wait_until_registered(&app).await;
    let full = TestReceiver::start().await;
    let ids_only = TestReceiver::start().await;
    let (_, full_secret) = app.subscribe(&full.url, &[], "full").await;
    let (_, ids_secret) = app.subscribe(&ids_only.url, &[], "id_only").await;
    let camp = create_camp(&app).await;

    let got = full.wait_for(1, WAIT).await;
    assert!(got[0].verify(&full_secret));
    assert_eq!(got[0].json["type"], "camp.created");
    assert_eq!(got[0].json["data"]["name"], camp["name"]);
    let event_id = outbox_event_ids(&app).await.pop().unwrap();
    assert_eq!(got[0].json["event_id"], event_id.as_str());
    assert!(got[0].json.get("sequence").is_none());

    let got = ids_only.wait_for(1, WAIT).await;
    assert!(got[0].verify(&ids_secret));
    assert_eq!(got[0].json["event_id"], event_id.as_str());
    assert_eq!(got[0].json["data"]["id"], camp["id"]);
    assert!(got[0].json["data"].get("name").is_none(), "no clinical fields: {}", got[0].json);
    // Neither receiver got the other's copy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(full.received().len(), 1);
    assert_eq!(ids_only.received().len(), 1);
});

svix_test!(async fn re_enabling_sends_what_was_held_but_not_what_came_while_disabled(app, svix) {
    // Issue 12 (2): the open-source Svix has no `replay-missing` (404), and Svix drops a
    // disabled endpoint's retries instead of holding them.
    svix.set_retry_schedule(&[Duration::from_millis(300)]);
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::Status(500)]);
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    let toggle = format!("/api/v1/webhooks/subscriptions/{id}/toggle");
    let held = create_camp(&app).await;
    svix.wait_for_attempts(1, WAIT).await;
    // Disabled while its retry is scheduled: Svix drops the retry when it comes due.
    app.put(Role::Admin, &toggle, &json!({"enabled": false})).await.expect(200);
    create_camp(&app).await;
    crate::support::eventually("relayed", || async { event_messages(&svix).len() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 1, "nothing reaches a disabled endpoint");
    let logs = app.get(Role::Admin, "/api/v1/webhooks/logs?status=failed").await.expect(200);
    assert_eq!(logs["items"].as_array().unwrap().len(), 1, "held: {logs}");

    app.put(Role::Admin, &toggle, &json!({"enabled": true})).await.expect(200);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json["data"]["id"], held["id"], "the held delivery goes out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 2, "the event emitted while disabled does not");
    assert_eq!(svix.requests("POST /api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing"), 0);
    crate::support::eventually("delivered in the logs", || async {
        let logs = app.get(Role::Admin, "/api/v1/webhooks/logs?status=delivered").await.expect(200);
        logs["items"].as_array().unwrap().len() == 1
    })
    .await;
});

svix_test!(async fn the_test_route_delivers_to_that_subscription_only(app, svix) {
    // Issue 12 (1): Svix's `send-example` message has no channels, so Svix does not send
    // it to an endpoint that listens on channels, as every EHRS endpoint does.
    wait_until_registered(&app).await;
    let tested = TestReceiver::start().await;
    let other = TestReceiver::start().await;
    let (id, secret) = app.subscribe(&tested.url, &["camp.created", "webhook.test"], "full").await;
    app.subscribe(&other.url, &[], "full").await;
    let answer = app
        .post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/test"), &json!({}))
        .await
        .expect(200);
    assert_eq!(answer["attempt"]["status_code"], 200, "{answer}");
    let got = tested.wait_for(1, WAIT).await;
    assert!(got[0].verify(&secret));
    assert_eq!(got[0].json["type"], "webhook.test");
    assert_eq!(got[0].header("svix-id"), answer["message_id"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tested.received().len(), 1, "sent once");
    assert!(other.received().is_empty(), "only to the subscription tested");
    let _ = svix;
});

svix_test!(async fn auto_pause_counts_each_troubled_message_once_audits_and_holds_the_cut_off(app, svix) {
    // Issue 12 (4) and (6): Svix reports a message `failing` after its 4th failed attempt
    // and `exhausted` after its last; that is one troubled message.
    // A long wait after the 4th attempt, so that the pause lands before the next one.
    let quick = Duration::from_millis(40);
    let long = Duration::from_millis(1500);
    svix.set_retry_schedule(&[quick, quick, quick, long, quick]);
    svix.send_operational_webhooks(&format!("{}/api/v1/webhooks/internal/svix-ops", app.base_url), OPS_SECRET);
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::Status(500));
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    let stats_path = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
    let exhausted = |n: usize| {
        let svix = svix.clone();
        async move {
            svix.operational_webhooks().iter().filter(|w| w["type"] == "message.attempt.exhausted").count() == n
        }
    };
    for n in 1..=2 {
        create_camp(&app).await;
        crate::support::eventually("failing, then exhausted", || exhausted(n)).await;
        crate::support::eventually("the webhooks applied", || async {
            app.get(Role::Admin, &stats_path).await.expect(200)["last_failure_at"].is_string()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = app.get(Role::Admin, &stats_path).await.expect(200);
        assert_eq!(stats["consecutive_failures"], n, "one per message: {stats}");
        assert_eq!(stats["auto_paused"], false);
    }
    let sent = svix.operational_webhooks();
    let kinds: Vec<&str> = sent.iter().map(|w| w["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message.attempt.failing", "message.attempt.exhausted"].repeat(2));

    // The third troubled message pauses (limit 3 here), with the audit entry the
    // embedded engine writes; its remaining retries are cut off by the pause.
    create_camp(&app).await;
    let cut_off = outbox_event_ids(&app).await.pop().unwrap();
    crate::support::eventually("auto-paused", || async {
        app.get(Role::Admin, &stats_path).await.expect(200)["auto_paused"] == true
    })
    .await;
    assert_eq!(endpoint_of(&svix, &id)["disabled"], true);
    let audit = app.get(Role::Admin, &format!("/api/v1/webhooks/audit?subscription_id={id}")).await.expect(200);
    let paused: Vec<&Value> = audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "subscription.auto_paused").collect();
    assert_eq!(paused.len(), 1, "{audit}");
    assert_eq!(paused[0]["actor"], "system");
    assert!(paused[0]["details"]["reason"].as_str().unwrap().contains("3 consecutive"), "{audit}");
    // Past the retry Svix dropped.
    tokio::time::sleep(long + Duration::from_millis(300)).await;
    let held = message_log(&app, &id, &cut_off).await;
    assert_eq!(held["deliveries"][0]["status"], "failed", "held while paused: {held}");

    // Re-enabling sends it, and only then is the streak reset.
    receiver.always(Reply::Status(200));
    app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/toggle"), &json!({"enabled": true}))
        .await
        .expect(200);
    crate::support::eventually("the cut-off delivery sent", || async {
        message_log(&app, &id, &cut_off).await["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!((stats["consecutive_failures"].clone(), stats["auto_paused"].clone()), (json!(0), json!(false)));
});

svix_test!(async fn identifier_only_copies_go_out_only_for_the_types_an_id_only_subscription_takes(app, svix) {
    // Issue 12 (6).
    wait_until_registered(&app).await;
    let full = TestReceiver::start().await;
    let ids = TestReceiver::start().await;
    app.subscribe(&full.url, &[], "full").await;
    app.subscribe(&ids.url, &["camp.deleted"], "id_only").await;
    let camp = create_camp(&app).await;
    full.wait_for(1, WAIT).await;
    let copies = |svix: &FakeSvix| {
        event_messages(svix).iter().filter(|m| m["eventId"].as_str().unwrap().ends_with(".id_only")).count()
    };
    assert_eq!(copies(&svix), 0, "no id_only subscription takes camp.created");
    let deleted = app.delete(Role::Admin, &format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap())).await;
    assert!(deleted.status < 300, "{}", deleted.status);
    let got = ids.wait_for(1, WAIT).await;
    assert_eq!(got[0].json["type"], "camp.deleted");
    assert_eq!(copies(&svix), 1);
});

svix_test!(async fn logs_retry_recover_test_and_stats_are_served_by_svix(app, svix) {
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    create_camp(&app).await;
    receiver.wait_for(1, WAIT).await;
    svix.wait_for_attempts(1, WAIT).await;

    let logs = app.get(Role::Admin, "/api/v1/webhooks/logs").await.expect(200);
    let message = &logs["items"][0];
    assert_eq!(message["event_type"], "camp.created");
    assert_eq!(message["event_id"], outbox_event_ids(&app).await[0].as_str());
    assert_eq!(message["deliveries"][0]["subscription_id"], id.as_str());
    assert_eq!(message["deliveries"][0]["status"], "delivered");
    let svix_message = message["id"].as_str().unwrap().to_string();
    let filtered = app
        .get(Role::Admin, &format!("/api/v1/webhooks/logs?subscription_id={id}&status=delivered"))
        .await
        .expect(200);
    assert_eq!(filtered["items"][0]["id"], svix_message.as_str());
    let none = app.get(Role::Admin, "/api/v1/webhooks/logs?status=exhausted").await.expect(200);
    assert_eq!(none["items"], json!([]));
    assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/logs?status=lost").await.status, 422);

    let attempts = app.get(Role::Admin, &format!("/api/v1/webhooks/logs/{id}")).await.expect(200);
    assert_eq!(attempts["items"][0]["status_code"], 200);
    assert_eq!(attempts["items"][0]["message_id"], svix_message.as_str());

    // Retry by Svix's id, and by our outbox id (looked up by event id).
    let retried = app
        .post(Role::Admin, &format!("/api/v1/webhooks/logs/{svix_message}/retry"), &json!({"subscription_id": id}))
        .await
        .expect(202);
    assert_eq!(retried["requeued"], 1);
    let outbox_id: String = sqlx::query_scalar("SELECT id FROM webhook_messages")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    app.post(Role::Admin, &format!("/api/v1/webhooks/logs/{outbox_id}/retry"), &json!({"subscription_id": id}))
        .await
        .expect(202);
    assert_eq!(svix.resend_calls().len(), 2);
    receiver.wait_for(3, WAIT).await;
    assert_eq!(app.post(Role::Admin, "/api/v1/webhooks/logs/msg_nope/retry", &json!({})).await.status, 404);

    // Svix recovers at most 14 days back; its refusal is a clear 422.
    let recover_path = format!("/api/v1/webhooks/subscriptions/{id}/recover");
    let too_old = app.post(Role::Admin, &recover_path, &json!({"since": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(too_old.status, 422);
    assert_eq!(too_old.body["error"]["details"]["fields"][0]["field"], "since");
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let recovered = app.post(Role::Admin, &recover_path, &json!({"since": since})).await.expect(202);
    assert_eq!(recovered["requeued"], Value::Null);
    assert_eq!(svix.recover_calls().len(), 1);

    let tested = app.post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/test"), &json!({})).await.expect(200);
    assert!(tested["message_id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(tested["attempt"]["status_code"], 200);

    let stats = app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/failure-stats")).await.expect(200);
    assert_eq!(stats["consecutive_failures"], 0);
    assert_eq!(stats["enabled"], true);
    assert_eq!(stats["auto_paused"], false);
});

svix_test!(async fn svix_errors_become_clear_json_errors(app, svix) {
    wait_until_registered(&app).await;
    let missing = app.get(Role::Admin, "/api/v1/webhooks/subscriptions/sub_01jdq3v8m2x7c9k4t6w0y5z1ab").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");

    svix.rate_limit_next(1);
    let limited = app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await;
    assert_eq!(limited.status, 503);
    assert_eq!(limited.error_code(), "svix_rate_limited");

    svix.set_down(true);
    let down = app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await;
    assert_eq!(down.status, 502);
    assert_eq!(down.error_code(), "svix_unavailable");
    assert_eq!(down.body["error"]["details"]["svix"]["code"], "server_error");

    // A write that Svix could not take changes nothing here either.
    let receiver = TestReceiver::start().await;
    let refused = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url}))
        .await;
    assert_eq!(refused.status, 502);
    assert_eq!(app.get(Role::Admin, "/api/v1/webhooks/audit").await.expect(200)["total"], 0);
    svix.set_down(false);
    assert!(svix.endpoints().is_empty());
    // Non-admins never reach Svix.
    assert_eq!(app.get(Role::Doctor, "/api/v1/webhooks/subscriptions").await.status, 403);
});

svix_test!(async fn operational_webhooks_are_verified_and_drive_auto_pause(app, svix) {
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    let endpoint_id = endpoint_of(&svix, &id)["id"].as_str().unwrap().to_string();
    let failing = |n: usize| {
        json!({"type": "message.attempt.failing", "data": {
            "appId": "app_x", "appUid": APP_UID, "endpointId": endpoint_id, "msgId": format!("msg_{n}"),
            "msgEventId": null,
            "lastAttempt": {"id": format!("atmpt_{n}"), "responseStatusCode": 500, "timestamp": "2026-11-29T10:00:00Z"}}})
    };

    // Unsigned, wrongly signed, or signed with another secret: 401, no effect.
    assert_eq!(post_ops(&app, None, "msg_ops_0", &failing(0)).await, 401);
    assert_eq!(post_ops(&app, Some("whsec_QmFkU2VjcmV0QmFkU2VjcmV0QmFkU2Vj"), "msg_ops_0", &failing(0)).await, 401);
    let stats_path = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
    assert_eq!(app.get(Role::Admin, &stats_path).await.expect(200)["consecutive_failures"], 0);

    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_1", &failing(1)).await, 204);
    // Svix retrying the same operational webhook changes nothing.
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_1", &failing(1)).await, 204);
    assert_eq!(app.get(Role::Admin, &stats_path).await.expect(200)["consecutive_failures"], 1);

    // A recovery resets the streak.
    let mut recovered = failing(2);
    recovered["type"] = json!("message.attempt.recovered");
    recovered["data"]["lastAttempt"]["responseStatusCode"] = json!(200);
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_2", &recovered).await, 204);
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!(stats["consecutive_failures"], 0);
    assert!(stats["last_success_at"].is_string());

    // Three in a row (the configured limit), arriving together: paused exactly once.
    let patches_before = svix.requests("PATCH /api/v1/app/{app_id}/endpoint/{endpoint_id}");
    let posts = (3..7).map(|n| {
        let app = &app;
        let body = failing(n);
        async move { post_ops(app, Some(OPS_SECRET), &format!("msg_ops_{n}"), &body).await }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!(stats["consecutive_failures"], 4);
    assert_eq!(stats["auto_paused"], true);
    assert_eq!(stats["enabled"], false);
    assert!(stats["paused_reason"].as_str().unwrap().contains("consecutive"), "{stats}");
    assert_eq!(endpoint_of(&svix, &id)["disabled"], true);
    assert_eq!(
        svix.requests("PATCH /api/v1/app/{app_id}/endpoint/{endpoint_id}") - patches_before,
        1,
        "disabled once"
    );
    let subscription = app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await.expect(200);
    assert!(subscription["paused_reason"].is_string());

    // Re-enabling resets the streak and the pause.
    app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}/toggle"), &json!({"enabled": true}))
        .await
        .expect(200);
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!(stats["consecutive_failures"], 0);
    assert_eq!(stats["auto_paused"], false);
    assert_eq!(endpoint_of(&svix, &id)["disabled"], false);

    // Svix disabling the endpoint itself is recorded as an automatic pause.
    svix.client()
        .endpoint()
        .patch(APP_UID.into(), id.clone(), svix::models::EndpointPatch { disabled: Some(true), ..Default::default() })
        .await
        .unwrap();
    let disabled = json!({"type": "endpoint.disabled", "data": {
        "appId": "app_x", "appUid": APP_UID, "endpointId": endpoint_id, "endpointUid": null,
        "failSince": "2026-11-24T10:00:00Z"}});
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_9", &disabled).await, 204);
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!(stats["auto_paused"], true);
    assert!(stats["paused_reason"].as_str().unwrap().contains("Svix"), "{stats}");

    // Events about other applications or unknown types are acknowledged and ignored.
    let mut other = failing(10);
    other["data"]["appUid"] = json!("someone-else");
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_10", &other).await, 204);
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_11", &json!({"type": "endpoint.created", "data": {}})).await, 204);
    let malformed = app
        .client
        .post(format!("{}/api/v1/webhooks/internal/svix-ops", app.base_url))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 401, "unsigned garbage is refused before parsing");
});

svix_test!(async fn a_pause_svix_cannot_take_is_undone_until_the_webhook_comes_again(app, svix) {
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    // `endpointUid` given, so that applying the webhook needs Svix only for the pause.
    let failing = |n: usize| {
        json!({"type": "message.attempt.failing", "data": {
            "appId": "app_x", "appUid": APP_UID, "endpointId": "ep_x", "endpointUid": id, "msgId": format!("msg_{n}"),
            "msgEventId": null,
            "lastAttempt": {"id": format!("atmpt_{n}"), "responseStatusCode": 500, "timestamp": "2026-11-29T10:00:00Z"}}})
    };
    for n in 1..=2 {
        assert_eq!(post_ops(&app, Some(OPS_SECRET), &format!("msg_ops_{n}"), &failing(n)).await, 204);
    }
    let paused_entries = || async {
        let audit = app.get(Role::Admin, &format!("/api/v1/webhooks/audit?subscription_id={id}")).await.expect(200);
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "subscription.auto_paused").count()
    };
    // The third would pause, but Svix cannot be reached: nothing of the pause stays.
    svix.set_down(true);
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_3", &failing(3)).await, 502);
    svix.set_down(false);
    assert_eq!(paused_entries().await, 0, "no audit entry for a pause that did not happen");
    let stats_path = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!((stats["auto_paused"].clone(), stats["enabled"].clone()), (json!(false), json!(true)), "{stats}");
    // Svix sends the webhook again: now it pauses, audited once, the message counted once.
    assert_eq!(post_ops(&app, Some(OPS_SECRET), "msg_ops_3", &failing(3)).await, 204);
    let stats = app.get(Role::Admin, &stats_path).await.expect(200);
    assert_eq!(stats["auto_paused"], true, "{stats}");
    assert_eq!(stats["consecutive_failures"], 3, "{stats}");
    assert_eq!(endpoint_of(&svix, &id)["disabled"], true);
    assert_eq!(paused_entries().await, 1);
});

db_test!(async fn the_svix_ops_route_is_404_under_the_embedded_engine(app) {
    let status = post_ops(&app, Some(OPS_SECRET), "msg_1", &json!({"type": "endpoint.disabled", "data": {}})).await;
    assert_eq!(status, 404);
});

svix_test!(async fn subscriptions_left_from_the_embedded_engine_get_nothing_queued(app, svix) {
    wait_until_registered(&app).await;
    // A subscription row from before the switch to Svix.
    let leftover = ehrs::outbound::subscriptions::NewSubscription {
        url: "https://lab.example.org/hook".into(),
        description: String::new(),
        event_types: vec![],
        payload: ehrs::outbound::PayloadMode::Full,
        ordered: false,
        heartbeat_interval: None,
    };
    ehrs::testing::insert_embedded_subscription(&app.state, &leftover, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .await
        .unwrap();

    create_camp(&app).await;
    crate::support::eventually("relayed", || async { event_messages(&svix).len() == 1 }).await;
    assert_eq!(app.count_rows("webhook_deliveries").await, 0);
});

svix_test!(async fn a_message_svix_refuses_stays_in_the_outbox_and_holds_nothing_up(app, svix) {
    wait_until_registered(&app).await;
    // An outbox row Svix will refuse (422: not a valid event type name).
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_messages (id, event_id, event_type, payload, ids, created_at, relayed_at) \
         VALUES ('msg_00000000000000000000000001', 'evt_00000000000000000000000001', 'not a type!', '{\"data\":{}}', '{}', 1, NULL)",
    )
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for _ in 0..3 {
        create_camp(&app).await;
    }
    crate::support::eventually("the others relayed", || async { event_messages(&svix).len() == 3 }).await;
    crate::support::eventually("the refusal shown", || async {
        let health = health(&app).await;
        health["webhooks"] == "degraded" && health["queue_depth"] == 1
    })
    .await;
    let health = health(&app).await;
    assert!(health["webhooks_detail"].as_str().unwrap().contains("422"), "{health}");
});

svix_test!(async fn relayed_payloads_are_cleared_after_the_retention_period(app, svix) {
    wait_until_registered(&app).await;
    create_camp(&app).await;
    crate::support::eventually("relayed", || async { event_messages(&svix).len() == 1 }).await;
    let payload = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT payload FROM webhook_messages")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
    };
    assert!(payload().await.is_some(), "kept while the retention period lasts");
    let days = app.state.settings.webhook_retention_days as u64;
    app.state.settings.webhook_clock.advance(std::time::Duration::from_secs((days + 1) * 86_400));
    crate::support::eventually("the relayed payload is cleared", || async { payload().await.is_none() }).await;
    assert_eq!(event_messages(&svix).len(), 1, "retention sends nothing again");
});

svix_test!(async fn a_retry_a_test_and_a_recovery_keep_to_the_endpoint_s_filter(app, svix) {
    // Issue 23, "filters hold everywhere": on Svix a resend and a recovery pass the
    // endpoint's filter, so EHRS checks it first.
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::Status(500));
    let (id, _) = app.subscribe(&receiver.url, &["camp.created", "patient.registered"], "full").await;
    create_camp(&app).await;
    crate::support::people::create_patient(&app, "SVIX-F1").await;
    svix.wait_for_attempts(2, WAIT).await;
    let path = format!("/api/v1/webhooks/subscriptions/{id}");
    app.put(Role::Admin, &path, &json!({"event_types": ["patient.registered"]})).await.expect(200);

    let logs = app.get(Role::Admin, "/api/v1/webhooks/logs").await.expect(200);
    let camp_message = logs["items"].as_array().unwrap().iter().find(|m| m["event_type"] == "camp.created").unwrap()["id"].as_str().unwrap().to_string();
    let retry = app.post(Role::Admin, &format!("/api/v1/webhooks/logs/{camp_message}/retry"), &json!({"subscription_id": id})).await;
    assert_eq!(retry.status, 422, "{}", retry.text);
    assert_eq!(retry.error_code(), "event_type_not_subscribed");
    let test = app.post(Role::Admin, &format!("{path}/test"), &json!({})).await;
    assert_eq!(test.status, 422, "{}", test.text);
    assert!(svix.resend_calls().is_empty(), "nothing was resent");

    receiver.always(Reply::Status(200));
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let recovered = app.post(Role::Admin, &format!("{path}/recover"), &json!({"since": since})).await.expect(202);
    assert_eq!(recovered["requeued"], 1, "{recovered}");
    assert!(svix.recover_calls().is_empty(), "Svix's own recovery would resend every type");
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].json["type"], "patient.registered");
});

svix_test!(async fn the_catch_up_feed_is_refused_for_want_of_sequences(app, _svix) {
    // Issue 24: Svix numbers no sequences, so there is nothing to catch up by.
    wait_until_registered(&app).await;
    let receiver = TestReceiver::start().await;
    let created = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url})).await.expect(201);
    assert!(created.get("feed_token").is_none(), "no feed, so no token: {created}");
    let path = format!("/api/v1/webhooks/subscriptions/{}/events", created["id"].as_str().unwrap());
    let refused = app.get(Role::Admin, &path).await;
    assert_eq!((refused.status, refused.error_code()), (422, "embedded_engine_required"), "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("needs the embedded engine"));
    assert_eq!(app.request(reqwest::Method::GET, None, &path, None).await.status, 401);
});

svix_test!(async fn fhir_copies_go_only_to_fhir_endpoints(app, svix) {
    wait_until_registered(&app).await;
    let full = TestReceiver::start().await;
    let ids = TestReceiver::start().await;
    let fhir = TestReceiver::start().await;
    app.subscribe(&full.url, &[], "full").await;
    app.subscribe(&ids.url, &[], "id_only").await;
    let (fhir_id, fhir_secret) = app.subscribe(&fhir.url, &["camp.created"], "fhir").await;
    let endpoint = svix
        .endpoints()
        .into_iter()
        .find(|e| e["uid"] == fhir_id.as_str())
        .unwrap();
    assert_eq!(endpoint["channels"], json!(["fhir"]));
    let camp = create_camp(&app).await;

    let got = fhir.wait_for(1, WAIT).await;
    assert!(got[0].verify(&fhir_secret));
    let data = &got[0].json["data"];
    crate::fhir::assert_strict_fhir(data);
    assert_eq!(data["resourceType"], "Location");
    assert_eq!(data["id"], camp["id"].as_str().unwrap().replacen('_', "-", 1));
    let event_id = outbox_event_ids(&app).await.pop().unwrap();
    assert_eq!(got[0].json["event_id"], event_id.as_str());
    assert_eq!(full.wait_for(1, WAIT).await[0].json["data"]["name"], camp["name"]);
    assert!(ids.wait_for(1, WAIT).await[0].json["data"].get("name").is_none());
    // Each endpoint got its own copy only; a type the FHIR endpoint does not take makes
    // no FHIR copy at all.
    let deleted = app.delete(Role::Admin, &format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap())).await;
    assert!(deleted.status < 300, "{}", deleted.status);
    full.wait_for(2, WAIT).await;
    ids.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fhir.received().len(), 1);
    assert_eq!(full.received().len(), 2);
    assert_eq!(ids.received().len(), 2);
    let fhir_copies: Vec<Value> = event_messages(&svix)
        .into_iter()
        .filter(|m| m["eventId"].as_str().unwrap().ends_with(".fhir"))
        .collect();
    assert_eq!(fhir_copies.len(), 1);
    assert_eq!(fhir_copies[0]["channels"], json!(["fhir"]));
});
