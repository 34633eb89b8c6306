//! The catch-up feed (issue 24): `GET /api/v1/webhooks/subscriptions/{id}/events`, read
//! by the partner with its feed token (or by an admin), each item verified with the
//! subscription's secret by the official Svix library, as a receiver would.

use crate::camps::create_camp;
use crate::delivery::deliveries_of;
use crate::support::{Reply, TestApp, TestReceiver, TestResponse, eventually};
use base64::Engine;
use ehrs::auth::Role;
use ehrs::config::parse_schedule;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

/// Creates a subscription as admin; returns the whole answer (id, secret, feed token).
async fn subscribe(app: &TestApp, url: &str, event_types: &[&str], payload: &str) -> Value {
    app.post(
        Role::Admin,
        "/api/v1/webhooks/subscriptions",
        &json!({"url": url, "event_types": event_types, "payload": payload}),
    )
    .await
    .expect(201)
}

/// GET the feed with `bearer` (none: no Authorization header).
async fn feed(
    app: &TestApp,
    bearer: Option<&str>,
    subscription: &str,
    query: &str,
) -> TestResponse {
    let url = format!(
        "{}/api/v1/webhooks/subscriptions/{subscription}/events{query}",
        app.base_url
    );
    let mut request = app.client.get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    TestResponse::read(request.send().await.expect("request failed")).await
}

/// The feed token as the README tells a partner to compute it from the secret.
fn token_from_secret(secret: &str, subscription: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("ehrs-feed:{subscription}").as_bytes());
    let digest = mac.finalize().into_bytes();
    format!(
        "ehrs_feed_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// Verifies one feed item with the official Svix library, as a receiver would verify a
/// POST: its headers, its exact body, the subscription's secret.
fn verifies(item: &Value, secret: &str) -> bool {
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(
            name,
            item["headers"][name].as_str().unwrap().parse().unwrap(),
        );
    }
    let body = item["body"].as_str().unwrap();
    svix::webhooks::Webhook::new(secret)
        .unwrap()
        .verify(body.as_bytes(), &headers)
        .is_ok()
}

fn sequences(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["sequence"].as_i64().unwrap())
        .collect()
}

