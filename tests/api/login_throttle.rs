//! Login throttling per username and per client address, through the real server. The
//! test client is 127.0.0.1; an "attacker" client binds 127.0.0.2 (all of 127/8 is
//! loopback), so the server sees two addresses.

use crate::support::TestApp;
use crate::support::app::TEST_PASSWORD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_from(
    client: &reqwest::Client,
    app: &TestApp,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>, Value) {
    let response = client
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

db_test!(
    settings = |s| s.login_throttle_delay = Duration::from_millis(400),
    async fn failed_logins_are_throttled_and_a_success_resets_the_count(app) {
        let client = &app.client;
        for _ in 0..5 {
            assert_eq!(login_from(client, &app, "nurse_user", "not-the-password").await.0, 401);
        }
        // Now even the right password waits.
        let (status, retry_after, body) = login_from(client, &app, "NURSE_USER", TEST_PASSWORD).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "too_many_attempts");
        assert_eq!(body["error"]["details"]["retry_after_seconds"], 1);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(login_from(client, &app, "nurse_user", TEST_PASSWORD).await.0, 200);
        // The success cleared the record: five more failures before any wait.
        for _ in 0..5 {
            assert_eq!(login_from(client, &app, "nurse_user", "not-the-password").await.0, 401);
        }
        assert_eq!(login_from(client, &app, "nurse_user", "not-the-password").await.0, 429);
    }
);

db_test!(
    settings = |s| {
        s.login_throttle_delay = Duration::from_secs(600);
        s.login_throttle_window = Duration::from_millis(600);
    },
    async fn a_failure_record_expires_after_the_window(app) {
        for _ in 0..5 {
            assert_eq!(login_from(&app.client, &app, "doctor_user", "not-the-password").await.0, 401);
        }
        assert_eq!(login_from(&app.client, &app, "doctor_user", TEST_PASSWORD).await.0, 429);
        tokio::time::sleep(Duration::from_millis(650)).await;
        assert_eq!(login_from(&app.client, &app, "doctor_user", "not-the-password").await.0, 401, "forgotten");
        assert_eq!(login_from(&app.client, &app, "doctor_user", TEST_PASSWORD).await.0, 200);
    }
);

db_test!(
    settings = |s| s.login_throttle_after_address = 4,
    async fn an_address_spraying_usernames_is_throttled_and_others_are_not(app) {
        let attacker = client_from("127.0.0.2");
        for n in 0..4 {
            assert_eq!(login_from(&attacker, &app, &format!("guess-{n}"), "password1").await.0, 401);
        }
        let (status, retry_after, _) = login_from(&attacker, &app, "nurse_user", TEST_PASSWORD).await;
        assert_eq!(status, 429);
        assert!(retry_after.is_some());
        // Another address is not concerned, for the same user.
        assert_eq!(login_from(&app.client, &app, "nurse_user", TEST_PASSWORD).await.0, 200);
    }
);

db_test!(async fn a_flood_on_one_account_does_not_keep_another_user_out(app) {
    let attacker = client_from("127.0.0.2");
    const FLOOD: usize = 64;
    let flood = futures_util::future::join_all(
        (0..FLOOD).map(|n| {
            let attacker = attacker.clone();
            let url = format!("{}/api/v1/auth/login", app.base_url);
            async move {
                let response = attacker.post(url).json(&json!({"username": "doctor_user", "password": format!("guess-{n}")})).send().await.unwrap();
                (response.status().as_u16(), response.headers().contains_key("retry-after"))
            }
        }),
    );
    let legitimate = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let (status, _, _) = login_from(&app.client, &app, "nurse_user", TEST_PASSWORD).await;
        (status, started.elapsed())
    };
    let (flood, (status, took)) = tokio::join!(flood, legitimate);
    eprintln!("legitimate login during a {FLOOD}-request flood: {status} in {took:?}");
    assert_eq!(status, 200);
    // Five guesses were checked; the rest were turned away without a hash.
    let checked = flood.iter().filter(|(s, _)| *s == 401).count();
    let throttled: Vec<_> = flood.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(checked, 5, "{flood:?}");
    assert_eq!(throttled.len(), FLOOD - 5, "{flood:?}");
    assert!(throttled.iter().all(|(_, retry_after)| *retry_after));
});
