//! `scripts/test`, the README's test command, run for real by bash from a copy of the
//! checkout's script, with a stand-in `cargo` (and `pg_isready`) first on `PATH` so the
//! suite is not run again: the log path must work with any `CARGO_TARGET_DIR`, including
//! one that does not exist yet, and the summary line must always be printed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch checkout holding `scripts/test`, and a directory of stand-in tools.
struct Scratch {
    _dir: tempfile::TempDir,
    checkout: PathBuf,
    tools: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(checkout.join("scripts")).unwrap();
    std::fs::create_dir_all(&tools).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test");
    std::fs::copy(script, checkout.join("scripts/test")).unwrap();
    // What `cargo test` prints, in the shape the summary counts; exits as told.
    write_tool(
        &tools,
        "cargo",
        "echo \"cargo $*\"\n\
         echo 'test camps::creates_a_camp::sqlite ... ok'\n\
         echo 'test camps::creates_a_camp::postgres ... ok'\n\
         echo 'test queue::moves::sqlite ... ok'\n\
         echo 'test queue::moves::postgres ... FAILED'\n\
         exit \"${FAKE_CARGO_STATUS:-0}\"\n",
    );
    write_tool(&tools, "pg_isready", "exit 0\n");
    Scratch {
        _dir: dir,
        checkout,
        tools,
    }
}

