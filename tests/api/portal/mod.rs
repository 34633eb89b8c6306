//! The admin portal (`/portal`) in real headless Chromium, against the real server on a
//! fresh SQLite file, with real receivers. Each test drives the page as a person would:
//! by the visible names of fields, buttons and links (the portal's automation contract),
//! and checks the outcome through the API or the receiver as well as on the page. Every
//! page visited leaves a screenshot in `target/portal-screenshots/` (README images).

use crate::support::TestApp;
use crate::support::browser::{Browser, programs};
use ehrs::config::Settings;
use std::future::Future;

pub const ADMIN: &str = "admin_user";
pub use crate::support::app::TEST_PASSWORD as PASSWORD;

/// Declares a browser test: a module `name` with one test, `sqlite` (the portal is the
/// same page on either database; the API it calls is tested on both elsewhere).
macro_rules! browser_test {
    ($(settings = $configure:expr,)? async fn $name:ident($app:ident, $browser:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($app: $crate::support::TestApp, $browser: $crate::support::browser::Browser) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                #[allow(unused_variables)]
                let configure = |_: &mut ehrs::config::Settings| {};
                $(let configure = $configure;)?
                $crate::portal::run_browser_test(configure, body).await;
            }
        }
    };
}
mod access;
mod deliveries;
mod inbound;
mod session;
mod subscriptions;

/// Runs `body` with a fresh app on SQLite and a fresh browser; stops both even when the
/// body panicked (then re-raises the panic).
pub async fn run_browser_test<F, Fut>(configure: impl FnOnce(&mut Settings), body: F)
where
    F: FnOnce(TestApp, Browser) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((chromium, chromedriver)) = programs() else {
        return;
    };
    let (app, cleanup) = TestApp::spawn_with(crate::support::Backend::Sqlite, configure).await;
    let (browser, process) = Browser::start(&app.base_url, &chromium, &chromedriver).await;
    let outcome = tokio::spawn(body(app, browser)).await;
    process.stop().await;
    cleanup.run().await;
    if let Err(err) = outcome
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
    }
}
