//! The Subscriptions page: create (secret once), send a test, auto-pause and re-enable,
//! rotate, delete; and the Audit page that records it.

use super::{ADMIN, PASSWORD};
use crate::camps::create_camp;
use crate::support::{Reply, TestReceiver, eventually};
use ehrs::auth::Role;
use ehrs::config::parse_schedule;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

browser_test!(async fn creates_a_subscription_and_shows_its_secret_once(app, browser) {
    let receiver = TestReceiver::start().await;
    browser.sign_in(ADMIN, PASSWORD).await;
    browser.wait_for_text("No subscriptions yet.").await;
    browser.click("New subscription").await;
    browser.fill("URL", &receiver.url).await;
    browser.fill("Description", "City lab").await;
    browser.wait_for("//fieldset[legend[normalize-space(.)='Event types']]//label[normalize-space(.)='camp.created']/input").await.click().await.unwrap();
    browser.choose("Payload", "id_only").await;
    browser.click("Create").await;

    browser.wait_for_text("This secret will not be shown again").await;
    let secret = browser.field("Signing secret").await.value().await.unwrap().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.click("Copy").await;
    browser.wait_for_text("Copied.").await;
    // The partner's catch-up credential is shown beside it (it opens the feed: below).
    let feed_token = browser.field("Feed token").await.value().await.unwrap().unwrap();
    assert!(feed_token.starts_with("ehrs_feed_"), "{feed_token}");
    browser.wait_for_text("City lab").await; // the table below already lists it
    browser.screenshot("subscription-created").await;

    // What the form sent is what the server stored.
    let listed = app.get(Role::Admin, "/api/v1/webhooks/subscriptions").await.expect(200);
    let sub = &listed["items"][0];
    assert_eq!(sub["url"], receiver.url);
    assert_eq!(sub["description"], "City lab");
    assert_eq!(sub["event_types"], serde_json::json!(["camp.created"]));
    assert_eq!(sub["payload"], "id_only");
    // And the secret shown is the one that signs: a real delivery verifies with it.
    create_camp(&app).await;
    let received = receiver.wait_for(1, PATIENCE).await;
    assert!(received[0].verify(&secret), "the secret shown signs the deliveries");
    let feed = app
        .client
        .get(format!("{}/api/v1/webhooks/subscriptions/{}/events", app.base_url, sub["id"].as_str().unwrap()))
        .bearer_auth(&feed_token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200, "the feed token shown opens the subscription's feed");

    // Once dismissed it is gone, and no page shows it again.
    browser.click("Done").await;
    assert!(!browser.text().await.contains(&secret));
    browser.driver.refresh().await.unwrap();
    browser.wait_for_text("City lab").await;
    browser.screenshot("subscriptions").await;
    let id = sub["id"].as_str().unwrap();
    browser.goto(&format!("/portal/subscriptions/{id}")).await;
    browser.wait_for_text("Recent attempts").await;
    let source = browser.driver.source().await.unwrap();
    assert!(!source.contains(secret.trim_start_matches("whsec_")), "the secret is shown again");
    assert!(!source.contains(&feed_token), "the feed token is shown again");
    // The heartbeat setting shows, off until it is set.
    browser.wait_for_text("Heartbeat").await;
    let heartbeat = serde_json::json!({"event_types": ["camp.created", "webhook.heartbeat"], "heartbeat_interval": "10m"});
    app.put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}"), &heartbeat).await.expect(200);
    browser.driver.refresh().await.unwrap();
    browser.wait_for_text("every 10m of silence").await;

    // An API refusal shows as its message, and nothing is created.
    browser.goto("/portal/subscriptions").await;
    browser.click("New subscription").await;
    browser.fill("URL", "ftp://lab.example.org/hook").await;
    browser.click("Create").await;
    browser.wait_for("//div[@role='alert']").await;
    let alert = browser.wait_for("//div[@role='alert']").await.text().await.unwrap();
    assert!(alert.contains("url"), "{alert}");
    assert_eq!(app.count_rows("webhook_subscriptions").await, 1);
});

