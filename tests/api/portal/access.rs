//! Audit › Access: the report of who saw which patient's record, filtered by patient and
//! by user, as an admin reads it in the portal.

use super::{ADMIN, PASSWORD};
use crate::support::eventually;
use crate::support::people::create_patient;
use ehrs::auth::Role;

browser_test!(async fn shows_who_saw_a_patients_record(app, browser) {
    create_patient(&app, "PUNE-7").await;
    create_patient(&app, "PUNE-8").await;
    app.get(Role::Nurse, "/api/v1/patients/PUNE-7").await.expect(200);
    app.get(Role::Nurse, "/api/v1/patients").await.expect(200);
    app.get(Role::Doctor, "/api/v1/patients/PUNE-8").await.expect(200);
    eventually("the doctor's read is recorded", || async {
        let report = app.get(Role::Admin, "/api/v1/audit/patient-access?user=doctor_user").await.expect(200);
        !report["items"].as_array().unwrap().is_empty()
    })
    .await;

    browser.sign_in(ADMIN, PASSWORD).await;
    browser.nav("Audit").await;
    browser.nav("Access").await;
    browser.wait_for_text("GET /api/v1/patients/{book_no}").await;
    assert!(browser.driver.current_url().await.unwrap().path().ends_with("/portal/audit/access"));

    // Who saw PUNE-7: the nurse's read and list, and the admin who registered the patient.
    browser.fill("Book number", "PUNE-7").await;
    browser.click("Apply").await;
    browser.wait_for("//td[@data-label='Action'][normalize-space(.)='List']").await;
    let rows = browser.tables().await;
    assert!(rows.contains("nurse_user (nurse)"), "{rows}");
    assert!(rows.contains("GET /api/v1/patients/{book_no}") && rows.contains("GET /api/v1/patients\t"), "{rows}");
    assert!(rows.contains("POST /api/v1/patients") && rows.contains("admin_user (admin)"), "{rows}");
    assert!(rows.contains("127.0.0.1"), "{rows}");
    assert!(!rows.contains("doctor_user"), "the doctor saw only PUNE-8: {rows}");
    browser.screenshot("access").await;

    // What the doctor looked at: PUNE-8 alone.
    browser.fill("Book number", "").await;
    browser.fill("User", "doctor_user").await;
    browser.click("Apply").await;
    browser.wait_for("//td[@data-label='Patients'][normalize-space(.)='PUNE-8']").await;
    let rows = browser.tables().await;
    assert!(!rows.contains("nurse_user") && !rows.contains("PUNE-7"), "{rows}");
    browser.nav("Webhook changes").await;
    browser.wait_for_text("Every change to webhook subscriptions").await;
});
