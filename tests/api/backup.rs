//! `ehrs backup` and `ehrs restore`, run as the real binary on a real SQLite file: a
//! backup taken while a load generator writes holds every answered write and is
//! consistent; the restored server delivers what was still pending; a restore never
//! overwrites; on PostgreSQL `ehrs backup` says to use pg_dump.

use crate::support::{Backend, TestApp, TestReceiver, run_test};
use base64::Engine;
use ehrs::auth::Role;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;

pub(crate) fn ehrs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ehrs"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

pub(crate) async fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().await.expect("the ehrs binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every file of a directory with its bytes, to show a refused command changed nothing.
pub(crate) fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Starts `ehrs serve` on a data dir (restored, or new: then the first admin's password
/// is in its `initial-admin-password`), with the test keys.
pub(crate) async fn serve(data_dir: &Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let keys = crate::support::app::test_keys();
    let child = ehrs()
        .arg("serve")
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", data_dir)
        .env("EHRS_JWT_SECRET", String::from_utf8(keys.jwt).unwrap())
        .env(
            "EHRS_SECRET_KEY",
            base64::engine::general_purpose::STANDARD.encode(keys.data),
        )
        .env("EHRS_WEBHOOKS_ALLOW_INSECURE", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ehrs serve starts");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        crate::support::until_healthy(&base).await,
        "ehrs serve did not become healthy on the restored data dir"
    );
    (child, base)
}

/// Writes camps through the API until `stop`, recording each id once its 201 came back.
fn load(
    app: &TestApp,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let client = app.client.clone();
    let url = format!("{}/api/v1/medical-camps", app.base_url);
    let token = app.token(Role::Admin).to_string();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&crate::camps::camp_body())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let camp: serde_json::Value = response.json().await.unwrap();
            answered
                .lock()
                .unwrap()
                .push(camp["id"].as_str().unwrap().to_string());
        }
    })
}

#[tokio::test]
async fn a_backup_under_load_restores_whole_and_its_pending_events_are_delivered() {
    // No engine: every event stays pending in the outbox, as on a camp whose partners
    // were unreachable when the backup was taken.
    run_test(Backend::Sqlite, |s| s.webhook_workers = false, |app| async move {
        let receiver = TestReceiver::start().await;
        app.subscribe(&receiver.url, &["camp.created"], "full").await;
        let data_dir = app.state.settings.data_dir.clone();
        // The key files a camp server generates on first start (this test app takes its
        // keys from the environment): the backup must carry them.
        std::fs::write(data_dir.join("jwt_secret"), b"jwt-file-content").unwrap();
        std::fs::write(data_dir.join("secret_key"), [9u8; 32]).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let writer = load(&app, stop.clone(), answered.clone());
        crate::support::eventually("writes under way", || async { answered.lock().unwrap().len() >= 30 }).await;
        let before: BTreeSet<String> = answered.lock().unwrap().iter().cloned().collect();
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("camp.ehrs-backup");
        let (code, stdout, stderr) = run(ehrs().args(["backup", "--to"]).arg(&file).env("EHRS_DATA_DIR", &data_dir)).await;
        let during = answered.lock().unwrap().len();
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(during > before.len(), "the load went on while the backup ran");
        assert!(stdout.contains("medical_camps: ") && stdout.contains("last outbox message: msg_"), "{stdout}");
        assert!(stdout.contains("key files: jwt_secret, secret_key"), "{stdout}");
        assert!(!scratch.path().join(".camp.ehrs-backup.partial").exists());

        // Refusals change nothing.
        let (code, _, stderr) = run(ehrs().args(["backup", "--to"]).arg(&file).env("EHRS_DATA_DIR", &data_dir)).await;
        assert_eq!(code, 2, "a backup never replaces a file: {stderr}");
        let restored = scratch.path().join("restored");
        let (code, stdout, stderr) = run(ehrs().args(["restore", "--from"]).arg(&file).arg("--data-dir").arg(&restored)).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("integrity check: ok"), "{stdout}");
        let snapshot = contents(&restored);
        let (code, _, stderr) = run(ehrs().args(["restore", "--from"]).arg(&file).arg("--data-dir").arg(&restored)).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("not empty"), "{stderr}");
        assert_eq!(contents(&restored), snapshot, "the refused restore changed nothing");
        assert_eq!(std::fs::read(restored.join("secret_key")).unwrap(), [9u8; 32]);
        assert_eq!(std::fs::read(restored.join("jwt_secret")).unwrap(), b"jwt-file-content");

        // Whole and consistent: every write answered before the backup began is there, and
        // every outbox message has its clinical row (each camp write emits one event in
        // its own transaction, so the two counts agree).
        let (camps, messages) = {
            let db = rusqlite::Connection::open(restored.join("ehrs.db")).unwrap();
            let verdict: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(verdict, "ok");
            let ids = |sql: &str| -> BTreeSet<String> {
                let mut statement = db.prepare(sql).unwrap();
                statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
            };
            let camps = ids("SELECT id FROM medical_camps");
            let messages = ids("SELECT json_extract(payload, '$.data.id') FROM webhook_messages WHERE event_type = 'camp.created'");
            let tables = ids("SELECT name FROM sqlite_master WHERE type = 'table'");
            assert!(!tables.contains("ehrs_backup_files"), "the key files' table is not left in the database");
            (camps, messages)
        };
        assert!(before.is_subset(&camps), "{} answered writes missing", before.difference(&camps).count());
        assert_eq!(camps, messages, "every outbox message has its camp and every camp its message");

        // The restored server delivers every event that was pending at backup time.
        let (_server, _) = serve(&restored).await;
        let got = receiver.wait_for_distinct(messages.len(), Duration::from_secs(60)).await;
        let delivered: BTreeSet<String> = got.iter().map(|r| r.json["data"]["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(delivered, messages);
    })
    .await;
}

