//! The OpenAPI document as a contract: schemathesis, a property-based conformance fuzzer,
//! runs every check over every operation against a real `ehrs serve` (the binary, on a
//! fresh database, as admin), on SQLite and on PostgreSQL. Any mismatch fails the test:
//! an undocumented status code, a response that breaks its schema, a schema-valid request
//! refused, a schema-invalid one accepted, a 5xx.
//!
//! schemathesis comes from PyPI (`.ci/run` installs the pinned version when missing).
//! Outside CI a machine without it skips this test with a notice; under `CI=true` a
//! missing schemathesis fails it, so CI cannot skip the check silently.
//!
//! Bounded: 5 examples per operation and phase, one worker, a fixed seed (a failure
//! reproduces), at most 10 minutes. `POST /auth/logout` revokes the token the run uses, so
//! it runs last, on its own.

use crate::support::app::{create_postgres_database, drop_postgres_database};
use std::process::Stdio;
use std::time::Duration;

const ADMIN_PASSWORD: &str = "Conformance-Pass-2026-xq7";

/// Operations where a schema-valid request may still be refused, for a reason a schema
/// cannot state: the `positive_data_acceptance` check is off for these operations only
/// (every other check runs on them, and every check runs on every other operation).
const KNOWN_GAPS: &[(&str, &str)] = &[
    // An id of the right form that names nothing is 422 `invalid_reference`.
    ("create_doctor", "user_id must name an existing user"),
    ("update_doctor", "user_id must name an existing user"),
    (
        "assign_doctor",
        "book_no, doctor_id and camp_id must name existing records",
    ),
    ("register", "camp_id must name an existing camp"),
    (
        "record_vitals",
        "camp_id must name an existing camp; bp's systolic above its diastolic",
    ),
    (
        "add_prescription",
        "medicine_id must name an existing medicine",
    ),
    (
        "update_prescription",
        "replaced_by_medicine_id must name an existing medicine",
    ),
    // Rules across fields, against the clock, or against stored state.
    ("create_camp", "end_date must not be before start_date"),
    ("update_camp", "end_date must not be before start_date"),
    ("create_patient", "birth_date must not be in the future"),
    (
        "update_patient",
        "birth_date not in the future; the patient keeps an age or a birth date",
    ),
    (
        "update_attendance",
        "delta must not take the count below zero",
    ),
    // The password policy: no single repeated character, not the username, not a common
    // password (a JSON-schema pattern has no look-ahead or back-reference to say it).
    ("create_user", "the password policy"),
    ("update_user", "the password policy"),
    // A source's action_mapping keys must be listed in its allowed_event_types: a rule
    // between two fields' values, which JSON Schema cannot state. (Each event name's
    // characters and length, and no name twice, are in the schema.)
    (
        "create_source",
        "action_mapping keys among allowed_event_types",
    ),
    (
        "update_source",
        "action_mapping keys among allowed_event_types",
    ),
    // An empty url is refused by the schema (minLength); that it be https and resolve to
    // a public address takes DNS, not a schema.
    // The URL must be https and resolve to a public address (DNS, not a schema).
    (
        "create_subscription",
        "the url must be https and resolve to a public address",
    ),
    (
        "update_subscription",
        "the url must be https and resolve to a public address",
    ),
];

/// schemathesis' configuration: every check, and a failure when an operation answers
/// only 401/403 (the token would have died mid-run and the run would test nothing).
const CONFIG: &str = "[checks]\nenabled = true\n\n[warnings]\nfail-on = [\"missing_auth\"]\n";

/// A schemathesis hook: each generated request gets an `Idempotency-Key` of its own. The
/// fuzzer draws the same small keys ("0", …) for many different requests, and a key sent
/// again with another request is refused by contract (422 `idempotency_key_reused`), which
/// the positive-data check would count as a schema-valid request refused. A valid key
/// stays valid (a unique suffix within 255 visible ASCII characters); negative cases are
/// sent as drawn, so the negative checks still see them refused.
const HOOKS: &str = r#"
import uuid
import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # A negative case (a header left out, a value out of its schema) is sent as drawn.
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode.is_negative:
        return
    headers = case.headers or {}
    for name in list(headers):
        key = headers[name]
        valid = isinstance(key, str) and 1 <= len(key) <= 255 and all(33 <= ord(c) <= 126 for c in key)
        if name.lower() == "idempotency-key" and valid:
            headers[name] = key[:222] + "-" + uuid.uuid4().hex
