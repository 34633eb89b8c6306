//! The Inbound page: create a source (secret once), deactivate it, and follow a received
//! event's job to failure and retry.

use super::{ADMIN, PASSWORD};
use crate::support::inbound::{SOURCES, Source, lab_event, run_jobs, send_event};
use ehrs::auth::Role;
use serde_json::json;

browser_test!(async fn creates_an_inbound_source_and_retries_a_failed_event(app, browser) {
    browser.sign_in(ADMIN, PASSWORD).await;
    browser.nav("Inbound").await;
    browser.wait_for_text("No sources yet.").await;
    browser.wait_for_text("No events received.").await;
    browser.click("New source").await;
    browser.fill("Name", "City Lab").await;
    browser.fill("Allowed event types", "lab.result.ready, results.final").await;
    browser.choose("Action for results.final", "lab.result.ready").await;
    browser.click("Create").await;
    browser.wait_for_text("This secret will not be shown again").await;
    let secret = browser.field("Signing secret").await.value().await.unwrap().unwrap();
    assert!(secret.starts_with("whsec_"));
    browser.click("Done").await;

    let listed = app.get(Role::Admin, SOURCES).await.expect(200);
    let stored = &listed["items"][0];
    assert_eq!(stored["name"], "City Lab");
    assert_eq!(stored["allowed_event_types"], json!(["lab.result.ready", "results.final"]));
    assert_eq!(stored["action_mapping"], json!({"results.final": "lab.result.ready"}));
    assert_eq!(stored["is_active"], true);
    let source = Source { id: stored["id"].as_str().unwrap().to_string(), secret };

    // The partner signs with the secret shown; the event is accepted, and its job fails
    // (no such patient), which the page shows with the reason and a Retry.
    let event = lab_event("lab-2026-0001", "B-404", "6.1 %", Some("HbA1c"));
    send_event(&app, &source, &event).await.expect(202);
    run_jobs(&app).await;
    browser.driver.refresh().await.unwrap();
    browser.wait_for("//td[@data-label='Job status']//span[normalize-space(.)='Failed']").await;
    let page = browser.text().await;
    assert!(page.contains("lab-2026-0001") && page.contains("B-404"), "the event and its error show: {page}");
    browser.screenshot("inbound").await;
    browser.click("Retry").await;
    browser.wait_for_text("The job of lab-2026-0001 is queued again.").await;
    let events = app.get(Role::Admin, "/api/v1/webhooks/inbound-events").await.expect(200);
    assert_ne!(events["items"][0]["status"], "failed", "the job was queued again");

    // Deactivate: the source answers 404 to its partner from then on.
    browser.click("Deactivate").await;
    browser.wait_for_text("City Lab is inactive").await;
    browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='Inactive']").await;
    let again = lab_event("lab-2026-0002", "B-404", "6.2 %", None);
    assert_eq!(send_event(&app, &source, &again).await.status, 404);
    browser.click("Activate").await;
    browser.wait_for("//td[@data-label='Status']//span[normalize-space(.)='Active']").await;
});
