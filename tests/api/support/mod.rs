#![allow(dead_code, unused_imports)]
//! Test helpers: [`TestApp`] (the real router on a fresh database, served on 127.0.0.1,
//! with a token per role) and the [`db_test!`] macro that runs a test on both databases.

pub mod app;
pub mod browser;
pub mod care;
pub mod fake_svix;
pub mod inbound;
pub mod people;
pub mod receiver;

pub use app::{Backend, Cleanup, TestApp, TestResponse, run_test};
pub use receiver::{Received, Reply, TestReceiver};

/// A port that is free now, for a process the test starts (which binds it itself).
/// Taken below Linux's ephemeral range (32768–60999): a port from that range, freed
/// after the probe, could be taken meanwhile as the source port of any test's outgoing
/// connection, and the process then failed with "Address already in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Each test process starts at its own place in the range, then walks it.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id();
    for _ in 0..12_000 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (offset.wrapping_add(step) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// Declares a test that runs on SQLite and on PostgreSQL:
///
/// ```ignore
/// db_test!(async fn creates_a_camp(app) { ... });
/// ```
///
/// expands to a module `creates_a_camp` with tests `sqlite` and `postgres`.
/// A test that needs other settings names them first:
/// `db_test!(settings = |s| s.webhook_timeout = ..., async fn name(app) { ... });`
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        db_test!(settings = |_| {}, $(#[$meta])* async fn $name($app) $body);
    };
    (settings = $configure:expr, $(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            async fn body($app: $crate::support::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::support::run_test($crate::support::Backend::Sqlite, $configure, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::support::run_test($crate::support::Backend::Postgres, $configure, body).await;
            }
        }
    };
}

/// Waits (up to 10 s) until a server started as a process answers `GET {base}/health`
/// with 200; false if it never does.
pub async fn until_healthy(base: &str) -> bool {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..100 {
        let answer = client.get(format!("{base}/health")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Signs in as `admin` on a server started as a process and returns the bearer token;
/// panics when the password does not sign in.
pub async fn admin_token(client: &reqwest::Client, base: &str, password: &str) -> String {
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("admin's password does not sign in: {login}"))
        .to_string()
}

/// Stops an `ehrs serve` process the way systemd does (SIGTERM) and waits for it:
/// it must exit cleanly within 30 s.
pub async fn stop_gracefully(mut server: tokio::process::Child) {
    let pid = server.id().expect("the server is running").to_string();
    let signal = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(signal.success());
    let exited = tokio::time::timeout(std::time::Duration::from_secs(30), server.wait()).await;
    let status = exited.expect("ehrs stops on SIGTERM").unwrap();
    assert!(status.success(), "ehrs serve stops cleanly: {status}");
}

/// Polls until `check` holds (outcomes are recorded just after the receiver answers);
/// panics after 20 s, a failure detector rather than a speed assertion.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
