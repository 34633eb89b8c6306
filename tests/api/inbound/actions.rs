//! The two actions end to end (POST → 202 → job runs → clinical row changed), failures
//! recorded and visible to the admin, and the retry route.

use crate::support::inbound::*;
use ehrs::auth::Role;
use serde_json::json;

db_test!(async fn lab_results_are_appended_to_the_latest_vitals_note(app) {
    let patient = seed_patient(&app, "B-101").await;
    let now = ehrs::db::now_ms();
    let older = seed_vitals(&app, &patient, now - 60_000, Some("first visit")).await;
    let latest = seed_vitals(&app, &patient, now, Some("BP fine")).await;
    let source = default_source(&app).await;

    send_event(&app, &source, &lab_event("lab-1", "B-101", "6.1%", Some("HbA1c"))).await.expect(202);
    assert_eq!(run_jobs(&app).await, 1);
    assert_eq!(vitals_note(&app, &latest).await.as_deref(), Some("BP fine\nLab result (HbA1c): 6.1%"));
    send_event(&app, &source, &lab_event("lab-2", "B-101", "negative", None)).await.expect(202);
    assert_eq!(run_jobs(&app).await, 1);
    assert_eq!(vitals_note(&app, &latest).await.as_deref(), Some("BP fine\nLab result (HbA1c): 6.1%\nLab result: negative"));
    assert_eq!(vitals_note(&app, &older).await.as_deref(), Some("first visit"), "only the latest vitals change");

    let listed = events(&app, "").await;
    assert_eq!(listed["total"], 2);
    let item = &listed["items"][1];
    assert_eq!(item["event_id"], "lab-1");
    assert_eq!(item["status"], "succeeded");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["action"], "lab.result.ready");
    assert_eq!(item["source_id"], source.id.as_str());
    assert_eq!(item["source_name"], "City Lab");
    assert!(item["last_error"].is_null());
    // A partner's push is not one of the API writes that emit outbound events (SPEC §3).
    assert!(app.emitted_event_types().await.is_empty());
    // The replay of a finished event reports the job's final state.
    let replay = send_event(&app, &source, &lab_event("lab-1", "B-101", "6.1%", Some("HbA1c"))).await.expect(200);
    assert_eq!(replay["status"], "succeeded");
    assert_eq!(run_jobs(&app).await, 0);
});

db_test!(async fn a_note_is_started_when_there_is_none(app) {
    let patient = seed_patient(&app, "B-7").await;
    let vitals = seed_vitals(&app, &patient, ehrs::db::now_ms(), None).await;
    let source = default_source(&app).await;
    send_event(&app, &source, &lab_event("l", "B-7", "Hb 12.5 g/dL", Some("CBC"))).await.expect(202);
    run_jobs(&app).await;
    assert_eq!(vitals_note(&app, &vitals).await.as_deref(), Some("Lab result (CBC): Hb 12.5 g/dL"));
});

db_test!(async fn mapped_stock_updates_set_the_stock(app) {
    let medicine = seed_medicine(&app, 10).await;
    let source = create_source(&app, &["inventory.changed"], json!({"inventory.changed": "pharmacy.stock.update"})).await;
    let mut event = stock_event("inv-1", &medicine, 42);
    event["event_type"] = json!("inventory.changed");
    send_event(&app, &source, &event).await.expect(202);
    assert_eq!(run_jobs(&app).await, 1);
    assert_eq!(medicine_stock(&app, &medicine).await, 42);

    let mut zero = stock_event("inv-2", &medicine, 0);
    zero["event_type"] = json!("inventory.changed");
    send_event(&app, &source, &zero).await.expect(202);
    run_jobs(&app).await;
    assert_eq!(medicine_stock(&app, &medicine).await, 0);
    let listed = events(&app, &format!("?source_id={}&status=succeeded", source.id)).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["items"][0]["event_type"], "inventory.changed");
    assert_eq!(listed["items"][0]["action"], "pharmacy.stock.update");
    // The unmapped action name itself is not allowed for this source.
    assert_eq!(send_event(&app, &source, &stock_event("inv-3", &medicine, 5)).await.status, 422);
    assert_eq!(send_event(&app, &source, &{ let mut e = stock_event("inv-4", &medicine, -1); e["event_type"] = json!("inventory.changed"); e }).await.status, 422);
    assert!(app.emitted_event_types().await.is_empty());
});

