//! The access audit: who saw or changed which patient's record. Reads, lists and writes
//! of every clinical route are recorded with the user, role, route, time and address;
//! the report (`GET /audit/patient-access`) is for admins only and filters by patient,
//! user and time, paged by cursor.

use crate::support::care::{Clinic, clinic, create_medicine, id, prescribe};
use crate::support::people::{create_patient, patient_body, user_id, vitals_body};
use crate::support::{TestApp, eventually};
use ehrs::auth::Role;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const REPORT: &str = "/api/v1/audit/patient-access";

/// The report's first page for `query` (as admin).
async fn report(app: &TestApp, query: &str) -> Value {
    app.get(Role::Admin, &format!("{REPORT}?{query}"))
        .await
        .expect(200)
}

/// Every entry for `query`, following the cursor to the end.
async fn whole_report(app: &TestApp, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut page = report(app, &format!("{query}&limit=200")).await;
    loop {
        entries.extend(page["items"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["next_cursor"].as_str() else {
            return entries;
        };
        page = report(app, &format!("{query}&limit=200&cursor={cursor}")).await;
    }
}

/// Waits until the report for `query` holds an entry that `matches`, and returns it.
async fn entry_where(app: &TestApp, query: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let holds = || async { whole_report(app, query).await.iter().any(&matches) };
    eventually(&format!("an access entry for {query}"), holds).await;
    whole_report(app, query)
        .await
        .into_iter()
        .find(matches)
        .unwrap()
}

fn routes_of(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["method"].as_str().unwrap(),
                e["route"].as_str().unwrap()
            )
        })
        .collect()
}

db_test!(async fn a_nurses_read_and_list_name_the_nurse_the_route_the_time_and_every_patient(app) {
    create_patient(&app, "ACC-A").await;
    create_patient(&app, "ACC-B").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    app.get(Role::Nurse, "/api/v1/patients/ACC-A").await.expect(200);
    let list = app.get(Role::Nurse, "/api/v1/patients?limit=50").await.expect(200);
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let listed: Vec<&str> = list["items"].as_array().unwrap().iter().map(|p| p["book_no"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2);

    let read = entry_where(&app, "book_no=ACC-A", |e| e["action"] == "read").await;
    assert_eq!(read["username"], "nurse_user");
    assert_eq!(read["user_id"], user_id(&app, Role::Nurse).await);
    assert_eq!(read["role"], "nurse");
    assert_eq!(read["method"], "GET");
    assert_eq!(read["route"], "/api/v1/patients/{book_no}");
    assert_eq!(read["client_address"], "127.0.0.1");
    assert_eq!(read["book_nos"], json!(["ACC-A"]));
    assert!(read["id"].as_str().unwrap().starts_with("acs_"));
    let at = chrono::DateTime::parse_from_rfc3339(read["at"].as_str().unwrap()).unwrap();
    assert!(before <= at && at <= after, "the access time {at} is when it happened");

    // The list names every patient it returned, in the order shown, and is found from
    // either patient; the admin's writes that created them are recorded as admin's.
    let listing = entry_where(&app, "user=nurse_user", |e| e["action"] == "list").await;
    assert_eq!(listing["route"], "/api/v1/patients");
    assert_eq!(listing["book_nos"], json!(listed));
    let for_b = whole_report(&app, "book_no=ACC-B").await;
    assert!(for_b.iter().any(|e| e["id"] == listing["id"]), "B's report holds the list: {for_b:?}");
    let created = entry_where(&app, "book_no=ACC-B", |e| e["action"] == "write").await;
    assert_eq!((created["username"].as_str(), created["method"].as_str()), (Some("admin_user"), Some("POST")));

    // "What did the nurse look at": exactly the read and the list, newest first.
    let nurse = whole_report(&app, &format!("user={}", user_id(&app, Role::Nurse).await)).await;
    let actions: Vec<&str> = nurse.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["list", "read"]);
    assert_eq!(whole_report(&app, "user=NURSE_USER").await.len(), 2, "usernames match in any case");
});

db_test!(async fn only_admins_read_the_report_and_nothing_can_change_it(app) {
    for role in [Role::Volunteer, Role::Nurse, Role::Doctor, Role::Pharmacist] {
        let refused = app.get(role, REPORT).await;
        assert_eq!(refused.status, 403, "{role:?}");
        assert_eq!(refused.error_code(), "forbidden");
    }
    assert_eq!(app.request(reqwest::Method::GET, None, REPORT, None).await.status, 401);
    for method in [reqwest::Method::DELETE, reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::POST] {
        let answer = app.request(method.clone(), Some(Role::Admin), REPORT, Some(&json!({}))).await;
        assert_eq!(answer.status, 405, "{method} on the report");
    }
});

