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