db_test!(async fn jobs_for_missing_records_fail_with_their_reason_and_can_be_retried(app) {
    let source = default_source(&app).await;
    send_event(&app, &source, &lab_event("lab-x", "B-404", "ok", None)).await.expect(202);
    send_event(&app, &source, &stock_event("stock-x", "med_01jdq3v8m2x7c9k4t6w0y5z1ab", 5)).await.expect(202);
    let patient = seed_patient(&app, "B-5").await;
    send_event(&app, &source, &lab_event("lab-y", "B-5", "ok", None)).await.expect(202);
    assert_eq!(run_jobs(&app).await, 3);
    assert_eq!(run_jobs(&app).await, 0, "permanent failures are not retried");

    let failed = events(&app, "?status=failed").await;
    assert_eq!(failed["total"], 3);
    let reason = |event_id: &str| {
        let items = failed["items"].as_array().unwrap();
        let item = items.iter().find(|i| i["event_id"] == event_id).unwrap();
        assert_eq!(item["attempts"], 1);
        item["last_error"].as_str().unwrap().to_string()
    };
    assert_eq!(reason("lab-x"), "no patient with book number 'B-404'");
    assert!(reason("stock-x").contains("no medicine with id 'med_01jdq3v8m2x7c9k4t6w0y5z1ab'"));
    assert!(reason("lab-y").contains("has no vitals"));
    assert_eq!(events(&app, "?status=succeeded").await["total"], 0);

    // Fix the data, retry, and the job runs again.
    let vitals = seed_vitals(&app, &patient, ehrs::db::now_ms(), None).await;
    let lab_y = failed["items"].as_array().unwrap().iter().find(|i| i["event_id"] == "lab-y").unwrap().clone();
    let retry_path = format!("{EVENTS}/{}/retry", lab_y["id"].as_str().unwrap());
    let requeued = app.post(Role::Admin, &retry_path, &json!({})).await.expect(202);
    assert_eq!(requeued["status"], "queued");
    assert_eq!(requeued["job_id"], lab_y["job_id"]);
    let conflict = app.post(Role::Admin, &retry_path, &json!({})).await;
    assert_eq!(conflict.status, 409, "a queued job is not failed");
    assert_eq!(conflict.error_code(), "job_not_failed");
    assert_eq!(run_jobs(&app).await, 1);
    assert_eq!(vitals_note(&app, &vitals).await.as_deref(), Some("Lab result: ok"));
    let done = app.get(Role::Admin, &format!("{EVENTS}/{}", lab_y["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(done["status"], "succeeded");
    // A retry is a new round: the count reads against the same limit as before.
    assert_eq!((lab_y["attempts"].as_i64(), lab_y["max_attempts"].as_i64()), (Some(1), Some(5)));
    assert_eq!((done["attempts"].as_i64(), done["max_attempts"].as_i64()), (Some(1), Some(5)));
    assert_eq!(app.post(Role::Admin, &retry_path, &json!({})).await.status, 409);
    assert_eq!(app.post(Role::Admin, &format!("{EVENTS}/ine_01jdq3v8m2x7c9k4t6w0y5z1ab/retry"), &json!({})).await.status, 404);
    assert_eq!(app.post(Role::Admin, &format!("{EVENTS}/nonsense/retry"), &json!({})).await.status, 404);
});

db_test!(async fn the_event_list_filters_and_pages(app) {
    let first = default_source(&app).await;
    let second = default_source(&app).await;
    for i in 0..3 {
        send_event(&app, &first, &lab_event(&format!("a{i}"), "B-1", "ok", None)).await.expect(202);
    }
    send_event(&app, &second, &lab_event("b0", "B-1", "ok", None)).await.expect(202);
    assert_eq!(events(&app, "").await["total"], 4);
    assert_eq!(events(&app, &format!("?source_id={}", first.id)).await["total"], 3);
    assert_eq!(events(&app, "?status=queued").await["total"], 4);
    let page = events(&app, "?limit=2&offset=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4);
    assert_eq!(app.get(Role::Admin, &format!("{EVENTS}?status=lost")).await.status, 422);
    assert_eq!(app.get(Role::Admin, &format!("{EVENTS}?source_id=abc")).await.status, 422);
    assert_eq!(app.get(Role::Admin, &format!("{EVENTS}?limit=0")).await.status, 422);
    // Events outlive their deleted source.
    app.delete(Role::Admin, &format!("{SOURCES}/{}", second.id)).await.expect(204);
    let orphan = events(&app, &format!("?source_id={}", second.id)).await;
    assert_eq!(orphan["total"], 1);
    assert!(orphan["items"][0]["source_name"].is_null());
});

db_test!(async fn appended_lab_results_keep_the_note_within_its_limit(app) {
    let patient = seed_patient(&app, "B-20").await;
    let vitals = seed_vitals(&app, &patient, ehrs::db::now_ms(), Some("BP fine")).await;
    let source = default_source(&app).await;
    let result = "x".repeat(1000);
    for i in 0..20 {
        send_event(&app, &source, &lab_event(&format!("lab-{i}"), "B-20", &result, Some("CBC"))).await.expect(202);
        run_jobs(&app).await;
    }
    let note = vitals_note(&app, &vitals).await.unwrap();
    assert!(note.chars().count() <= ehrs::vitals::MAX_NOTE, "{} characters", note.chars().count());
    assert!(note.starts_with("BP fine\nLab result (CBC): xxx"), "earlier notes stay");
    assert!(note.contains("[truncated: full text in inbound event ine_"), "{note}");
    let listed = events(&app, "").await;
    assert!(listed["items"].as_array().unwrap().iter().all(|e| e["status"] == "succeeded"));
    // The note still passes the API's own check: a vitals update that keeps it is accepted.
    let api_limit = app.get(Role::Admin, &format!("/api/v1/vitals/{vitals}")).await.expect(200);
    assert_eq!(api_limit["extra_note"].as_str().unwrap(), note);
});