db_test!(async fn failed_requests_show_nothing_and_are_not_recorded(app) {
    create_patient(&app, "ACC-OK").await;
    app.get(Role::Nurse, "/api/v1/patients/ACC-NONE").await.expect(404);
    app.put(Role::Nurse, "/api/v1/patients/vitals/ACC-OK", &json!({"pulse": 9999})).await.expect(422);
    app.patch(Role::Pharmacist, "/api/v1/patients/ACC-OK", &json!({"phone": "1234"})).await.expect(403);
    // A later success is the marker that everything before it was written.
    app.get(Role::Doctor, "/api/v1/patients/ACC-OK").await.expect(200);
    entry_where(&app, "user=doctor_user", |_| true).await;
    assert!(whole_report(&app, "book_no=ACC-NONE").await.is_empty());
    assert!(whole_report(&app, "user=nurse_user").await.is_empty(), "the nurse's 404 and 422 showed nothing");
    assert!(whole_report(&app, "user=pharmacist_user").await.is_empty());
});

db_test!(async fn every_clinical_route_is_recorded_with_its_patient(app) {
    let clinic = clinic(&app).await;
    let medicine = id(&create_medicine(&app, "Paracetamol", 50).await);
    let shown = exercise_every_clinical_route(&app, &clinic, &medicine).await;

    // The document's clinical operations (by tag) are exactly those exercised, so a new
    // route must be added here, and recorded, to pass.
    let document: Value = serde_json::from_str(&ehrs::router::document_json()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let tags = operation["tags"].as_array().unwrap();
            if tags.iter().any(|t| ["patients", "vitals", "consultations", "queue", "prescriptions"].contains(&t.as_str().unwrap())) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert_eq!(shown, documented, "every clinical operation is exercised");

    let recorded = || async { routes_of(&whole_report(&app, "book_no=P-1").await) == shown };
    eventually("every clinical route in P-1's report", recorded).await;
    let entries = whole_report(&app, "book_no=P-1").await;
    for entry in &entries {
        let expected = match (entry["method"].as_str().unwrap(), entry["route"].as_str().unwrap()) {
            ("GET", "/api/v1/patients" | "/api/v1/consultations" | "/api/v1/queue" | "/api/v1/prescriptions"
                | "/api/v1/medical-camps/{camp_id}/registrations") => "list",
            ("GET", _) => "read",
            _ => "write",
        };
        assert_eq!(entry["action"], expected, "{entry}");
        assert!(entry["book_nos"].as_array().unwrap().contains(&json!("P-1")), "{entry}");
    }
    assert!(
        entries.iter().all(|e| e["book_nos"].as_array().unwrap().iter().all(|b| b == "P-1" || b == "P-2")),
        "no entry names a patient it did not show"
    );
}
);

/// Calls every clinical operation once with success, about patient P-1 (a second
/// patient, P-2, is in the lists); returns "METHOD route" of each.
async fn exercise_every_clinical_route(
    app: &TestApp,
    clinic: &Clinic,
    medicine: &str,
) -> BTreeSet<String> {
    let camp = &clinic.camp_id;
    let mut shown = BTreeSet::new();
    let mut call = |method: &str, route: &str| {
        shown.insert(format!("{method} {route}"));
    };
    app.post(Role::Nurse, "/api/v1/patients", &patient_body("P-1"))
        .await
        .expect(201);
    call("POST", "/api/v1/patients");
    create_patient(app, "P-2").await;
    app.patch(
        Role::Nurse,
        "/api/v1/patients/P-1",
        &json!({"phone": "9000000000"}),
    )
    .await
    .expect(200);
    call("PATCH", "/api/v1/patients/{book_no}");
    app.get(Role::Nurse, "/api/v1/patients/P-1")
        .await
        .expect(200);
    call("GET", "/api/v1/patients/{book_no}");
    app.get(Role::Nurse, "/api/v1/patients").await.expect(200);
    call("GET", "/api/v1/patients");
    app.post(
        Role::Nurse,
        "/api/v1/patients/P-1/register",
        &json!({"camp_id": camp}),
    )
    .await
    .expect(201);
    call("POST", "/api/v1/patients/{book_no}/register");
    app.get(Role::Nurse, "/api/v1/patients/P-1/registrations")
        .await
        .expect(200);
    call("GET", "/api/v1/patients/{book_no}/registrations");
    app.get(
        Role::Nurse,
        &format!("/api/v1/medical-camps/{camp}/registrations"),
    )
    .await
    .expect(200);
    call("GET", "/api/v1/medical-camps/{camp_id}/registrations");
    let vitals = app
        .put(Role::Nurse, "/api/v1/patients/vitals/P-1", &vitals_body())
        .await
        .expect(201);
    call("PUT", "/api/v1/patients/vitals/{book_no}");
    app.get(Role::Nurse, "/api/v1/patients/vitals/P-1")
        .await
        .expect(200);
    call("GET", "/api/v1/patients/vitals/{book_no}");
    app.get(Role::Nurse, &format!("/api/v1/vitals/{}", id(&vitals)))
        .await
        .expect(200);
    call("GET", "/api/v1/vitals/{vitals_id}");
    let consultation = clinic.assign(app, "P-1").await;
    call("POST", "/api/v1/doctors/assign-doctor");
    let consultation_id = id(&consultation);
    let entry = consultation["queue_entry"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.get(Role::Doctor, "/api/v1/consultations")
        .await
        .expect(200);
    call("GET", "/api/v1/consultations");
    app.get(
        Role::Doctor,
        &format!("/api/v1/consultations/{consultation_id}"),
    )
    .await
    .expect(200);
    call("GET", "/api/v1/consultations/{consultation_id}");
    app.put(
        Role::Doctor,
        &format!("/api/v1/consultations/{consultation_id}"),
        &json!({"diagnosis": "Viral fever"}),
    )
    .await
    .expect(200);
    call("PUT", "/api/v1/consultations/{consultation_id}");
    app.get(Role::Nurse, "/api/v1/queue").await.expect(200);
    call("GET", "/api/v1/queue");
    app.get(Role::Nurse, &format!("/api/v1/queue/{entry}"))
        .await
        .expect(200);
    call("GET", "/api/v1/queue/{queue_entry_id}");
    app.put(
        Role::Nurse,
        "/api/v1/queue/priority",
        &json!({"queue_entry_id": entry, "priority": "high"}),
    )
    .await
    .expect(200);
    call("PUT", "/api/v1/queue/priority");
    app.put(
        Role::Nurse,
        "/api/v1/queue/status-update",
        &json!({"queue_entry_id": entry, "status": "in_consultation"}),
    )
    .await
    .expect(200);
    call("PUT", "/api/v1/queue/status-update");
    let prescription = id(&prescribe(app, &consultation_id, medicine, 2).await);
    call(
        "POST",
        "/api/v1/consultations/{consultation_id}/prescription",
    );
    app.get(
        Role::Pharmacist,
        &format!("/api/v1/consultations/{consultation_id}/prescriptions"),
    )
    .await
    .expect(200);
    call(
        "GET",
        "/api/v1/consultations/{consultation_id}/prescriptions",
    );
    app.get(
        Role::Pharmacist,
        &format!("/api/v1/consultations/prescriptions/{prescription}"),
    )
    .await
    .expect(200);
    call(
        "GET",
        "/api/v1/consultations/prescriptions/{prescription_id}",
    );
    app.get(Role::Pharmacist, "/api/v1/prescriptions?book_no=P-1")
        .await
        .expect(200);
    call("GET", "/api/v1/prescriptions");
    app.put(
        Role::Pharmacist,
        &format!("/api/v1/consultations/prescriptions/{prescription}"),
        &json!({"dispatch_status": "given"}),
    )
    .await
    .expect(200);
    call(
        "PUT",
        "/api/v1/consultations/prescriptions/{prescription_id}",
    );
    shown
}

db_test!(async fn the_report_filters_by_time_and_pages_by_cursor(app) {
    create_patient(&app, "ACC-T").await;
    for _ in 0..4 {
        app.get(Role::Doctor, "/api/v1/patients/ACC-T").await.expect(200);
    }
    eventually("the doctor's 4 reads", || async { whole_report(&app, "user=doctor_user").await.len() == 4 }).await;
    let all = whole_report(&app, "user=doctor_user").await;
    let mut paged = Vec::new();
    let mut page = report(&app, "user=doctor_user&limit=3").await;
    loop {
        paged.extend(page["items"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["next_cursor"].as_str() else { break };
        page = report(&app, &format!("user=doctor_user&limit=3&cursor={cursor}")).await;
    }
    assert_eq!(paged, all, "pages of 3 give every entry once, newest first");
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(report(&app, &format!("user=doctor_user&from={future}")).await["items"].as_array().unwrap().is_empty());
    assert_eq!(report(&app, &format!("user=doctor_user&from={past}&to={future}")).await["items"].as_array().unwrap().len(), 4);
    assert!(report(&app, &format!("user=doctor_user&to={past}")).await["items"].as_array().unwrap().is_empty());

    assert!(report(&app, &format!("user=doctor_user&from={future}&to={past}")).await["items"].as_array().unwrap().is_empty());
    assert_eq!(report(&app, "user=doctor_user&book_no=").await["items"].as_array().unwrap().len(), 4, "an empty filter is none");
    for (query, field) in [("cursor=nonsense", "cursor"), ("limit=0", "limit"), ("limit=201", "limit")] {
        let refused = app.get(Role::Admin, &format!("{REPORT}?{query}")).await;
        assert_eq!(refused.status, 422, "{query}");
        assert_eq!(refused.body["error"]["details"]["fields"][0]["field"], field, "{query}: {:?}", refused.body);
    }
    assert_eq!(app.get(Role::Admin, &format!("{REPORT}?from=yesterday")).await.status, 422);
});

db_test!(settings = |s: &mut ehrs::config::Settings| s.access_audit_retention = std::time::Duration::from_secs(86_400),
    async fn entries_past_the_retention_are_removed(app) {
    create_patient(&app, "ACC-R").await;
    app.get(Role::Nurse, "/api/v1/patients/ACC-R").await.expect(200);
    entry_where(&app, "user=nurse_user", |_| true).await;
    // An entry from two days ago, as the camp would have written it then.
    let two_days_ago = chrono::Utc::now().timestamp_millis() - 2 * 86_400_000;
    let old = ehrs::ids::AccessId::first_at(two_days_ago);
    let nurse = user_id(&app, Role::Nurse).await;
    sqlx::query(
        "INSERT INTO patient_access (id, at, user_id, username, role, action, method, route, client_addr, book_nos) \
         VALUES ($1, $2, $3, 'nurse_user', 'nurse', 'read', 'GET', '/api/v1/patients/{book_no}', '127.0.0.1', '[\"ACC-R\"]')",
    )
    .bind(old.as_str()).bind(two_days_ago).bind(&nurse)
    .execute(app.state.db.pool()).await.unwrap();
    sqlx::query("INSERT INTO patient_access_patients (book_no, access_id) VALUES ('ACC-R', $1)")
        .bind(old.as_str()).execute(app.state.db.pool()).await.unwrap();
    let before = whole_report(&app, "book_no=ACC-R").await;
    assert_eq!(before.len(), 3, "the admin's write, the nurse's read and the old read");
    assert_eq!(before[2]["id"], old.as_str());

    let removed = app.state.access.prune().await.unwrap();
    assert_eq!(removed, 1, "only the two-day-old entry is past a one-day retention");
    let after = whole_report(&app, "book_no=ACC-R").await;
    assert_eq!(after, before[..2].to_vec());
    assert_eq!(app.count_rows("patient_access_patients").await, 2, "its patient row went with it");
});

/// An orderly stop (SIGTERM) writes the entries still queued: the real binary is stopped
/// right after a write and a read, within the writer's gathering interval, and the
/// database holds both entries afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_stop_writes_every_queued_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = crate::backup::serve(dir.path()).await;
    let password = std::fs::read_to_string(dir.path().join("initial-admin-password")).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = &crate::support::admin_token(&client, &base, password.trim()).await;
    let created = client
        .post(format!("{base}/api/v1/patients"))
        .bearer_auth(token)
        .json(&patient_body("ACC-STOP"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let read = client
        .get(format!("{base}/api/v1/patients/ACC-STOP"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    crate::support::stop_gracefully(server).await;

    let db = rusqlite::Connection::open(dir.path().join("ehrs.db")).unwrap();
    let mut statement = db
        .prepare("SELECT method, route, username, book_nos FROM patient_access ORDER BY id")
        .unwrap();
    let entries: Vec<(String, String, String, String)> = statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let book = r#"["ACC-STOP"]"#.to_string();
    assert_eq!(
        entries,
        [
            (
                "POST".into(),
                "/api/v1/patients".into(),
                "admin".into(),
                book.clone()
            ),
            (
                "GET".into(),
                "/api/v1/patients/{book_no}".into(),
                "admin".into(),
                book
            ),
        ]
    );
}
