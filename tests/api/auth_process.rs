//! Authentication seen from outside the process: the real `ehrs` binary, its resident
//! memory under a login flood, its logs and metrics, the modes of its files, and the
//! `ehrs user` commands.

use crate::support::TestApp;
use crate::support::app::TEST_PASSWORD;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::process::{Child, Command};

const ADMIN_PASSWORD: &str = "flood-test-root-pw";

/// `ehrs serve` on a fresh SQLite data dir, with `env` on top of a quiet default; its
/// output (logs go to stdout, errors to stderr) goes to `<dir>/output.log`. `shell` wraps the start (e.g. `umask 000`).
pub(crate) async fn serve(
    dir: &Path,
    env: &[(&str, &str)],
    shell: Option<&str>,
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = env!("CARGO_BIN_EXE_ehrs");
    let mut command = match shell {
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix}; exec \"$0\" serve"))
                .arg(bin);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.arg("serve");
            c
        }
    };
    let log = std::fs::File::create(dir.join("output.log")).unwrap();
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", dir.join("data"))
        .env("EHRS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    let child = command.spawn().expect("the ehrs binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status() == 200
        {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "ehrs serve did not become healthy: {}",
        std::fs::read_to_string(dir.join("output.log")).unwrap_or_default()
    );
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// 256 simultaneous wrong-password logins (throttling off, so every one wants a hash)
/// must leave the server's peak resident memory within a fixed bound over its baseline:
/// two hashing workers of about 19 MiB each plus the connections. Before the bounded
/// pool each login held its own 19 MiB at once (gigabytes) and kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_stays_within_a_fixed_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = serve(
        dir.path(),
        &[
            ("EHRS_PASSWORD_HASH_WORKERS", "2"),
            ("EHRS_PASSWORD_HASH_QUEUE", "16"),
            ("EHRS_LOGIN_THROTTLE_AFTER", "1000000"),
            ("EHRS_LOGIN_THROTTLE_AFTER_ADDRESS", "1000000"),
            // All 256 come from 127.0.0.1: the flood is of logins, not of connections.
            ("EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "512"),
        ],
        None,
    )
    .await;
    let pid = child.id().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        login(&client, &base, "admin", ADMIN_PASSWORD)
            .await
            .status(),
        200
    );
    let baseline = status_kib(pid, "VmRSS");

    const FLOOD: usize = 256;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..2 {
        let answers = futures_util::future::join_all((0..FLOOD).map(|n| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let response = login(&client, &base, "admin", &format!("wrong-{n}")).await;
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body: serde_json::Value = response.json().await.unwrap();
                (status, retry_after, body)
            }
        }))
        .await;
        for (status, retry_after, body) in answers {
            *statuses.entry(status).or_default() += 1;
            if status == 503 {
                assert!(retry_after, "503 without Retry-After");
                assert_eq!(body["error"]["code"], "unavailable");
            }
        }
    }
    let peak = status_kib(pid, "VmHWM");
    let after = status_kib(pid, "VmRSS");
    eprintln!(
        "login flood 2x{FLOOD}: statuses {statuses:?}; VmRSS baseline {} MiB, after {} MiB, peak (VmHWM) {} MiB",
        baseline / 1024,
        after / 1024,
        peak / 1024
    );
    assert!(
        statuses.keys().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the queue bound was never reached: {statuses:?}"
    );
    const BOUND_KIB: u64 = 96 * 1024;
    assert!(
        peak.saturating_sub(baseline) < BOUND_KIB,
        "peak resident memory grew by {} MiB (bound {} MiB)",
        peak.saturating_sub(baseline) / 1024,
        BOUND_KIB / 1024
    );
    // And the server still works.
    assert_eq!(
        login(&client, &base, "admin", ADMIN_PASSWORD)
            .await
            .status(),
        200
    );
}

