//! Inbound sources: CRUD, the secret shown once and stored sealed, rotation, roles.

use crate::support::inbound::*;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::json;

db_test!(async fn source_lifecycle_shows_the_secret_once(app) {
    let created = app
        .post(Role::Admin, SOURCES, &json!({"name": "City Lab", "allowed_event_types": ["lab.result.ready"]}))
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(id.starts_with("src_"));
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    assert_eq!(created["is_active"], true);
    assert_eq!(created["action_mapping"], json!({}));

    let fetched = app.get(Role::Admin, &format!("{SOURCES}/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert!(fetched.body.get("secret").is_none());
    assert!(!fetched.text.contains(secret));
    let list = app.get(Role::Admin, SOURCES).await;
    assert_eq!(list.body["total"], 1);
    assert!(!list.text.contains(secret));
    assert!(!list.text.contains("secret"));

    let update = json!({"name": "City Lab 2", "allowed_event_types": ["lab.result.ready", "lab.done"],
        "action_mapping": {"lab.done": "lab.result.ready"}, "is_active": false});
    let updated = app.put(Role::Admin, &format!("{SOURCES}/{id}/"), &update).await.expect(200);
    assert_eq!(updated["name"], "City Lab 2");
    assert_eq!(updated["is_active"], false);
    assert_eq!(updated["action_mapping"], json!({"lab.done": "lab.result.ready"}));
    // Absent optional fields keep their values.
    let kept = app
        .put(Role::Admin, &format!("{SOURCES}/{id}"), &json!({"name": "City Lab 3", "allowed_event_types": ["lab.result.ready", "lab.done"]}))
        .await
        .expect(200);
    assert_eq!(kept["is_active"], false);
    assert_eq!(kept["action_mapping"], json!({"lab.done": "lab.result.ready"}));
    // Dropping an event type that the mapping still names is refused.
    let dangling = app
        .put(Role::Admin, &format!("{SOURCES}/{id}"), &json!({"name": "x", "allowed_event_types": ["lab.result.ready"]}))
        .await;
    assert_eq!(dangling.status, 422);

    app.delete(Role::Admin, &format!("{SOURCES}/{id}")).await.expect(204);
    assert_eq!(app.get(Role::Admin, &format!("{SOURCES}/{id}")).await.status, 404);
    assert_eq!(app.delete(Role::Admin, &format!("{SOURCES}/{id}")).await.status, 404);
    assert_eq!(app.get(Role::Admin, &format!("{SOURCES}/src_nonsense")).await.status, 404);
});

db_test!(async fn secrets_are_sealed_in_the_database(app) {
    let first = default_source(&app).await;
    let second = create_source(&app, &["lab.result.ready"], json!({})).await;
    let rows: Vec<(String, String, String, String, String)> =
        sqlx::query_as("SELECT id, name, allowed_event_types, secret_enc, action_mapping FROM inbound_sources")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let text = format!("{row:?}");
        for source in [&first, &second] {
            let key_part = source.secret.trim_start_matches("whsec_");
            assert!(!text.contains(key_part), "a secret is stored in plain text: {text}");
        }
        assert!(row.3.starts_with("v1:"));
    }
    // A sealed secret copied to another source does not open there (bound to its id).
    let sealed = &rows.iter().find(|r| r.0 == first.id).unwrap().3;
    assert!(app.state.secrets.open(sealed, &second.id).is_err());
    assert_eq!(app.state.secrets.open(sealed, &first.id).unwrap(), first.secret);
});

db_test!(async fn rotating_the_secret_retires_the_old_one(app) {
    let source = default_source(&app).await;
    let rotated = app.post(Role::Admin, &format!("{SOURCES}/{}/rotate-secret", source.id), &json!({})).await.expect(200);
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, source.secret);
    assert_eq!(rotated["id"], source.id.as_str());

    let event = lab_event("evt-1", "B-1", "ok", None);
    assert_eq!(send_event(&app, &source, &event).await.status, 401, "old secret must stop working");
    let renewed = Source { id: source.id.clone(), secret: new_secret };
    assert_eq!(send_event(&app, &renewed, &event).await.status, 202);
    let missing = app.post(Role::Admin, &format!("{SOURCES}/src_01jdq3v8m2x7c9k4t6w0y5z1ab/rotate-secret"), &json!({})).await;
    assert_eq!(missing.status, 404);
});

db_test!(async fn invalid_sources_are_refused(app) {
    let cases = [
        json!({"name": "", "allowed_event_types": ["lab.result.ready"]}),
        json!({"name": "x", "allowed_event_types": []}),
        json!({"name": "x", "allowed_event_types": ["has space"]}),
        json!({"name": "x", "allowed_event_types": ["a", "a"]}),
        json!({"name": "x", "allowed_event_types": ["a"], "action_mapping": {"a": "delete.everything"}}),
        json!({"name": "x", "allowed_event_types": ["a"], "action_mapping": {"b": "lab.result.ready"}}),
    ];
    for body in cases {
        let response = app.post(Role::Admin, SOURCES, &body).await;
        assert_eq!(response.status, 422, "{body} → {}", response.text);
        assert_eq!(response.error_code(), "validation_failed");
    }
    let unknown_field = app.post(Role::Admin, SOURCES, &json!({"name": "x", "allowed_event_types": ["a"], "secret": "mine"})).await;
    assert_eq!(unknown_field.status, 422);
    assert_eq!(app.count_rows("inbound_sources").await, 0);
});

db_test!(async fn only_admins_manage_inbound_webhooks(app) {
    let source = default_source(&app).await;
    let body = json!({"name": "x", "allowed_event_types": ["lab.result.ready"]});
    let one = format!("{SOURCES}/{}", source.id);
    let rotate = format!("{one}/rotate-secret");
    let retry = format!("{EVENTS}/ine_01jdq3v8m2x7c9k4t6w0y5z1ab/retry");
    for role in [Role::Doctor, Role::Nurse, Role::Pharmacist, Role::Volunteer] {
        assert_eq!(app.get(role, SOURCES).await.status, 403);
        assert_eq!(app.post(role, SOURCES, &body).await.status, 403);
        assert_eq!(app.get(role, &one).await.status, 403);
        assert_eq!(app.put(role, &one, &body).await.status, 403);
        assert_eq!(app.delete(role, &one).await.status, 403);
        assert_eq!(app.post(role, &rotate, &json!({})).await.status, 403);
        assert_eq!(app.get(role, EVENTS).await.status, 403);
        assert_eq!(app.post(role, &retry, &json!({})).await.status, 403);
    }
    for (method, path) in [(Method::GET, SOURCES), (Method::POST, SOURCES), (Method::GET, &one), (Method::DELETE, &one),
        (Method::POST, &rotate), (Method::GET, EVENTS), (Method::POST, &retry)] {
        assert_eq!(app.request(method, None, path, Some(&body)).await.status, 401);
    }
    assert_eq!(app.count_rows("inbound_sources").await, 1);
});
