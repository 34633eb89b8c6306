//! Encryption at rest of the embedded database (issue 26, part 1), on real files with the
//! real binary: the SQLite linked is SQLCipher's, one library for every connection; after
//! a camp day no file of an encrypted data dir (database, WAL, shared memory, key record,
//! backups) holds a patient in plain form; a wrong or missing passphrase stops start-up
//! and changes no file; `ehrs db encrypt` keeps every record and pending delivery, and
//! killed midway leaves the plain database working; `ehrs db rekey` changes the passphrase.

use crate::backup::{contents, ehrs, run};
use crate::camps::create_camp;
use crate::support::people::{book_path, record_vitals, register_patient, vitals_body};
use crate::support::{Backend, TestReceiver, run_test};
use ehrs::auth::Role;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// sqlx's pool (reads, migrations) and the writer's rusqlite connection must link the one
/// SQLCipher library: two SQLite copies in one process would each think they own the file
/// locks, and only a cipher both share can read what the other wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_and_the_writer_share_one_sqlcipher_library() {
    run_test(
        Backend::Sqlite,
        |_| {},
        |app| async move {
            let read: String = sqlx::query_scalar("PRAGMA cipher_version")
                .fetch_one(app.state.db.pool())
                .await
                .expect("the pool's SQLite is SQLCipher (it knows PRAGMA cipher_version)");
            let mut tx = app.state.db.begin().await.unwrap();
            let written: String = sqlx::query_scalar("PRAGMA cipher_version")
                .fetch_one(tx.conn())
                .await
                .expect("the writer's SQLite is SQLCipher");
            tx.rollback().await.unwrap();
            assert!(read.starts_with('4'), "SQLCipher 4.x: {read}");
            assert_eq!(read, written, "one library serves both connections");
            let version = |conn: &rusqlite::Connection| -> String {
                conn.query_row("SELECT sqlite_version()", [], |row| row.get(0))
                    .unwrap()
            };
            let linked = version(&rusqlite::Connection::open_in_memory().unwrap());
            let pooled: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
            assert_eq!(
                linked, pooled,
                "rusqlite and sqlx-sqlite link the same SQLite"
            );
        },
    )
    .await;
}

/// The passphrase of the camps in these tests.
const PASSPHRASE: &str = "monsoon clinic lantern";
/// What must never be found in plain form on disk: a patient's name and book number.
const NAME: &str = "Zainab Quraishi";
const BOOK_NO: &str = "KTH-2026-7741";
const ADMIN_PASSWORD: &str = "Camp-Kitchen-42-long";

/// Every file under `dir`, at any depth (none when it does not exist).
fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    // A directory not made yet holds nothing; a backup's temporary file may vanish.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(every_file(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The files under `dir` whose bytes hold the patient's name or book number.
fn files_with_the_patient(dir: &Path) -> Vec<PathBuf> {
    let holds =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    every_file(dir)
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            holds(&bytes, NAME) || holds(&bytes, BOOK_NO)
        })
        .collect()
}