/// Failed and throttled logins are logged with the username and the client address and
/// never the password, and counted in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_throttled_logins_are_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path(), &[], None).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    const SECRET_GUESS: &str = "Guess-That-Must-Not-Be-Logged";
    for _ in 0..5 {
        assert_eq!(
            login(&client, &base, "admin", SECRET_GUESS).await.status(),
            401
        );
    }
    assert_eq!(
        login(&client, &base, "admin", SECRET_GUESS).await.status(),
        429
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ehrs_login_attempts_total{outcome=\"failure\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ehrs_login_attempts_total{outcome=\"throttled\"} 1"),
        "{metrics}"
    );
    child.kill().await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("output.log")).unwrap();
    let failed: Vec<_> = log.lines().filter(|l| l.contains("login failed")).collect();
    let throttled: Vec<_> = log
        .lines()
        .filter(|l| l.contains("login throttled"))
        .collect();
    assert_eq!((failed.len(), throttled.len()), (5, 1), "{log}");
    for line in failed.iter().chain(&throttled) {
        assert!(
            line.contains("\"admin\"") && line.contains("127.0.0.1"),
            "{line}"
        );
    }
    assert!(
        !log.contains(SECRET_GUESS),
        "a password reached the log: {log}"
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Under `umask 000` the data dir is 0700 and the database files 0600 (after a write, so
/// the WAL exists); an earlier install's world-readable dir and files are tightened.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = [
        "ehrs.db",
        "ehrs.db-wal",
        "ehrs.db-shm",
        "jwt_secret",
        "secret_key",
    ];
    for round in 0..2 {
        let (mut child, base) = serve(dir.path(), &[], Some("umask 000")).await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let token: serde_json::Value = login(&client, &base, "admin", ADMIN_PASSWORD)
            .await
            .json()
            .await
            .unwrap();
        let created = client
            .post(format!("{base}/api/v1/medical-camps"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .json(&crate::camps::camp_body())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        assert_eq!(mode(&data), 0o700, "round {round}: data dir");
        for file in files {
            assert_eq!(mode(&data.join(file)), 0o600, "round {round}: {file}");
        }
        child.kill().await.unwrap();
        let _ = child.wait().await;
        // As an older version left them: open to everyone. The next start tightens them.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        for file in ["ehrs.db", "ehrs.db-wal", "ehrs.db-shm"] {
            let path = data.join(file);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
        }
    }
}

/// A weak EHRS_ADMIN_PASSWORD stops the first start with a clear message.
#[tokio::test]
async fn a_weak_admin_password_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for weak in ["a", "password", "        ", "admin-admin"] {
        let output = Command::new(env!("CARGO_BIN_EXE_ehrs"))
            .arg("serve")
            .env("EHRS_BIND", "127.0.0.1:0")
            .env("EHRS_DATA_DIR", dir.path())
            .env_remove("DATABASE_URL")
            .env("EHRS_ADMIN_PASSWORD", weak)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{weak:?} was accepted");
        assert!(
            stderr.contains("EHRS_ADMIN_PASSWORD is refused by the password policy"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("admin-admin"),
            "the password was echoed: {stderr}"
        );
    }
}

/// `ehrs user <args>` against the test app's database, with a password in the environment.
async fn ehrs_user(app: &TestApp, args: &[&str], password: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ehrs"))
        .arg("user")
        .args(args)
        .env("DATABASE_URL", app.state.settings.database_url())
        .env("EHRS_NEW_USER_PASSWORD", password)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

db_test!(async fn ehrs_user_reset_password_sets_the_password_and_revokes_tokens(app) {
    let weak = ehrs_user(&app, &["reset-password", "nurse_user"], "nurse_user1").await;
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("must not contain the username"));
    assert_eq!(app.get(ehrs::auth::Role::Nurse, "/api/v1/auth/me").await.status, 200, "nothing changed");

    let reset = ehrs_user(&app, &["reset-password", "NURSE_USER"], "a-fresh-shell-secret").await;
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    assert_eq!(app.get(ehrs::auth::Role::Nurse, "/api/v1/auth/me").await.status, 401);
    for (password, status) in [(TEST_PASSWORD, 401), ("a-fresh-shell-secret", 200)] {
        let body = json!({"username": "nurse_user", "password": password});
        let response = app.request(reqwest::Method::POST, None, "/api/v1/auth/login", Some(&body)).await;
        assert_eq!(response.status, status, "{password}");
    }

    let unknown = ehrs_user(&app, &["reset-password", "nobody"], "a-fresh-shell-secret").await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user named 'nobody'"));
});

db_test!(async fn ehrs_user_create_applies_the_policy_and_case_insensitive_names(app) {
    let weak = ehrs_user(&app, &["create", "new.pharmacist", "--role", "pharmacist"], "12345678").await;
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("commonly used"), "{}", String::from_utf8_lossy(&weak.stderr));
    let taken = ehrs_user(&app, &["create", "Doctor_User", "--role", "doctor"], "another-long-secret").await;
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already taken"), "{}", String::from_utf8_lossy(&taken.stderr));
    assert_eq!(app.count_rows("users").await, 5);
    let made = ehrs_user(&app, &["create", "new.pharmacist", "--role", "pharmacist"], "another-long-secret").await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(app.count_rows("users").await, 6);
});
