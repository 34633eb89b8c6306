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
