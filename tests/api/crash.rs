//! Crash safety: `ehrs serve` is killed with SIGKILL in the middle of delivering a burst,
//! started again, and every event still reaches the receiver (duplicates share their
//! `webhook-id`, so receivers can drop them).

use crate::support::{Reply, TestApp, TestReceiver};
use base64::Engine;
use ehrs::auth::Role;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Starts the real binary on the test app's database; returns it and its base URL.
async fn start_server(app: &TestApp, data_dir: &std::path::Path) -> (Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let keys = crate::support::app::test_keys();
    let child = Command::new(env!("CARGO_BIN_EXE_ehrs"))
        .arg("serve")
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", data_dir)
        .env("DATABASE_URL", app.state.settings.database_url())
        .env("EHRS_JWT_SECRET", String::from_utf8(keys.jwt).unwrap())
        .env(
            "EHRS_SECRET_KEY",
            base64::engine::general_purpose::STANDARD.encode(keys.data),
        )
        .env("EHRS_WEBHOOKS_ALLOW_INSECURE", "1")
        .env("EHRS_WEBHOOK_TIMEOUT", "1s")
        .env(
            "EHRS_WEBHOOK_RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms",
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the ehrs binary starts");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        crate::support::until_healthy(&base).await,
        "ehrs serve did not become healthy"
    );
    (child, base)
}

db_test!(
    settings = |s| s.webhook_workers = false,
    async fn every_event_is_delivered_across_a_sigkill(app) {
        let receiver = TestReceiver::start().await;
        // Slow answers keep deliveries in flight when the process dies.
        receiver.always(Reply::Stall(Duration::from_millis(150)));
        let (_, secret) = app.subscribe(&receiver.url, &[], "full").await;
        let data_dir = tempfile::tempdir().unwrap();

        let (mut first, base) = start_server(&app, data_dir.path()).await;
        const EVENTS: usize = 60;
        for _ in 0..EVENTS {
            let response = app
                .client
                .post(format!("{base}/api/v1/medical-camps"))
                .bearer_auth(app.token(Role::Admin))
                .json(&crate::camps::camp_body())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        receiver.wait_for(10, Duration::from_secs(20)).await;
        first.kill().await.unwrap(); // SIGKILL: no graceful anything
        let before_restart = receiver.received().len();
        assert!(before_restart < EVENTS, "the kill must land mid-burst (got {before_restart} already)");

        let (_second, _) = start_server(&app, data_dir.path()).await;
        let got = receiver.wait_for_distinct(EVENTS, Duration::from_secs(60)).await;
        assert!(got.iter().all(|r| r.verify(&secret)));
        // A message delivered twice is the same message: same id, same body.
        for a in &got {
            for b in got.iter().filter(|b| b.webhook_id() == a.webhook_id()) {
                assert_eq!(a.json["event_id"], b.json["event_id"]);
                assert_eq!(a.json["data"], b.json["data"]);
            }
        }
        let messages = app.count_rows("webhook_messages").await;
        assert_eq!(messages, EVENTS as i64);
    }
);