fn patient() -> Value {
    json!({"book_no": BOOK_NO, "name": NAME, "sex": "female", "age": 34,
           "phone": "+91 98220-55555", "address": "Kothrud, Pune"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_camp_day_no_file_of_an_encrypted_data_dir_holds_a_patient_in_plain_form() {
    run_test(
        Backend::Sqlite,
        |s| {
            s.db_passphrase.value = Some(PASSPHRASE.into());
            // The keys are the server's own, generated: they must end up inside the
            // encrypted database, not in key files beside it.
            s.jwt_secret = None;
            s.secret_key = None;
            // The server's own backups too, into the data dir.
            s.backup_dir = Some(s.data_dir.join("scheduled"));
            s.backup_interval = Duration::from_secs(1);
        },
        |app| async move {
            let dir = app.state.settings.data_dir.clone();
            assert!(
                app.state.db.sqlite_key().is_some(),
                "a new data dir with a passphrase is encrypted"
            );
            let receiver = TestReceiver::start().await;
            app.subscribe(
                &receiver.url,
                &["patient.registered", "vitals.recorded"],
                "full",
            )
            .await;
            let camp = create_camp(&app).await;
            app.post(Role::Admin, "/api/v1/patients", &patient())
                .await
                .expect(201);
            register_patient(&app, BOOK_NO, camp["id"].as_str().unwrap()).await;
            record_vitals(&app, BOOK_NO, &vitals_body()).await;
            receiver.wait_for_distinct(2, Duration::from_secs(30)).await;
            let read = app
                .get(
                    Role::Nurse,
                    &format!("/api/v1/patients/{}", book_path(BOOK_NO)),
                )
                .await
                .expect(200);
            assert_eq!(read["name"], NAME);

            // A scheduled backup taken after the camp day: encrypted with the same key.
            let scheduled = || -> Vec<PathBuf> {
                every_file(&dir.join("scheduled"))
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "ehrs-backup"))
                    .collect()
            };
            // The second one to finish from now surely began after the writes.
            let taken = scheduled().len();
            crate::support::eventually("a scheduled backup after the writes", || async {
                scheduled().len() > taken + 1
            })
            .await;
            let newest = scheduled().pop().unwrap();
            let summary = ehrs::backup::restore(
                &newest,
                &tempfile::tempdir().unwrap().path().join("r"),
                || Ok(ehrs::db::cipher::Passphrase::new(PASSPHRASE.into())),
            )
            .unwrap();
            assert!(
                summary.encrypted && summary.rows("patients") == 1,
                "{summary}"
            );

            // A backup taken by the binary while the server runs, kept in the data dir.
            std::fs::create_dir(dir.join("backups")).unwrap();
            let backup = dir.join("backups").join("day.ehrs-backup");
            let (code, stdout, stderr) = run(ehrs()
                .args(["backup", "--to"])
                .arg(&backup)
                .env("EHRS_DATA_DIR", &dir)
                .env("EHRS_DB_PASSPHRASE", PASSPHRASE))
            .await;
            assert_eq!(code, 0, "{stderr}");
            assert!(
                stdout.contains("patients: 1") && stdout.contains("encrypted: yes"),
                "{stdout}"
            );

            let names: Vec<String> = every_file(&dir)
                .iter()
                .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
                .collect();
            for expected in [
                "ehrs.db",
                "ehrs.db-wal",
                "ehrs.db-shm",
                "db-key.json",
                "backups/day.ehrs-backup",
            ] {
                assert!(
                    names.iter().any(|n| n == expected),
                    "{expected} is among {names:?}"
                );
            }
            for key_file in ["jwt_secret", "secret_key"] {
                assert!(
                    !dir.join(key_file).exists(),
                    "{key_file} is kept inside the database"
                );
            }
            assert_eq!(app.count_rows("server_keys").await, 2);
            assert_eq!(
                files_with_the_patient(&dir),
                Vec::<PathBuf>::new(),
                "files holding the patient in plain form"
            );

            // The backup opens with the passphrase, and only with it.
            let scratch = tempfile::tempdir().unwrap();
            let restored = scratch.path().join("restored");
            let (code, _, stderr) = run(ehrs()
                .args(["restore", "--from"])
                .arg(&backup)
                .arg("--data-dir")
                .arg(&restored)
                .env("EHRS_DB_PASSPHRASE", "not the passphrase"))
            .await;
            assert_eq!(code, 3, "{stderr}");
            assert!(
                stderr.contains("the passphrase does not open the backup"),
                "{stderr}"
            );
            assert!(!restored.exists(), "a refused restore creates nothing");
            let (code, stdout, stderr) = run(ehrs()
                .args(["restore", "--from"])
                .arg(&backup)
                .arg("--data-dir")
                .arg(&restored)
                .env("EHRS_DB_PASSPHRASE", PASSPHRASE))
            .await;
            assert_eq!(code, 0, "{stderr}");
            assert!(
                stdout.contains("integrity check: ok") && stdout.contains("patients: 1"),
                "{stdout}"
            );
            assert_eq!(files_with_the_patient(&restored), Vec::<PathBuf>::new());
            let salt = match ehrs::db::cipher::FileState::of(&restored.join("ehrs.db")).unwrap() {
                ehrs::db::cipher::FileState::Encrypted(salt) => salt,
                other => panic!("the restored database is encrypted, not {other:?}"),
            };
            let key = ehrs::db::cipher::DbKey::derive(
                &ehrs::db::cipher::Passphrase::new(PASSPHRASE.into()),
                salt,
            )
            .unwrap();
            let db = rusqlite::Connection::open(restored.join("ehrs.db")).unwrap();
            db.execute_batch(&key.pragma()).unwrap();
            let name: String = db
                .query_row(
                    "SELECT name FROM patients WHERE book_no = ?1",
                    [BOOK_NO],
                    |r| r.get(0),
                )
                .unwrap();
            let read = json!({"name": name});
            assert_eq!(
                read["name"], NAME,
                "the restored database holds the patient: {read}"
            );
        },
    )
    .await;
}

/// Starts `ehrs serve` on `dir` with `passphrase` (none: plain), its own keys (generated)
/// and the admin password [`ADMIN_PASSWORD`], and waits until it is healthy.
async fn start(
    dir: &Path,
    passphrase: Option<&str>,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = crate::support::free_port();
    let mut command = ehrs();
    command
        .arg("serve")
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", dir)
        .env("EHRS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EHRS_WEBHOOKS_ALLOW_INSECURE", "1")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(passphrase) = passphrase {
        command.env("EHRS_DB_PASSPHRASE", passphrase);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("ehrs serve starts");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        crate::support::until_healthy(&base).await,
        "ehrs serve did not become healthy"
    );
    (child, base)
}

/// `ehrs serve` on `dir` with `passphrase`, expected to refuse to start.
async fn refused_start(dir: &Path, passphrase: Option<&str>) -> (i32, String) {
    let mut command = ehrs();
    command
        .arg("serve")
        .env("EHRS_BIND", "127.0.0.1:0")
        .env("EHRS_DATA_DIR", dir)
        .env("EHRS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null());
    if let Some(passphrase) = passphrase {
        command.env("EHRS_DB_PASSPHRASE", passphrase);
    }
    let (code, _, stderr) = run(&mut command).await;
    (code, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_passphrase_stops_start_up_with_a_clear_message_and_changes_no_file() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("camp");
    let (server, _) = start(&dir, Some(PASSPHRASE), &[]).await;
    crate::support::stop_gracefully(server).await;
    let before = contents(&dir);
    assert!(before.iter().any(|(name, _)| name == "db-key.json"));

    let (code, stderr) = refused_start(&dir, Some("monsoon clinic lanterns")).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("the passphrase does not open the database"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("monsoon"),
        "the message never shows a passphrase: {stderr}"
    );
    assert_eq!(contents(&dir), before, "a wrong passphrase changes no file");

    let (code, stderr) = refused_start(&dir, None).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("is encrypted and no passphrase was given")
            && stderr.contains("EHRS_DB_PASSPHRASE_FILE"),
        "{stderr}"
    );
    assert_eq!(
        contents(&dir),
        before,
        "a missing passphrase changes no file"
    );

    // The other commands that open the database refuse the same way.
    let (code, _, stderr) = run(ehrs()
        .arg("migrate")
        .env("EHRS_DATA_DIR", &dir)
        .env("EHRS_DB_PASSPHRASE", "wrong wrong wrong"))
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(contents(&dir), before);

    // The passphrase from a file (its line break dropped) opens it.
    let file = scratch.path().join("passphrase");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    let (server, _) = start(
        &dir,
        None,
        &[("EHRS_DB_PASSPHRASE_FILE", file.to_str().unwrap())],
    )
    .await;
    crate::support::stop_gracefully(server).await;

    // A plain database with a passphrase set is refused, not silently left plain.
    let plain = scratch.path().join("plain");
    let (server, _) = start(&plain, None, &[]).await;
    crate::support::stop_gracefully(server).await;
    let (code, stderr) = refused_start(&plain, Some(PASSPHRASE)).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("is not encrypted") && stderr.contains("ehrs db encrypt"),
        "{stderr}"
    );
}

/// A plain database's rows per table, after its integrity check.
fn rows_per_table(database: &Path) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(database).unwrap();
    let verdict: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
    let names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let rows = db
                .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                    r.get(0)
                })
                .unwrap();
            (name, rows)
        })
        .collect()
}