fn write_tool(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the script from a directory other than the checkout (it must `cd` itself).
fn run(scratch: &Scratch, target_dir: Option<&Path>, cargo_status: i32) -> (i32, String) {
    let mut command = Command::new("bash");
    command
        .arg(scratch.checkout.join("scripts/test"))
        .arg("--some-filter")
        .current_dir(scratch.tools.parent().unwrap())
        .env(
            "PATH",
            format!(
                "{}:{}",
                scratch.tools.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("FAKE_CARGO_STATUS", cargo_status.to_string());
    match target_dir {
        Some(dir) => command.env("CARGO_TARGET_DIR", dir),
        None => command.env_remove("CARGO_TARGET_DIR"),
    };
    let output = command.output().expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

const SUMMARY: &str = "integration tests passed on SQLite: 2, on PostgreSQL: 1";

#[test]
fn scripts_test_logs_into_a_cargo_target_dir_that_does_not_exist_yet() {
    let scratch = scratch();
    let target = scratch.tools.parent().unwrap().join("elsewhere/build");
    let (status, output) = run(&scratch, Some(&target), 0);
    assert_eq!(status, 0, "{output}");
    assert!(!output.contains("No such file"), "{output}");
    assert_eq!(output.lines().last(), Some(SUMMARY), "{output}");
    let log = std::fs::read_to_string(target.join("test-output.log")).unwrap();
    assert!(
        log.contains("cargo test --locked --all-targets --some-filter"),
        "{log}"
    );
    assert!(
        !scratch.checkout.join("target").exists(),
        "nothing is written to ./target"
    );
}

#[test]
fn scripts_test_logs_into_target_on_a_clean_checkout() {
    let scratch = scratch();
    let (status, output) = run(&scratch, None, 0);
    assert_eq!(status, 0, "{output}");
    assert_eq!(output.lines().last(), Some(SUMMARY), "{output}");
    assert!(scratch.checkout.join("target/test-output.log").is_file());
}

#[test]
fn scripts_test_prints_the_summary_and_fails_when_a_test_fails() {
    let scratch = scratch();
    let target = scratch.tools.parent().unwrap().join("t");
    let (status, output) = run(&scratch, Some(&target), 101);
    assert_eq!(status, 101, "cargo's status is the script's: {output}");
    assert!(output.contains(SUMMARY), "{output}");
    assert!(output.contains("some tests failed"), "{output}");
}

/// The README's tour (`scripts/tour`) and copy-paste receiver (`scripts/receiver.py`),
/// run for real by bash and python3 against a real server.
mod tour {
    use crate::support::{TestApp, free_port};
    use ehrs::auth::Role;
    use serde_json::json;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const ADMIN_PASSWORD: &str = "tour-lantern-river-42";

    fn script(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name)
    }

    /// Whether `check` (a shell command) succeeds; under CI a missing tool fails the test,
    /// elsewhere the test is skipped with the reason.
    fn have(what: &str, check: &str) -> bool {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(check)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} is missing (.ci/run installs it)"
            );
            eprintln!("skipped: {what} is missing");
        }
        ok
    }

    /// The `admin` the tour signs in as, with a known password.
    async fn admin(app: &TestApp) {
        let body = json!({"username": "admin", "password": ADMIN_PASSWORD, "role": "admin"});
        app.post(Role::Admin, "/api/v1/users", &body)
            .await
            .expect(201);
    }

    /// Runs the tour with `args`; (exit code, stdout, stderr). Blocking: call it on a
    /// blocking thread, the server runs on this test's runtime.
    async fn tour(app: &TestApp, password: &str, args: &[&str]) -> (i32, String, String) {
        let (base, password) = (app.base_url.clone(), password.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let output = Command::new("bash")
                .arg(script("tour"))
                .args(&args)
                .env("EHRS", base)
                .env("EHRS_ADMIN_PASSWORD", password)
                .stdin(Stdio::null())
                .output()
                .expect("bash runs");
            (
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    db_test!(async fn the_tour_runs_twice_against_one_server(app) {
        if !have("jq", "command -v jq") {
            return;
        }
        admin(&app).await;
        for run in 1..=2 {
            let (code, stdout, stderr) = tour(&app, ADMIN_PASSWORD, &[]).await;
            assert_eq!(code, 0, "run {run}:\n{stdout}\n{stderr}");
            assert!(stdout.trim_end().ends_with("tour complete"), "run {run}:\n{stdout}");
        }
        assert_eq!(app.count_rows("patients").await, 2, "each run registers its own patient");
        assert_eq!(app.count_rows("prescriptions").await, 2);
    });

    db_test!(async fn a_failed_step_stops_the_tour_with_the_server_s_message(app) {
        if !have("jq", "command -v jq") {
            return;
        }
        admin(&app).await;
        let (code, stdout, stderr) = tour(&app, "not-the-password-1", &[]).await;
        assert_ne!(code, 0, "{stdout}\n{stderr}");
        assert!(stderr.contains("invalid username or password"), "the server's message: {stderr}");
        assert!(stderr.contains("tour failed at step: Sign in as admin"), "{stderr}");
        assert!(!stdout.contains("tour complete"));
        assert_eq!(app.count_rows("medical_camps").await, 0, "nothing after the failed step ran");
    });

    /// The receiver on a free port, its output collected line by line.
    struct Receiver {
        child: std::process::Child,
        output: std::sync::Arc<std::sync::Mutex<String>>,
        url: String,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `scripts/receiver.py` on `port`, its output collected.
    fn start_receiver(secret: &str, port: u16) -> Receiver {
        use std::io::Read;
        let mut child = Command::new("python3")
            .arg(script("receiver.py"))
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for mut stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
        Receiver {
            child,
            output,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }

    impl Receiver {
        fn text(&self) -> String {
            self.output.lock().unwrap().clone()
        }

        async fn wait_for(&self, what: &str, count: usize) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = self.text();
                if text.matches(what).count() >= count {
                    return text;
                }
                assert!(
                    Instant::now() < deadline,
                    "waited for {count} × {what:?}:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    db_test!(async fn the_receiver_verifies_every_delivery_of_the_tour(app) {
        if !have("jq", "command -v jq")
            || !have("python3 with standardwebhooks", "python3 -c 'import standardwebhooks'")
        {
            return;
        }
        admin(&app).await;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/");
        // The subscription first (its secret is what the receiver verifies with), then the
        // receiver where it points, then the tour: the README's order.
        let (code, secret, stderr) = tour(&app, ADMIN_PASSWORD, &["subscribe", &url]).await;
        assert_eq!(code, 0, "{stderr}");
        let secret = secret.trim().to_string();
        assert!(secret.starts_with("whsec_"), "only the secret is printed: {secret}");
        let receiver = start_receiver(&secret, port);
        receiver.wait_for("receiving on", 1).await;
        let (code, stdout, stderr) = tour(&app, ADMIN_PASSWORD, &[]).await;
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        // Eleven events: camp, patient, registration, vitals, consultation opened, queue
        // call, diagnosis, prescription, dispensing, queue completion, consultation completed.
        let text = receiver.wait_for("verified ", 11).await;
        assert!(!text.contains("refused"), "{text}");
        // A delivery with a wrong signature is refused with 400.
        let forged = reqwest::Client::new()
            .post(&receiver.url)
            .header("webhook-id", "msg_forged")
            .header("webhook-timestamp", chrono::Utc::now().timestamp().to_string())
            .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
    });
}