#[tokio::test]
async fn on_postgresql_backup_explains_pg_dump_and_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("x.ehrs-backup");
    let (code, _, stderr) = run(ehrs()
        .args(["backup", "--to"])
        .arg(&file)
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("pg_dump") && stderr.contains("pg_restore"),
        "{stderr}"
    );
    assert!(!file.exists());
}

#[tokio::test]
async fn a_file_that_is_not_a_backup_is_refused_and_leaves_no_data_dir() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("notes.txt");
    std::fs::write(&file, "not a database").unwrap();
    let target = scratch.path().join("new-data");
    let (code, _, stderr) = run(ehrs()
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&target))
    .await;
    assert_ne!(code, 0, "{stderr}");
    assert!(!target.exists(), "a failed restore leaves nothing behind");
}

/// `/metrics` as text (the test client is on loopback, which may read it).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

async fn health(app: &TestApp) -> serde_json::Value {
    app.client
        .get(format!("{}/health", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_server_takes_scheduled_backups_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let configured = backups.clone();
    run_test(
        Backend::Sqlite,
        move |s| {
            s.backup_dir = Some(configured);
            s.backup_interval = Duration::from_secs(1);
            s.backup_keep = 2;
        },
        |app| async move {
            crate::camps::create_camp(&app).await;
            crate::support::eventually("three scheduled backups", || async {
                metric(&app, "ehrs_backups_total{outcome=\"ok\"}").await >= 3.0
            })
            .await;
            let mut files: Vec<_> = std::fs::read_dir(&backups)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            // A fourth may be on its way (as a .partial); at most `keep` finished ones stay.
            let finished: Vec<_> = files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "ehrs-backup"))
                .collect();
            assert_eq!(finished.len(), 2, "{files:?}");
            let restored = dir.path().join("restored");
            let summary = ehrs::backup::restore(finished[1], &restored, || {
                unreachable!("a plain backup asks for no passphrase")
            })
            .unwrap();
            assert_eq!(summary.rows("medical_camps"), 1);
            let health = health(&app).await;
            assert_eq!(health["backups"]["state"], "ok", "{health}");
            assert!(health["backups"]["last_success"].is_string());
            assert_eq!(health["status"], "ok");
        },
    )
    .await;
}

#[tokio::test]
async fn a_failing_scheduled_backup_is_counted_and_degrades_health() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let configured = not_a_dir.join("backups");
    run_test(
        Backend::Sqlite,
        move |s| {
            s.backup_dir = Some(configured);
            s.backup_interval = Duration::from_secs(1);
        },
        |app| async move {
            crate::support::eventually("a failed backup", || async {
                metric(&app, "ehrs_backups_total{outcome=\"failed\"}").await >= 1.0
            })
            .await;
            let health = health(&app).await;
            assert_eq!(health["status"], "degraded", "{health}");
            assert_eq!(health["backups"]["state"], "failing");
            assert!(
                health["backups"]["last_error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty())
            );
            assert_eq!(health["database"], "ok", "the API keeps working");
        },
    )
    .await;
}

#[tokio::test]
async fn scheduled_backups_are_refused_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::support::app::test_settings(dir.path());
    settings.database_url = Some("postgres://postgres@127.0.0.1:5432/test".into());
    settings.backup_dir = Some(dir.path().join("backups"));
    let Err(err) = ehrs::application::Application::build(settings).await else {
        panic!("EHRS_BACKUP_DIR on PostgreSQL must stop the start");
    };
    let text = format!("{err:#}");
    assert!(text.contains("EHRS_BACKUP_DIR"), "{text}");
}