db_test!(
    settings = |s| {
        // The failed deliveries wait for a retry an hour away, and six failures in a
        // row do not pause the subscription: the receiver just missed them.
        s.webhook_retry_schedule = parse_schedule("1h").unwrap();
        s.webhook_autopause_after = 100;
    },
    async fn a_receiver_fetches_the_sequences_it_missed_and_verifies_each(app) {
        let receiver = TestReceiver::start().await;
        let created = subscribe(&app, &receiver.url, &[], "full").await;
        let (id, secret) = (created["id"].as_str().unwrap(), created["secret"].as_str().unwrap());
        let token = created["feed_token"].as_str().unwrap();
        assert_eq!(token, token_from_secret(secret, id), "the README's recipe gives the same token");

        // One camp at a time, so the sequence is the order of arrival: 4 to 9 get a 500.
        for n in 1..=10 {
            match n {
                4 => receiver.always(Reply::Status(500)),
                10 => receiver.always(Reply::Status(200)),
                _ => {}
            }
            create_camp(&app).await;
            receiver.wait_for(n, PATIENCE).await;
        }
        eventually("4 to 9 failed, the others delivered", || async {
            let states: Vec<String> = deliveries_of(&app, id).await.into_iter().map(|d| d.0).collect();
            states.len() == 10 && states[3..9].iter().all(|s| s == "pending") && states[9] == "delivered"
        })
        .await;

        // The receiver processed 1, 2, 3 and 10: it asks for what follows 3.
        let page = feed(&app, Some(token), id, "?after=3").await.expect(200);
        assert_eq!(sequences(&page), (4..=10).collect::<Vec<_>>());
        assert_eq!(page["next_after"], 10);
        assert_eq!(page["done"], true);
        let posted = receiver.received();
        for item in page["items"].as_array().unwrap() {
            assert!(verifies(item, secret), "each item verifies with the secret: {item}");
            assert!(!verifies(item, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "and with no other");
            let sequence = item["sequence"].as_i64().unwrap();
            let sent = &posted[sequence as usize - 1];
            assert_eq!(item["headers"]["webhook-id"], sent.webhook_id(), "the webhook-id it was POSTed with");
            assert_eq!(item["body"], sent.body.as_str(), "byte for byte the body that was POSTed");
            let expected = if sequence == 10 { "delivered" } else { "failed" };
            assert_eq!(item["status"], expected);
        }
    }
);

db_test!(
    settings = |s| s.webhook_clock = ehrs::time::Clock::adjustable(),
    async fn a_feed_token_opens_its_own_subscription_only(app) {
        let receiver = TestReceiver::start().await;
        let a = subscribe(&app, &receiver.url, &[], "full").await;
        let b = subscribe(&app, &receiver.url, &[], "full").await;
        let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
        let a_token = a["feed_token"].as_str().unwrap();
        create_camp(&app).await;
        eventually("both fanned out", || async { app.count_rows("webhook_deliveries").await == 2 }).await;

        assert_eq!(sequences(&feed(&app, Some(a_token), a_id, "").await.expect(200)), [1]);
        // Another subscription answers as an unknown one does: nothing is revealed.
        let other = feed(&app, Some(a_token), b_id, "").await;
        let unknown = feed(&app, Some(a_token), "sub_01jdq3v8m2x7c9k4t6w0y5z1ab", "").await;
        assert_eq!((other.status, unknown.status), (404, 404), "{}", other.text);
        assert_eq!(other.text.replace(b_id, "ID"), unknown.text.replace("sub_01jdq3v8m2x7c9k4t6w0y5z1ab", "ID"));
        let forged = format!("ehrs_feed_{}", "A".repeat(43));
        assert_eq!(feed(&app, Some(&forged), a_id, "").await.status, 404);
        let anonymous = feed(&app, None, a_id, "").await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.text);
        let nurse = feed(&app, Some(app.token(Role::Nurse)), a_id, "").await;
        assert_eq!((nurse.status, nurse.error_code()), (403, "forbidden"));
        let admin = feed(&app, Some(app.token(Role::Admin)), b_id, "").await.expect(200);
        assert_eq!(sequences(&admin), [1]);

        // Rotation: the new secret's token works at once, the old one while the old
        // secret still signs (EHRS_WEBHOOK_SECRET_OVERLAP, 24 h by default), then no more.
        let rotated = app.post(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{a_id}/rotate-secret"), &json!({})).await.expect(200);
        let new_token = rotated["feed_token"].as_str().unwrap();
        assert_ne!(new_token, a_token);
        assert_eq!(new_token, token_from_secret(rotated["secret"].as_str().unwrap(), a_id));
        let page = feed(&app, Some(new_token), a_id, "").await.expect(200);
        assert!(verifies(&page["items"][0], rotated["secret"].as_str().unwrap()));
        assert!(verifies(&page["items"][0], a["secret"].as_str().unwrap()), "both secrets sign during the overlap");
        feed(&app, Some(a_token), a_id, "").await.expect(200);
        app.state.settings.webhook_clock.advance(Duration::from_secs(25 * 3600));
        assert_eq!(feed(&app, Some(a_token), a_id, "").await.status, 404);
        feed(&app, Some(new_token), a_id, "").await.expect(200);
    }
);

db_test!(async fn paging_walks_every_delivery_in_order_and_a_cursor_ahead_gets_an_empty_page(app) {
    let receiver = TestReceiver::start().await;
    let created = subscribe(&app, &receiver.url, &[], "id_only").await;
    let (id, token) = (created["id"].as_str().unwrap(), created["feed_token"].as_str().unwrap());
    for _ in 0..5 {
        create_camp(&app).await;
    }
    receiver.wait_for_distinct(5, PATIENCE).await;

    let mut after = 0;
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let page = feed(&app, Some(token), id, &format!("?after={after}&limit=2")).await.expect(200);
        walked.extend(sequences(&page));
        after = page["next_after"].as_i64().unwrap();
        pages += 1;
        if page["done"] == true {
            break;
        }
    }
    assert_eq!(walked, [1, 2, 3, 4, 5]);
    assert_eq!((pages, after), (3, 5));
    // The subscription's payload mode, as it was POSTed: identifiers only.
    let all = feed(&app, Some(token), id, "").await.expect(200);
    let posted = receiver.received();
    for item in all["items"].as_array().unwrap() {
        let sent = posted.iter().find(|r| r.webhook_id() == item["headers"]["webhook-id"]).unwrap();
        assert_eq!(item["body"], sent.body.as_str());
        let envelope: Value = serde_json::from_str(item["body"].as_str().unwrap()).unwrap();
        assert_eq!(envelope["data"].as_object().unwrap().len(), 1, "id_only: {envelope}");
    }

    let ahead = feed(&app, Some(token), id, "?after=99").await.expect(200);
    assert_eq!(ahead, json!({"items": [], "next_after": 99, "done": true}));
    for bad in ["?limit=0", "?limit=501", "?after=-1", "?since=1"] {
        let refused = feed(&app, Some(token), id, bad).await;
        assert_eq!(refused.status, 422, "{bad}: {}", refused.text);
    }
});

