//! The `ehrs` command line: each subcommand's `--help` lists the options it reads, and
//! only those.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ehrs"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the ehrs binary runs");
    assert!(output.status.success(), "{args:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// Variables only `ehrs serve` reads.
const SERVE_ONLY: &[&str] = &[
    "EHRS_BIND",
    "EHRS_ADMIN_PASSWORD",
    "EHRS_JWT_SECRET",
    "EHRS_SECRET_KEY",
    "WEBHOOK_BACKEND",
    "SVIX_SERVER_URL",
    "EHRS_WEBHOOK_TIMEOUT",
    "EHRS_WEBHOOKS_ALLOW_INSECURE",
    "EHRS_INBOUND_TIMESTAMP_TOLERANCE",
];

#[test]
fn user_create_and_migrate_list_only_the_database_options() {
    for command in [&["user", "create"][..], &["migrate"]] {
        let text = help(command);
        for variable in ["DATABASE_URL", "EHRS_DATA_DIR", "EHRS_LOG_FORMAT"] {
            assert!(
                text.contains(variable),
                "{command:?} lists {variable}:\n{text}"
            );
        }
        for variable in SERVE_ONLY {
            assert!(
                !text.contains(variable),
                "{command:?} does not list {variable}:\n{text}"
            );
        }
    }
    assert!(help(&["user", "create"]).contains("--role"));
}

#[test]
fn serve_lists_every_server_option() {
    let text = help(&["serve"]);
    for variable in SERVE_ONLY.iter().chain(&["DATABASE_URL", "EHRS_DATA_DIR"]) {
        assert!(text.contains(variable), "serve lists {variable}:\n{text}");
    }
}

#[test]
fn openapi_and_demo_take_no_options() {
    for command in ["openapi", "demo"] {
        let text = help(&[command]);
        assert!(!text.contains("EHRS_"), "{command} --help:\n{text}");
        assert!(!text.contains("DATABASE_URL"), "{command} --help:\n{text}");
    }
}

/// Runs `ehrs` with only the given environment (and PATH), stdin closed, in a fresh
/// directory; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ehrs"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EHRS_DATA_DIR", dir.path().join("data"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the ehrs binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_port_in_use_names_the_address_and_ehrs_bind_and_exits_5() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = run(
        &["serve"],
        &[
            ("EHRS_BIND", &address),
            ("EHRS_ADMIN_PASSWORD", "Camp-Pass-Lantern-42"),
            ("RUST_BACKTRACE", "1"),
        ],
    );
    assert_eq!(code, 5, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot listen on {address}")),
        "{stderr}"
    );
    assert!(stderr.contains("EHRS_BIND="), "{stderr}");
    assert!(stderr.contains("because: "), "the cause is told: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("backtrace"),
        "no backtrace for an error: {stderr}"
    );
    // The admin made from EHRS_ADMIN_PASSWORD is confirmed (before the bind failed).
    assert!(
        stdout.contains("created the first admin user 'admin' with the password from the settings"),
        "{stdout}"
    );
    assert!(!stdout.contains("Camp-Pass-Lantern-42") && !stderr.contains("Camp-Pass-Lantern-42"));
}

#[test]
fn under_json_logs_every_line_is_json_even_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = run(
        &["serve"],
        &[("EHRS_BIND", &address), ("EHRS_LOG_FORMAT", "json")],
    );
    assert_eq!(code, 5, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    assert!(lines.len() >= 2, "{stdout}\n{stderr}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    let error: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(error["fields"]["exit_code"], 5);
    assert!(
        error["fields"]["hint"]
            .as_str()
            .unwrap()
            .contains("EHRS_BIND")
    );
    // The generated password is in the file, not in the stream; the stream says where.
    assert!(stdout.contains("initial-admin-password"), "{stdout}");
}

#[test]
fn user_create_without_a_terminal_names_ehrs_new_user_password_and_exits_2() {
    let (code, stdout, stderr) = run(&["user", "create", "dave", "--role", "doctor"], &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no terminal to ask for the password of 'dave'"),
        "{stderr}"
    );
    assert!(stderr.contains("EHRS_NEW_USER_PASSWORD"), "{stderr}");
    let (code, _, stderr) = run(&["user", "create", "dave", "--role", "surgeon"], &[]);
    assert_eq!(code, 2, "a usage error is clap's exit 2: {stderr}");
}

#[test]
fn a_missing_postgres_database_is_named_with_the_fix_and_exits_4() {
    let server = std::env::var("EHRS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path("/ehrs_no_such_database_4217");
    let _ = url.set_password(Some("hunter2-secret"));
    let (code, stdout, stderr) = run(&["migrate"], &[("DATABASE_URL", url.as_str())]);
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: cannot open the database postgres://"),
        "{stderr}"
    );
    assert!(stderr.contains("ehrs_no_such_database_4217"), "{stderr}");
    assert!(stderr.contains("createdb"), "{stderr}");
    assert!(
        !stderr.contains("hunter2-secret"),
        "the password is hidden: {stderr}"
    );
    assert!(!stderr.contains(" at line "), "{stderr}");
}

#[test]
fn a_bad_setting_exits_3_and_the_codes_are_in_the_help() {
    let (code, _, stderr) = run(
        &["serve"],
        &[
            ("WEBHOOK_BACKEND", "carrier-pigeon"),
            ("EHRS_BIND", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("WEBHOOK_BACKEND"), "{stderr}");
    let text = help(&[]);
    for line in [
        "2  usage",
        "3  configuration",
        "4  database",
        "5  cannot listen",
    ] {
        assert!(text.contains(line), "{text}");
    }
    let serve = help(&["serve"]);
    assert!(
        !serve.contains("--admin-password")
            && !serve.contains("--jwt-secret")
            && !serve.contains("--secret-key"),
        "{serve}"
    );
    assert!(serve.contains("EHRS_ADMIN_PASSWORD_FILE"), "{serve}");
}

#[test]
fn an_http_subnet_outside_the_allowed_ones_exits_3_naming_both_settings() {
    let (code, _, stderr) = run(
        &["serve"],
        &[
            ("EHRS_WEBHOOK_ALLOWED_SUBNETS", "192.168.1.0/24"),
            (
                "EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS",
                "192.168.1.0/28,10.0.0.0/8",
            ),
            ("EHRS_BIND", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS names 10.0.0.0/8"),
        "{stderr}"
    );
    assert!(stderr.contains("EHRS_WEBHOOK_ALLOWED_SUBNETS"), "{stderr}");
}
