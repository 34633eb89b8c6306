//! The Deliveries page: the message log and its filters, one message's state and attempts,
//! retry, and recovering a subscription's failures.

use super::{ADMIN, PASSWORD};
use crate::camps::create_camp;
use crate::delivery::deliveries_of;
use crate::support::{Reply, TestReceiver, eventually};
use ehrs::auth::Role;
use ehrs::config::parse_schedule;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

browser_test!(
    settings = |s: &mut ehrs::config::Settings| s.webhook_retry_schedule = parse_schedule("").unwrap(),
    async fn opens_a_failed_delivery_and_retries_it(app, browser) {
        // A lab that is down for the first event, and a pharmacy that is fine.
        let lab = TestReceiver::start().await;
        lab.script([Reply::Status(503)]);
        let (lab_id, _) = app.subscribe(&lab.url, &[], "full").await;
        let pharmacy = TestReceiver::start().await;
        app.subscribe(&pharmacy.url, &["camp.created"], "id_only").await;
        let camp = create_camp(&app).await;
        let camp_id = camp["id"].as_str().unwrap();
        eventually("the lab's delivery is exhausted", || async {
            deliveries_of(&app, &lab_id).await.first().is_some_and(|d| d.0 == "exhausted")
        })
        .await;
        pharmacy.wait_for(1, PATIENCE).await;
        let update = serde_json::json!({"name": "North Camp", "location": "Ward 5", "start_date": "2026-12-01", "end_date": "2026-12-02"});
        app.put(Role::Admin, &format!("/api/v1/medical-camps/{camp_id}"), &update).await.expect(200);
        lab.wait_for(2, PATIENCE).await;

        browser.sign_in(ADMIN, PASSWORD).await;
        browser.nav("Deliveries").await;
        browser.wait_for("//td[@data-label='Deliveries']//span[normalize-space(.)='Exhausted']").await;
        let page = browser.text().await;
        assert!(page.contains("camp.created") && page.contains("camp.updated"), "{page}");
        browser.screenshot("deliveries").await;

        // Filters: only exhausted messages, then only the pharmacy's.
        browser.choose("Status", "exhausted").await;
        browser.click("Apply").await;
        eventually("only the exhausted message is listed", || async {
            let page = browser.tables().await;
            page.contains("camp.created") && !page.contains("camp.updated")
        })
        .await;
        browser.choose("Status", "").await;
        browser.choose("Event type", "camp.updated").await;
        browser.click("Apply").await;
        eventually("only the update is listed", || async {
            let page = browser.tables().await;
            page.contains("camp.updated") && !page.contains("camp.created")
        })
        .await;
        browser.click("Clear").await;
        browser.wait_for_text("camp.created").await;

        // Open the failed message: each subscription's state and every attempt.
        browser.wait_for("//tr[.//span[normalize-space(.)='Exhausted']]//td[@data-label='Message']/button").await.click().await.unwrap();
        browser.wait_for_text("← Back to the log").await;
        browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='503 Service Unavailable']").await;
        browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='200 OK']").await;
        browser.screenshot("delivery").await;

        // Retry it to the lab (now up): the same webhook-id arrives again and is delivered.
        let first = lab.received()[0].webhook_id().to_string();
        browser
            .wait_for(&format!("//section[.//h2[normalize-space(.)='{}']]//button[normalize-space(.)='Retry']", lab.url))
            .await
            .click()
            .await
            .unwrap();
        browser.wait_for_text("Queued again for 1 subscription.").await;
        let received = lab.wait_for(3, PATIENCE).await;
        assert_eq!(received[2].webhook_id(), first, "the retry keeps the webhook-id");
        browser.wait_for(&format!("//section[.//h2[normalize-space(.)='{}']]//dd/span[normalize-space(.)='Delivered']", lab.url)).await;
        assert_eq!(pharmacy.received().len(), 1, "only the lab was sent it again");
    }
);

browser_test!(
    settings = |s: &mut ehrs::config::Settings| s.webhook_retry_schedule = parse_schedule("").unwrap(),
    async fn recovers_a_subscriptions_failures_since_a_time(app, browser) {
        let lab = TestReceiver::start().await;
        lab.script([Reply::Status(500), Reply::Status(500)]);
        let (lab_id, _) = app.subscribe(&lab.url, &[], "full").await;
        create_camp(&app).await;
        create_camp(&app).await;
        eventually("both deliveries are exhausted", || async {
            let states = deliveries_of(&app, &lab_id).await;
            states.len() == 2 && states.iter().all(|d| d.0 == "exhausted")
        })
        .await;

        browser.sign_in(ADMIN, PASSWORD).await;
        browser.nav("Deliveries").await;
        browser.wait_for_text("Recover failures").await;
        // The default window is the last 24 hours, which holds both.
        browser.click("Recover").await;
        browser.wait_for_text("2 deliveries queued again.").await;
        lab.wait_for(4, PATIENCE).await;
        eventually("both are delivered", || async {
            deliveries_of(&app, &lab_id).await.iter().all(|d| d.0 == "delivered")
        })
        .await;
    }
);
