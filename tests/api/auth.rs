//! Login, tokens, and admin user management.

use crate::support::app::TEST_PASSWORD;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::json;

db_test!(async fn login_returns_a_bearer_token_that_works(app) {
    let token = app
        .request(Method::POST, None, "/api/v1/auth/login", Some(&json!({"username": "nurse_user", "password": TEST_PASSWORD})))
        .await
        .expect(200);
    assert_eq!(token["token_type"], "bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 0);
    let me = app
        .client
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["username"], "nurse_user");
    assert_eq!(me["role"], "nurse");
    assert!(me.get("password_hash").is_none());
});

db_test!(async fn wrong_password_and_unknown_user_are_401(app) {
    for (username, password) in [("nurse_user", "not-the-password"), ("nobody", TEST_PASSWORD)] {
        let response = app
            .request(Method::POST, None, "/api/v1/auth/login", Some(&json!({"username": username, "password": password})))
            .await;
        assert_eq!(response.status, 401);
        assert_eq!(response.error_code(), "unauthorized");
    }
});

db_test!(async fn missing_or_forged_tokens_are_401(app) {
    let anonymous = app.request(Method::GET, None, "/api/v1/auth/me", None).await;
    assert_eq!(anonymous.status, 401);
    let forged = app
        .client
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
});

db_test!(async fn admins_manage_users_and_others_may_not(app) {
    let created = app
        .post(Role::Admin, "/api/v1/users", &json!({"username": "dr.rao", "password": "long-enough-1", "role": "doctor"}))
        .await
        .expect(201);
    assert_eq!(created["role"], "doctor");
    let duplicate = app
        .post(Role::Admin, "/api/v1/users/", &json!({"username": "dr.rao", "password": "long-enough-1", "role": "doctor"}))
        .await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.error_code(), "username_taken");
    let weak = app
        .post(Role::Admin, "/api/v1/users", &json!({"username": "x", "password": "short", "role": "nurse"}))
        .await;
    assert_eq!(weak.status, 422);
    assert_eq!(weak.body["error"]["details"]["fields"].as_array().unwrap().len(), 2);
    for role in [Role::Doctor, Role::Nurse, Role::Pharmacist, Role::Volunteer] {
        let response = app
            .post(role, "/api/v1/users", &json!({"username": "someone", "password": "long-enough-1", "role": "admin"}))
            .await;
        assert_eq!(response.status, 403, "{role:?} must not create users");
    }
    let list = app.get(Role::Admin, "/api/v1/users?limit=2").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["total"], 6);
});

db_test!(async fn a_disabled_user_loses_access_at_once(app) {
    let me = app.get(Role::Volunteer, "/api/v1/auth/me").await.expect(200);
    let id = me["id"].as_str().unwrap();
    app.patch(Role::Admin, &format!("/api/v1/users/{id}"), &json!({"is_active": false}))
        .await
        .expect(200);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/auth/me").await.status, 401);
});

db_test!(async fn a_role_that_may_not_write_gets_403_whatever_body_it_sent(app) {
    // The role is checked before the body is read: no 422 hints to a caller who may not act.
    let bad_patient = app.post(Role::Pharmacist, "/api/v1/patients", &serde_json::json!({"name": 5})).await;
    assert_eq!(bad_patient.status, 403);
    assert_eq!(bad_patient.error_code(), "forbidden");
    let malformed = app
        .send_raw(reqwest::Method::POST, Role::Doctor, "/api/v1/medical-camps", "application/json", b"{\"name\":".to_vec())
        .await;
    assert_eq!(malformed.status, 403);
    let users = app.post(Role::Nurse, "/api/v1/users", &serde_json::json!({})).await;
    assert_eq!(users.status, 403);
    assert_eq!(app.count_rows("patients").await, 0);
});
