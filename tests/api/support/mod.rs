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
