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

/// Logs in as `username` from the test client; the raw response.
async fn login(
    app: &crate::support::TestApp,
    username: &str,
    password: &str,
) -> crate::support::TestResponse {
    app.request(
        Method::POST,
        None,
        "/api/v1/auth/login",
        Some(&json!({"username": username, "password": password})),
    )
    .await
}

/// `GET /auth/me` with a given token; the status.
async fn me_status(app: &crate::support::TestApp, token: &str) -> u16 {
    app.client
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn token_of(body: &serde_json::Value) -> String {
    body["access_token"].as_str().unwrap().to_string()
}

db_test!(async fn a_password_change_revokes_the_users_tokens(app) {
    let old = token_of(&login(&app, "nurse_user", TEST_PASSWORD).await.expect(200));
    let id = crate::support::people::user_id(&app, Role::Nurse).await;
    app.patch(Role::Admin, &format!("/api/v1/users/{id}"), &json!({"password": "a-new-long-secret"}))
        .await
        .expect(200);
    let revoked = app.request(Method::GET, Some(Role::Nurse), "/api/v1/auth/me", None).await;
    assert_eq!(revoked.status, 401);
    assert!(revoked.body["error"]["message"].as_str().unwrap().contains("revoked"), "{}", revoked.text);
    assert_eq!(me_status(&app, &old).await, 401);
    assert_eq!(login(&app, "nurse_user", TEST_PASSWORD).await.status, 401);
    let new = token_of(&login(&app, "nurse_user", "a-new-long-secret").await.expect(200));
    assert_eq!(me_status(&app, &new).await, 200);
    // Other users keep their sessions.
    assert_eq!(app.get(Role::Doctor, "/api/v1/auth/me").await.status, 200);
});

db_test!(async fn a_role_change_revokes_the_users_tokens_but_a_no_op_does_not(app) {
    let id = crate::support::people::user_id(&app, Role::Nurse).await;
    app.patch(Role::Admin, &format!("/api/v1/users/{id}"), &json!({"role": "nurse", "is_active": true}))
        .await
        .expect(200);
    assert_eq!(app.get(Role::Nurse, "/api/v1/auth/me").await.status, 200, "nothing changed");
    app.patch(Role::Admin, &format!("/api/v1/users/{id}"), &json!({"role": "doctor"}))
        .await
        .expect(200);
    assert_eq!(app.get(Role::Nurse, "/api/v1/auth/me").await.status, 401);
    let new = token_of(&login(&app, "nurse_user", TEST_PASSWORD).await.expect(200));
    assert_eq!(me_status(&app, &new).await, 200);
});

db_test!(async fn a_token_from_before_a_deactivation_stays_dead_after_reactivation(app) {
    let id = crate::support::people::user_id(&app, Role::Volunteer).await;
    let path = format!("/api/v1/users/{id}");
    app.patch(Role::Admin, &path, &json!({"is_active": false})).await.expect(200);
    assert_eq!(login(&app, "volunteer_user", TEST_PASSWORD).await.status, 401);
    app.patch(Role::Admin, &path, &json!({"is_active": true})).await.expect(200);
    assert_eq!(app.get(Role::Volunteer, "/api/v1/auth/me").await.status, 401);
    let new = token_of(&login(&app, "volunteer_user", TEST_PASSWORD).await.expect(200));
    assert_eq!(me_status(&app, &new).await, 200);
});

db_test!(async fn logout_revokes_every_token_of_the_user_and_no_other(app) {
    let second = token_of(&login(&app, "pharmacist_user", TEST_PASSWORD).await.expect(200));
    let response = app.request(Method::POST, Some(Role::Pharmacist), "/api/v1/auth/logout", None).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(app.get(Role::Pharmacist, "/api/v1/auth/me").await.status, 401);
    assert_eq!(me_status(&app, &second).await, 401, "the other device is signed out too");
    assert_eq!(app.request(Method::POST, None, "/api/v1/auth/logout", None).await.status, 401);
    assert_eq!(app.get(Role::Doctor, "/api/v1/auth/me").await.status, 200);
    let again = token_of(&login(&app, "pharmacist_user", TEST_PASSWORD).await.expect(200));
    assert_eq!(me_status(&app, &again).await, 200);
});

db_test!(async fn the_last_active_admin_cannot_be_demoted_or_deactivated(app) {
    let id = crate::support::people::user_id(&app, Role::Admin).await;
    let path = format!("/api/v1/users/{id}");
    let before = app.get(Role::Admin, &path).await.expect(200);
    for change in [json!({"role": "nurse"}), json!({"is_active": false}), json!({"role": "admin", "is_active": false}),
                   json!({"role": "doctor", "password": "another-long-secret"})] {
        let refused = app.patch(Role::Admin, &path, &change).await;
        assert_eq!(refused.status, 409, "{change}: {}", refused.text);
        assert_eq!(refused.error_code(), "last_admin");
        assert_eq!(refused.body["error"]["details"]["user_id"], id.as_str());
    }
    // Nothing changed, the token included.
    assert_eq!(app.get(Role::Admin, &path).await.expect(200), before);
    assert_eq!(login(&app, "admin_user", TEST_PASSWORD).await.status, 200);
    // With a second active admin, the first may step down.
    app.post(Role::Admin, "/api/v1/users", &json!({"username": "second-admin", "password": "another-long-secret", "role": "admin"}))
        .await
        .expect(201);
    let demoted = app.patch(Role::Admin, &path, &json!({"role": "nurse"})).await.expect(200);
    assert_eq!(demoted["role"], "nurse");
});

/// A token for the user as it is now (its current generation).
async fn fresh_token(app: &crate::support::TestApp, id: &ehrs::ids::UserId) -> String {
    let generation: i64 = sqlx::query_scalar("SELECT token_generation FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    app.state
        .auth
        .tokens
        .issue(id, Role::Admin, generation)
        .unwrap()
}

async fn active_admins(app: &crate::support::TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active = 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

db_test!(async fn two_admins_demoting_each_other_at_once_leave_one_admin(app) {
    use ehrs::ids::UserId;
    let first = UserId::parse(&crate::support::people::user_id(&app, Role::Admin).await).unwrap();
    let patch = |token: String, target: &UserId, body: serde_json::Value| {
        let request = app.client.patch(format!("{}/api/v1/users/{target}", app.base_url)).bearer_auth(token).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for round in 0..6 {
        // The first admin's own token dies whenever it is deactivated: fresh ones each time.
        let second: serde_json::Value = app.client
            .post(format!("{}/api/v1/users", app.base_url))
            .bearer_auth(fresh_token(&app, &first).await)
            .json(&json!({"username": format!("admin-{round}"), "password": "another-long-secret", "role": "admin"}))
            .send().await.unwrap().json().await.unwrap();
        let second = UserId::parse(second["id"].as_str().expect("created")).unwrap();
        let (a, b) = tokio::join!(
            patch(fresh_token(&app, &first).await, &second, json!({"role": "nurse"})),
            patch(fresh_token(&app, &second).await, &first, json!({"is_active": false})),
        );
        assert_eq!(active_admins(&app).await, 1, "round {round}: statuses {a} {b}");
        let mut statuses = [a, b];
        statuses.sort();
        // One wins; the other is refused as the last admin, or its caller had already
        // lost the role (its token revoked) when it was checked.
        assert!(matches!(statuses, [200, 401] | [200, 409]), "round {round}: {statuses:?}");
        if b == 200 {
            // The first admin was deactivated: the second brings it back and steps down.
            assert_eq!(patch(fresh_token(&app, &second).await, &first, json!({"is_active": true})).await, 200);
            assert_eq!(patch(fresh_token(&app, &first).await, &second, json!({"role": "nurse"})).await, 200);
        }
        assert_eq!(active_admins(&app).await, 1);
    }
});

db_test!(async fn the_password_policy_refuses_the_obvious_with_the_reason(app) {
    for (password, reason) in [
        ("short", "at least 8"),
        ("password", "commonly used"),
        ("12345678", "commonly used"),
        ("        ", "whitespace"),
        ("new.nurse", "username"),
        ("my-New.Nurse-pass", "username"),
        ("aaaaaaaaaaaa", "repeated"),
    ] {
        let refused = app
            .post(Role::Admin, "/api/v1/users", &json!({"username": "new.nurse", "password": password, "role": "nurse"}))
            .await;
        assert_eq!(refused.status, 422, "{password:?}: {}", refused.text);
        let field = &refused.body["error"]["details"]["fields"][0];
        assert_eq!(field["field"], "password");
        assert!(field["reason"].as_str().unwrap().contains(reason), "{password:?}: {field}");
    }
    assert_eq!(app.count_rows("users").await, 5);
    // A password change is held to the same rule, with the user's own name.
    let id = crate::support::people::user_id(&app, Role::Doctor).await;
    let refused = app.patch(Role::Admin, &format!("/api/v1/users/{id}"), &json!({"password": "doctor_user-2026"})).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.body["error"]["details"]["fields"][0]["reason"].as_str().unwrap().contains("username"));
    assert_eq!(login(&app, "doctor_user", TEST_PASSWORD).await.status, 200, "the password did not change");
});

db_test!(async fn usernames_are_unique_and_matched_without_regard_to_case(app) {
    let taken = app
        .post(Role::Admin, "/api/v1/users", &json!({"username": "ADMIN_USER", "password": "another-long-secret", "role": "nurse"}))
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text);
    assert_eq!(taken.error_code(), "username_taken");
    assert_eq!(app.count_rows("users").await, 5);
    let token = token_of(&login(&app, "Nurse_User", TEST_PASSWORD).await.expect(200));
    let me = app.client.get(format!("{}/api/v1/auth/me", app.base_url)).bearer_auth(token).send().await.unwrap();
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["username"], "nurse_user");
});
