//! Signing in and out, the administrators-only page, and a page load with the network
//! cut off.

use super::{ADMIN, PASSWORD};
use crate::support::{TestReceiver, eventually};
use ehrs::auth::Role;
use serde_json::Value;

const TOKEN: &str = "return sessionStorage.getItem('ehrs.portal.token');";

browser_test!(async fn signs_in_keeps_the_token_per_tab_and_signs_out(app, browser) {
    browser.goto("/portal").await;
    browser.field("Username").await;
    browser.screenshot("sign-in").await;

    browser.sign_in(ADMIN, "wrong-password").await;
    browser.wait_for_text("invalid username or password").await;
    assert_eq!(browser.js(TOKEN).await, Value::Null, "no token after a refused sign-in");

    browser.sign_in(ADMIN, PASSWORD).await;
    browser.wait_for_text("No subscriptions yet.").await;
    let token = browser.js(TOKEN).await;
    let token = token.as_str().expect("the token is in sessionStorage");
    let me = app.client.get(format!("{}/api/v1/auth/me", app.base_url)).bearer_auth(token).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["username"], ADMIN, "it is a real token for the admin");
    assert_eq!(browser.js("return localStorage.length;").await, 0, "nothing is kept beyond the tab");
    assert!(browser.driver.current_url().await.unwrap().path().ends_with("/portal/subscriptions"));

    // A reload keeps the session (same tab); signing out drops the token.
    browser.driver.refresh().await.unwrap();
    browser.wait_for_text("No subscriptions yet.").await;
    browser.click("Sign out").await;
    browser.wait_for_text("You are signed out.").await;
    browser.field("Username").await;
    assert_eq!(browser.js(TOKEN).await, Value::Null);

    // A token the server refuses (expired, or signed with another key) is dropped at the
    // first 401 and the sign-in form comes back with a reason, not an error page.
    browser.js("sessionStorage.setItem('ehrs.portal.token', 'not-a-valid-token');").await;
    browser.goto("/portal/deliveries").await;
    browser.wait_for_text("Your session has ended. Sign in again.").await;
    assert_eq!(browser.js(TOKEN).await, Value::Null);
});

browser_test!(async fn a_non_admin_sees_the_administrators_only_page(app, browser) {
    browser.sign_in("doctor_user", PASSWORD).await;
    browser.wait_for("//h1[normalize-space(.)='Administrators only']").await;
    let page = browser.text().await;
    assert!(page.contains("You are signed in as doctor_user (doctor)"), "{page}");
    assert!(!page.contains("Subscriptions") && !page.contains("Deliveries"), "no admin navigation: {page}");
    assert!(!page.contains("forbidden") && !page.contains("403"), "no API error is shown: {page}");
    assert_eq!(
        browser.js("return document.querySelectorAll('[role=alert]').length;").await,
        0
    );
    browser.screenshot("administrators-only").await;
    browser.click("Sign out").await;
    browser.field("Username").await;
    // The API still refuses the doctor: the page hides nothing the server would allow.
    assert_eq!(app.get(Role::Doctor, "/api/v1/webhooks/subscriptions").await.status, 403);
});

browser_test!(async fn the_portal_works_with_every_non_loopback_request_blocked(app, browser) {
    // The page's files and headers, as the browser receives them.
    let page = app.client.get(format!("{}/portal", app.base_url)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let script = app.client.get(format!("{}/portal/assets/app.js", app.base_url)).send().await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.headers().contains_key("content-security-policy"));
    let missing = app.client.get(format!("{}/portal/assets/nope.js", app.base_url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // The browser really is cut off: a public address does not load.
    browser.goto_absolute("http://example.com/").await;
    let outside = browser.text().await;
    assert!(!outside.contains("Example Domain"), "the network is not blocked: {outside}");

    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &[], "full").await;
    browser.sign_in(ADMIN, PASSWORD).await;
    browser.wait_for_text(&receiver.url).await;

    // The stylesheet applied (the header has the portal's colour, the font is a system one)
    // and every resource the page fetched came from this server.
    let header = browser.js("return getComputedStyle(document.querySelector('header.top')).backgroundColor;").await;
    assert_eq!(header, "rgb(31, 95, 139)");
    let resources = browser
        .js("return performance.getEntriesByType('resource').map(e => e.name);")
        .await;
    let resources: Vec<String> = serde_json::from_value(resources).unwrap();
    for expected in ["/portal/assets/portal.css", "/portal/assets/app.js", "/portal/assets/subscriptions.js", "/api/v1/auth/me", "/api/v1/webhooks/subscriptions"] {
        assert!(resources.iter().any(|r| r.contains(expected)), "{expected} was not loaded: {resources:?}");
    }
    for resource in &resources {
        assert!(resource.starts_with(&app.base_url), "a resource from elsewhere: {resource}");
    }
    let violations = browser
        .js("return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).filter(e => !e.name.startsWith(location.origin)).length;")
        .await;
    assert_eq!(violations, 0);

    // 390 px (a phone): the same page, no sideways scrolling, tables as cards.
    browser.resize(390, 844).await;
    let b = &browser;
    eventually("the window is 390 px wide", || async move { b.js("return window.innerWidth;").await == 390 }).await;
    let overflow = browser.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;").await;
    assert_eq!(overflow, 0, "the page scrolls sideways at 390 px");
    let header_cells = browser.js("return getComputedStyle(document.querySelector('thead')).display;").await;
    assert_eq!(header_cells, "none", "tables become labelled cards");
    browser.screenshot("subscriptions-phone").await;
});
