//! `Browser`: real headless Chromium driven over WebDriver (thirtyfour → chromedriver,
//! which each test starts on a free port), for the admin portal's tests.
//!
//! Every session runs with all non-loopback traffic cut off: host names resolve to nothing
//! but 127.0.0.1, and anything that still tries goes to a proxy on a closed loopback port
//! (loopback itself never uses the proxy). So the page must work with no uplink, and the
//! browser's own background services (updates, sync, safe browsing) reach no one.
//!
//! Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). When they are missing the test fails; a developer without them
//! may set `EHRS_SKIP_BROWSER_TESTS=1`, which is ignored when `CI=true`.

use super::free_port;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;
use thirtyfour::{ChromeCapabilities, ChromiumLikeCapabilities};

/// How long a page gets to show what a test waits for (a failure detector, not a speed limit).
const PATIENCE: Duration = Duration::from_secs(20);

/// The arguments that cut Chromium off from everything but 127.0.0.1.
/// (Chromium never sends loopback requests through a proxy.)
pub const OFFLINE_ARGS: [&str; 2] = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
];

pub struct Browser {
    pub driver: WebDriver,
    pub base_url: String,
}

/// The chromedriver process and the browser profile, undone after the test.
pub struct BrowserProcess {
    driver: WebDriver,
    chromedriver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl BrowserProcess {
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.driver.quit()).await;
        let _ = self.chromedriver.kill().await;
    }
}

fn installed(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Chromium and chromedriver, or `None` when the tests may be skipped without them.
pub fn programs() -> Option<(PathBuf, PathBuf)> {
    let found = installed("chromium")
        .or_else(|| installed("chromium-browser"))
        .zip(installed("chromedriver"));
    if found.is_some() {
        return found;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = std::env::var("EHRS_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1");
    assert!(
        skip && !ci,
        "the portal's browser tests need Chromium and chromedriver: \
         apt-get install -y chromium chromium-driver (or EHRS_SKIP_BROWSER_TESTS=1 outside CI)"
    );
    eprintln!("skipped: no chromium/chromedriver and EHRS_SKIP_BROWSER_TESTS=1");
    None
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1280×900 window.
    pub async fn start(
        base_url: &str,
        chromium: &Path,
        chromedriver: &Path,
    ) -> (Browser, BrowserProcess) {
        let port = free_port();
        let child = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let server = format!("http://127.0.0.1:{port}");
        wait_until_ready(&server).await;

        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = ChromeCapabilities::new();
        caps.set_binary(chromium.to_str().unwrap()).unwrap();
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        for arg in [
            "--headless=new",
            "--no-sandbox", // the tests run as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--lang=en-GB",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--metrics-recording-only",
            &profile_arg,
        ]
        .into_iter()
        .chain(OFFLINE_ARGS)
        {
            caps.add_arg(arg).unwrap();
        }
        let driver = WebDriver::new(&server, caps)
            .await
            .expect("start a Chromium session");
        let process = BrowserProcess {
            driver: driver.clone(),
            chromedriver: child,
            _profile: profile,
        };
        let browser = Browser {
            driver,
            base_url: base_url.to_string(),
        };
        (browser, process)
    }

    pub async fn goto(&self, path: &str) {
        self.driver
            .goto(format!("{}{path}", self.base_url))
            .await
            .expect("navigate");
    }

    /// Navigates anywhere; a page that fails to load is not an error here (the browser
    /// shows its error page).
    pub async fn goto_absolute(&self, url: &str) {
        let _ = self.driver.goto(url).await;
    }

    /// Runs `script` (a function body; arguments in `arguments`) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.driver
            .execute(script, Vec::<Value>::new())
            .await
            .expect("execute script")
            .json()
            .clone()
    }

    /// The page as a person reads it.
    pub async fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the page shows `text`.
    pub async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let page = self.text().await;
            if page.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}; it shows:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `xpath` matches a displayed element, and returns the first such.
    pub async fn wait_for(&self, xpath: &str) -> WebElement {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(found) = self.driver.find_all(By::XPath(xpath)).await {
                for element in found {
                    if element.is_displayed().await.unwrap_or(false) {
                        return element;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing displayed matches {xpath}; the page shows:\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The form control labelled `label` (found through the label's `for`, which is what
    /// makes the label its accessible name).
    pub async fn field(&self, label: &str) -> WebElement {
        let label = self
            .wait_for(&format!("//label[normalize-space(.)={}]", literal(label)))
            .await;
        let id = label
            .attr("for")
            .await
            .unwrap()
            .expect("the label names its control");
        self.driver
            .find(By::Id(id))
            .await
            .expect("the labelled control exists")
    }

    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.field(label).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Picks the option whose value is `value` in the select labelled `label`.
    pub async fn choose(&self, label: &str, value: &str) {
        let select = self.field(label).await;
        select
            .find(By::XPath(format!(".//option[@value={}]", literal(value))))
            .await
            .expect("the option exists")
            .click()
            .await
            .unwrap();
    }

    /// The displayed button with exactly this text; one in an open dialog comes first.
    pub async fn button(&self, name: &str) -> WebElement {
        let name = literal(name);
        self.wait_for(&format!(
            "//dialog[@open]//button[normalize-space(.)={name}] | //body[not(.//dialog[@open])]//button[normalize-space(.)={name}]"
        ))
        .await
    }

    /// Clicks the button named `name`; a view that re-rendered between finding and
    /// clicking (a stale element) is searched again.
    pub async fn click(&self, name: &str) {
        for _ in 0..20 {
            match self.button(name).await.click().await {
                Err(error) if matches!(&*error, WebDriverErrorInner::StaleElementReference(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                outcome => return outcome.expect("click"),
            }
        }
        panic!("the button {name:?} kept being replaced");
    }

    /// The text of the page's tables only (select options and forms left out).
    pub async fn tables(&self) -> String {
        self.js("return [...document.querySelectorAll('table')].map(t => t.innerText).join('\\n');")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Follows the navigation link with this text.
    pub async fn nav(&self, name: &str) {
        self.wait_for(&format!("//nav//a[normalize-space(.)={}]", literal(name)))
            .await
            .click()
            .await
            .unwrap();
    }

    /// Signs in through the form and waits for the portal's navigation.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.goto("/portal").await;
        self.fill("Username", username).await;
        self.fill("Password", password).await;
        self.click("Sign in").await;
    }

    /// Saves a PNG of the window as `target/portal-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        // Let the last render and any focus ring settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = dir.join(format!("{name}.png"));
        self.driver.screenshot(&path).await.expect("screenshot");
        path
    }

    /// Resizes the window (the viewport follows in headless mode).
    pub async fn resize(&self, width: u32, height: u32) {
        self.driver
            .set_window_rect(0, 0, width, height)
            .await
            .expect("resize");
    }
}

/// Where screenshots go: `target/portal-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("portal-screenshots")
}

/// An XPath string literal for text without both quote kinds.
fn literal(text: &str) -> String {
    if text.contains('\'') {
        format!("\"{text}\"")
    } else {
        format!("'{text}'")
    }
}

async fn wait_until_ready(server: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(format!("{server}/status"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if let Some(response) = ready
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