"#;

fn schemathesis_available() -> bool {
    std::process::Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `ehrs serve` on `database_url`, runs schemathesis against it, stops it.
async fn conform(database_url: Option<String>) {
    if !schemathesis_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is required in CI (.ci/run installs it): the conformance check may not be skipped"
        );
        eprintln!(
            "SKIPPED: schemathesis is not installed (pip install schemathesis); the conformance check did not run"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_ehrs"));
    server
        .arg("serve")
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", dir.path())
        .env("EHRS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EHRS_JWT_SECRET", "conformance-jwt-secret-0123456789abcdef")
        .env(
            "EHRS_SECRET_KEY",
            "Y29uZm9ybWFuY2Utc2VjcmV0LWtleS0wMTIzNDU2Nzg=",
        )
        .env("EHRS_WEBHOOK_WORKERS", "false")
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
        .kill_on_drop(true);
    if let Some(url) = &database_url {
        server.env("DATABASE_URL", url);
    }
    let mut server = server.spawn().expect("ehrs serve starts");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        crate::support::until_healthy(&base).await,
        "ehrs serve did not come up"
    );
    let token = crate::support::admin_token(&client, &base, ADMIN_PASSWORD).await;

    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("conformance_hooks.py"), HOOKS).unwrap();
    let gaps: Vec<&str> = KNOWN_GAPS
        .iter()
        .map(|(operation, _why)| *operation)
        .collect();
    let with = |flag: &str, operations: &[&str]| -> Vec<String> {
        operations
            .iter()
            .flat_map(|o| [flag.to_string(), o.to_string()])
            .collect()
    };
    // Three runs, in this order: every check over every operation but the gaps and logout;
    // the gaps with every check but positive_data_acceptance; logout (it revokes the token).
    let mut first = with("--exclude-operation-id", &gaps);
    first.extend(with("--exclude-operation-id", &["logout"]));
    let mut second = with("--include-operation-id", &gaps);
    second.extend([
        "--exclude-checks".to_string(),
        "positive_data_acceptance".to_string(),
    ]);
    let third = with("--include-operation-id", &["logout"]);
    let mut runs = Vec::new();
    for filter in [&first, &second, &third] {
        runs.push(schemathesis(&base, &token, dir.path(), filter).await);
    }
    let _ = server.kill().await;
    let server_log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let mut tested = 0;
    let mut total = 0;
    for output in runs {
        let report = String::from_utf8_lossy(&output.stdout);
        // "Selected: 55/74" then "Tested: 55": every selected operation was tested.
        let selected = number_after(&report, "Selected: ").unwrap_or(0);
        total = number_after(&report, &format!("Selected: {selected}/")).unwrap_or(0);
        assert!(
            selected > 0 && number_after(&report, "Tested: ") == Some(selected),
            "schemathesis did not test every selected operation:\n{report}"
        );
        tested += selected;
        assert!(
            output.status.success(),
            "the server does not conform to its OpenAPI document:\n{report}\n{}\nserver log (end):\n{}",
            String::from_utf8_lossy(&output.stderr),
            &server_log[server_log.len().saturating_sub(4000)..]
        );
        let summary = report.lines().skip_while(|l| !l.contains("SUMMARY"));
        eprintln!("{}", summary.collect::<Vec<_>>().join("\n"));
    }
    assert_eq!(tested, total, "the three runs cover every operation once");
}

/// The number written right after the first `label` in `report`.
fn number_after(report: &str, label: &str) -> Option<usize> {
    let rest = &report[report.find(label)? + label.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One schemathesis run, every check, over the operations `filter` selects.
async fn schemathesis(
    base: &str,
    token: &str,
    dir: &std::path::Path,
    filter: &[String],
) -> std::process::Output {
    let run = tokio::process::Command::new("schemathesis")
        .args(["--config-file", "schemathesis.toml"])
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "5",
            "--workers",
            "1",
            "--seed",
            "1",
        ])
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
            "--request-timeout",
            "10",
        ])
        .args(["--max-failures", "1000", "--generation-database", "none"])
        .args(filter)
        .env("SCHEMATHESIS_HOOKS", "conformance_hooks")
        .env("PYTHONPATH", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_conforms_to_its_openapi_document_on_sqlite() {
    conform(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_conforms_to_its_openapi_document_on_postgres() {
    let (url, name) = create_postgres_database().await;
    let result = tokio::spawn(conform(Some(url))).await;
    drop_postgres_database(&name).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