browser_test!(async fn sends_a_test_and_shows_the_attempt(app, browser) {
    let receiver = TestReceiver::start().await;
    let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
    browser.sign_in(ADMIN, PASSWORD).await;
    browser.wait_for(&format!("//a[normalize-space(.)='{}']", receiver.url)).await.click().await.unwrap();
    browser.wait_for_text("No attempts yet.").await;
    browser.click("Send test").await;
    browser.wait_for("//section[@aria-label='Test delivery']//span[normalize-space(.)='200 OK']").await;
    browser.wait_for_text("Test delivery").await;
    let received = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(received[0].json["type"], "webhook.test");
    // The attempts table lists it with its status, and the stats show the success.
    browser.wait_for("//table//td[@data-label='Status']//span[normalize-space(.)='200 OK']").await;
    assert!(browser.text().await.contains("Last success"));
    browser.screenshot("subscription").await;

    // Rotate: confirmed, new secret shown once, and it signs the next delivery.
    browser.click("Rotate secret").await;
    browser.click("Rotate secret").await; // the confirmation dialog's button
    browser.wait_for_text("This secret will not be shown again").await;
    let secret = browser.field("Signing secret").await.value().await.unwrap().unwrap();
    let feed_token = browser.field("Feed token").await.value().await.unwrap().unwrap();
    assert!(feed_token.starts_with("ehrs_feed_"), "the new secret's feed token: {feed_token}");
    browser.click("Done").await;
    browser.click("Send test").await;
    let received = receiver.wait_for(2, PATIENCE).await;
    assert!(received[1].verify(&secret));

    // Delete asks first; cancelling keeps it.
    browser.click("Delete").await;
    browser.click("Cancel").await;
    assert_eq!(app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await.status, 200);
    browser.click("Delete").await;
    browser.wait_for("//dialog[@open]").await;
    assert!(browser.text().await.contains("Delete the subscription to"));
    browser.click("Delete").await;
    browser.wait_for_text("No subscriptions yet.").await;
    assert_eq!(app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{id}")).await.status, 404);

    // The audit trail shows all of it, by this admin.
    browser.nav("Audit").await;
    browser.wait_for_text("subscription.deleted").await;
    let page = browser.text().await;
    for action in ["subscription.created", "subscription.tested", "subscription.secret_rotated"] {
        assert!(page.contains(action), "{action} missing: {page}");
    }
    assert!(page.contains(ADMIN));
    assert!(!page.contains(&secret), "the audit never shows a secret");
    browser.screenshot("audit").await;
});

browser_test!(
    settings = |s: &mut ehrs::config::Settings| {
        s.webhook_retry_schedule = parse_schedule("").unwrap();
        s.webhook_autopause_after = 3;
    },
    async fn failures_and_the_auto_pause_show_and_enable_brings_it_back(app, browser) {
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Status(500));
        let (id, _) = app.subscribe(&receiver.url, &[], "full").await;
        let healthy = TestReceiver::start().await;
        app.subscribe(&healthy.url, &["camp.created"], "id_only").await;
        for _ in 0..3 {
            create_camp(&app).await;
        }
        let stats = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
        eventually("the subscription is auto-paused", || async {
            app.get(Role::Admin, &stats).await.body["auto_paused"] == true
        })
        .await;

        browser.sign_in(ADMIN, PASSWORD).await;
        browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='Auto-paused']").await;
        let failures = browser
            .wait_for(&format!("//tr[.//a[normalize-space(.)='{}']]/td[@data-label='Failures in a row']", receiver.url))
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(failures, "3");
        let page = browser.text().await;
        assert!(page.contains("3 consecutive failed deliveries"), "the reason is shown: {page}");
        assert!(page.contains("Enabled"), "the healthy one stays enabled: {page}");
        browser.screenshot("subscriptions-auto-paused").await;

        // Re-enable once the receiver is fixed: the streak resets.
        receiver.always(Reply::Status(200));
        browser.wait_for(&format!("//a[normalize-space(.)='{}']", receiver.url)).await.click().await.unwrap();
        browser.wait_for_text("Recent attempts").await;
        browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='500 Internal Server Error']").await;
        browser.click("Enable").await;
        browser.wait_for_text("Enabled: held deliveries go out now").await;
        browser.button("Disable").await;
        let stats = app.get(Role::Admin, &stats).await.expect(200);
        assert_eq!(stats["enabled"], true);
        assert_eq!(stats["consecutive_failures"], 0);
        browser.nav("Subscriptions").await;
        browser.wait_for_text(&receiver.url).await;
        assert!(!browser.text().await.contains("Auto-paused"));
    }
);

browser_test!(settings = crate::camp_network::short_fuse, async fn shows_the_uplink_outage_and_the_camp_network_ranges(app, browser) {
    use crate::camp_network::{CAMP_LAN, CampLan, subscribe_camps};
    let (lab, pharmacy) = (CampLan::start(), CampLan::start());
    lab.ready().await;
    pharmacy.ready().await;
    subscribe_camps(&app, lab.url(), false).await;
    subscribe_camps(&app, pharmacy.url(), false).await;
    browser.sign_in(ADMIN, PASSWORD).await;
    browser.wait_for_text("Internet:").await;
    let page = browser.text().await;
    assert!(page.contains(&format!("Camp network ranges allowed: {CAMP_LAN}")), "{page}");

    lab.cut();
    pharmacy.cut();
    create_camp(&app).await;
    eventually("the engine declares the uplink down", || async {
        app.get(Role::Admin, "/api/v1/webhooks/status").await.expect(200)["uplink"]["state"] == "down"
    })
    .await;
    browser.driver.refresh().await.unwrap();
    browser.wait_for_text("The camp's internet is down").await;
    browser.screenshot("uplink-down").await;
    let page = browser.text().await;
    assert!(page.contains("no subscription is paused for it"), "{page}");
    assert!(!page.contains("Auto-paused"), "{page}");
});