db_test!(
    settings = |s| {
        s.webhook_clock = ehrs::time::Clock::adjustable();
        // The second subscription's failed delivery waits 60 days: its message keeps
        // its payload when the others' are cleared.
        s.webhook_retry_schedule = parse_schedule("60d").unwrap();
    },
    async fn past_retention_the_feed_answers_410_naming_the_oldest_sequence_held(app) {
        let receiver = TestReceiver::start().await;
        let failing = TestReceiver::start().await;
        failing.always(Reply::Status(500));
        let created = subscribe(&app, &receiver.url, &[], "full").await;
        let (id, token) = (created["id"].as_str().unwrap(), created["feed_token"].as_str().unwrap());
        subscribe(&app, &failing.url, &["camp.updated"], "full").await;
        // Sequences 1 (created), 2 (updated, still pending for the failing one), 3 (created).
        let camp = create_camp(&app).await;
        let path = format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap());
        let mut renamed = crate::camps::camp_body();
        renamed["name"] = json!("Renamed camp");
        app.put(Role::Admin, &path, &renamed).await.expect(200);
        create_camp(&app).await;
        failing.wait_for(1, PATIENCE).await;
        eventually("delivered", || async { deliveries_of(&app, id).await.iter().filter(|d| d.0 == "delivered").count() == 3 }).await;

        let days = app.state.settings.webhook_retention_days as u64;
        app.state.settings.webhook_clock.advance(Duration::from_secs((days + 1) * 86_400));
        let cleared = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_messages WHERE payload IS NULL")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
        };
        eventually("the retention run cleared 1 and 3", || async { cleared().await == 2 }).await;

        let gone = feed(&app, Some(token), id, "").await;
        assert_eq!((gone.status, gone.error_code()), (410, "beyond_retention"), "{}", gone.text);
        assert_eq!(gone.body["error"]["details"]["oldest_sequence"], 2);
        assert!(gone.body["error"]["message"].as_str().unwrap().contains("oldest sequence still held after it is 2"));
        // What is held is served, and the page ends before the next cleared one.
        let held = feed(&app, Some(token), id, "?after=1").await.expect(200);
        assert_eq!((sequences(&held), held["next_after"].clone(), held["done"].clone()), (vec![2], json!(2), json!(false)));
        let nothing_later = feed(&app, Some(token), id, "?after=2").await;
        assert_eq!(nothing_later.status, 410);
        assert_eq!(nothing_later.body["error"]["details"], json!({"sequence": 3, "oldest_sequence": null, "last_sequence": 3}));
        create_camp(&app).await;
        receiver.wait_for(4, PATIENCE).await;
        let later = feed(&app, Some(token), id, "?after=2").await;
        assert_eq!(later.body["error"]["details"]["oldest_sequence"], 4, "{}", later.text);
        assert_eq!(sequences(&feed(&app, Some(token), id, "?after=3").await.expect(200)), [4]);
    }
);