/// `ehrs db encrypt` on `dir` with `passphrase`: its exit code, stdout and stderr.
async fn encrypt(dir: &Path, passphrase: &str) -> (i32, String, String) {
    run(ehrs()
        .args(["db", "encrypt"])
        .env("EHRS_DATA_DIR", dir)
        .env("EHRS_DB_PASSPHRASE", passphrase))
    .await
}

/// `GET /patients/{BOOK_NO}` on a server these tests started: the status and the body.
async fn read_patient(client: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let answer = client
        .get(format!("{base}/api/v1/patients/{}", book_path(BOOK_NO)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

/// Signs in as the admin of a server these tests started.
async fn admin(base: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::new();
    let token = crate::support::admin_token(&client, base, ADMIN_PASSWORD).await;
    (client, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_encrypt_keeps_every_record_and_pending_delivery_and_rekey_changes_the_passphrase() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("camp");
    let receiver = TestReceiver::start().await;

    // A plain camp whose partners were unreachable: the events wait in the outbox.
    let (server, base) = start(&dir, None, &[("EHRS_WEBHOOK_WORKERS", "false")]).await;
    let (client, token) = admin(&base).await;
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let answer = post("/api/v1/webhooks/subscriptions", json!({"url": receiver.url, "event_types": ["patient.registered", "camp.created"], "payload": "full"})).await.unwrap();
    assert_eq!(answer.status(), 201);
    assert_eq!(
        post("/api/v1/patients", patient()).await.unwrap().status(),
        201
    );
    assert_eq!(
        post("/api/v1/medical-camps", crate::camps::camp_body())
            .await
            .unwrap()
            .status(),
        201
    );
    // A running server keeps the database: encrypting is refused and changes nothing.
    let (code, _, stderr) = encrypt(&dir, PASSPHRASE).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is in use") && stderr.contains("stop ehrs serve"),
        "{stderr}"
    );
    crate::support::stop_gracefully(server).await;
    assert!(
        !files_with_the_patient(&dir).is_empty(),
        "the plain database holds the patient in plain form"
    );
    assert!(dir.join("jwt_secret").exists() && dir.join("secret_key").exists());

    let (code, stdout, stderr) = encrypt(&dir, "short").await;
    assert_eq!(code, 2, "a weak passphrase is refused: {stderr}{stdout}");
    let (code, stdout, stderr) = encrypt(&dir, PASSPHRASE).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("encrypted") && stdout.contains("jwt_secret, secret_key"),
        "{stdout}"
    );
    assert_eq!(files_with_the_patient(&dir), Vec::<PathBuf>::new());
    assert!(
        !dir.join("jwt_secret").exists() && !dir.join("secret_key").exists(),
        "the key files moved inside"
    );
    let mode = std::fs::metadata(dir.join("ehrs.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "the encrypted database is private, as the plain one was"
    );
    let (code, _, stderr) = encrypt(&dir, PASSPHRASE).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already encrypted"), "{stderr}");

    // Restarted encrypted, with its engine: the events pending before go out, and the
    // tokens signed before still work (the signing key moved, unchanged).
    let (server, base) = start(&dir, Some(PASSPHRASE), &[]).await;
    let got = receiver.wait_for_distinct(2, Duration::from_secs(60)).await;
    let mut types: Vec<&str> = got
        .iter()
        .map(|r| r.json["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["camp.created", "patient.registered"]);
    let (status, read) = read_patient(&client, &base, &token).await;
    assert_eq!((status, &read["name"]), (200, &json!(NAME)), "{read}");
    crate::support::stop_gracefully(server).await;

    // Rekeyed: the old passphrase no longer opens it, the new one does.
    let new = "cyclone dispensary kettle";
    let (code, stdout, stderr) = run(ehrs()
        .args(["db", "rekey"])
        .env("EHRS_DATA_DIR", &dir)
        .env("EHRS_DB_PASSPHRASE", PASSPHRASE)
        .env("EHRS_NEW_DB_PASSPHRASE", new))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("passphrase") && stdout.contains("changed"),
        "{stdout}"
    );
    let (code, stderr) = refused_start(&dir, Some(PASSPHRASE)).await;
    assert_eq!(code, 3, "{stderr}");
    let (server, _) = start(&dir, Some(new), &[]).await;
    crate::support::stop_gracefully(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_encrypt_killed_midway_leaves_a_working_plain_database() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("camp");
    let (server, base) = start(&dir, None, &[]).await;
    let (client, token) = admin(&base).await;
    let created = client
        .post(format!("{base}/api/v1/patients"))
        .bearer_auth(&token)
        .json(&patient())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    crate::support::stop_gracefully(server).await;
    // Enough rows that the copy takes a while to write.
    {
        let db = rusqlite::Connection::open(dir.join("ehrs.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE ballast (b BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) \
             INSERT INTO ballast SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    }
    let before = rows_per_table(&dir.join("ehrs.db"));

    let mut encrypting = ehrs()
        .args(["db", "encrypt"])
        .env("EHRS_DATA_DIR", &dir)
        .env("EHRS_DB_PASSPHRASE", PASSPHRASE)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let copy = dir.join(".ehrs.db.encrypting");
    crate::support::eventually("the encrypted copy is being written", || async {
        std::fs::metadata(&copy)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    })
    .await;
    encrypting.start_kill().unwrap();
    let status = encrypting.wait().await.unwrap();
    assert!(!status.success(), "killed before it finished");

    assert_eq!(
        ehrs::db::cipher::FileState::of(&dir.join("ehrs.db")).unwrap(),
        ehrs::db::cipher::FileState::Plain
    );
    assert_eq!(
        rows_per_table(&dir.join("ehrs.db")),
        before,
        "the plain database holds every row it held"
    );
    let (server, base) = start(&dir, None, &[]).await;
    let (client, token) = admin(&base).await;
    let (status, read) = read_patient(&client, &base, &token).await;
    assert_eq!((status, &read["name"]), (200, &json!(NAME)), "{read}");
    crate::support::stop_gracefully(server).await;
    // And it can be encrypted afterwards.
    let (code, _, stderr) = encrypt(&dir, PASSPHRASE).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!copy.exists());
}
