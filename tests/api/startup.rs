//! Start-up of several real `ehrs serve` processes at the same moment on one empty
//! database: every one starts (migrations, keys and the first admin do not race), exactly
//! one `admin` exists, exactly one process writes its password to the data dir's
//! `initial-admin-password` (and logs only the file's path), and that password and the
//! tokens work on every instance. Also: logs written to a pipe carry no ANSI colour.

use crate::support::app::{create_postgres_database, drop_postgres_database};
use crate::support::free_port;
use base64::Engine;
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the instance that created the admin logs (the file's path, never the password).
const CREATED: &str = "created the first admin user 'admin'; its password is in the file";

/// One `ehrs serve` child with everything it wrote to stdout and stderr.
struct Instance {
    child: Child,
    base: String,
    data_dir: std::path::PathBuf,
    output: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    fn created_the_admin(&self) -> bool {
        self.output().iter().any(|line| line.contains(CREATED))
    }

    /// The password in this instance's data dir, if the file is there.
    fn password_file(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir.join("initial-admin-password")).ok()?;
        Some(text.trim_end().to_string())
    }
}

/// Spawns `ehrs serve` with an environment that holds only what is given here (so no
/// `EHRS_ADMIN_PASSWORD` or key leaks in from the test's environment), in `data_dir`.
fn spawn(database_url: &str, data_dir: &Path, env: &[(&str, String)]) -> Instance {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ehrs"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("EHRS_DB_POOL_SIZE", "3")
        .env("RUST_LOG", "info,sqlx=warn")
        // No `.env` of the developer's checkout is read: it looks in the working dir.
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the ehrs binary starts");
    let output = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for stream in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(stderr),
    ] {
        let output = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.lock().unwrap().push(line);
            }
        });
    }
    Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
        data_dir: data_dir.to_path_buf(),
        output,
    }
}

/// Waits until every instance answers `/health` with 200; fails with an instance's
/// output when it exits or stays down.
async fn wait_healthy(instances: &mut [Instance]) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    for instance in instances.iter_mut() {
        loop {
            if let Ok(Some(status)) = instance.child.try_wait() {
                // Let the readers catch the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "an instance exited during start-up ({status}):\n{}",
                    instance.output().join("\n")
                );
            }
            if let Ok(response) = client.get(format!("{}/health", instance.base)).send().await
                && response.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "an instance did not become healthy:\n{}",
                instance.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Logs in as `admin` on one instance and uses the token on every other: the instances
/// share the admin and the signing key.
async fn admin_works_everywhere(instances: &[Instance], password: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (i, issuer) in instances.iter().enumerate() {
        let login = client
            .post(format!("{}/api/v1/auth/login", issuer.base))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "login on instance {i}");
        let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        for (j, other) in instances.iter().enumerate() {
            let users = client
                .get(format!("{}/api/v1/users", other.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                users.status(),
                200,
                "a token of instance {i} on instance {j}"
            );
            let users: serde_json::Value = users.json().await.unwrap();
            let names: Vec<&str> = users["items"]
                .as_array()
                .expect("a page of users")
                .iter()
                .map(|user| user["username"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["admin"], "exactly one user, the admin");
        }
    }
}

/// Every instance started; exactly one created the admin and wrote the generated
/// password to its data dir, in a file only this user may read, and no instance logged
/// it; no ANSI escape in what went to the pipes. Returns the password.
fn the_one_written_password(instances: &[Instance]) -> String {
    let outputs = || {
        instances
            .iter()
            .map(|i| i.output().join("\n"))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let creators: Vec<&Instance> = instances.iter().filter(|i| i.created_the_admin()).collect();
    assert_eq!(
        creators.len(),
        1,
        "exactly one instance creates the admin; outputs:\n{}",
        outputs()
    );
    let password = creators[0]
        .password_file()
        .expect("the creator's data dir holds the password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = creators[0].data_dir.join("initial-admin-password");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the password file is private");
    }
    for instance in instances {
        let output = instance.output();
        assert!(
            output.iter().any(|line| line.contains("ehrs listening")),
            "the logs reached the pipe: {output:?}"
        );
        assert!(
            output.iter().all(|line| !line.contains('\u{1b}')),
            "logs written to a pipe carry no ANSI colour: {output:?}"
        );
        assert!(
            output.iter().all(|line| !line.contains(&password)),
            "the password is never in the output: {output:?}"
        );
    }
    password
}

mod concurrent_start {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let (url, name) = create_postgres_database().await;
        let outcome = tokio::spawn(async move {
            let keys = crate::support::app::test_keys();
            let env = [
                ("EHRS_JWT_SECRET", String::from_utf8(keys.jwt).unwrap()),
                (
                    "EHRS_SECRET_KEY",
                    base64::engine::general_purpose::STANDARD.encode(keys.data),
                ),
            ];
            let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
            // Spawned back to back: they connect, migrate and look for users together.
            let mut instances: Vec<Instance> = dirs
                .iter()
                .map(|dir| spawn(&url, dir.path(), &env))
                .collect();
            wait_healthy(&mut instances).await;
            let password = the_one_written_password(&instances);
            admin_works_everywhere(&instances, &password).await;
        })
        .await;
        drop_postgres_database(&name).await;
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        // One data dir for all: one database file and no keys given, so the processes
        // also generate the key files at the same moment and must end up sharing them.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ehrs.db").display());
        let mut instances: Vec<Instance> = (0..3).map(|_| spawn(&url, dir.path(), &[])).collect();
        wait_healthy(&mut instances).await;
        let password = the_one_written_password(&instances);
        admin_works_everywhere(&instances, &password).await;
    }
}

/// With `EHRS_LOG_FORMAT=json` every line is JSON and the generated password is only in
/// the data dir's file; the file goes once the admin changes the password through the
/// API, and a stale one (its password no longer the admin's) goes at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_password_lives_in_a_file_until_the_admin_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ehrs.db").display());
    let json = [("EHRS_LOG_FORMAT", "json".to_string())];
    let mut instances = vec![spawn(&url, dir.path(), &json)];
    wait_healthy(&mut instances).await;
    let password = the_one_written_password(&instances);
    for line in instances[0].output() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = instances[0].base.clone();
    // The file's password signs in.
    let token = crate::support::admin_token(&client, &base, &password).await;
    let me: serde_json::Value = client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changed = client
        .patch(format!(
            "{base}/api/v1/users/{}",
            me["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .json(&json!({"password": "lantern-river-stone-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let file = dir.path().join("initial-admin-password");
    assert!(
        !file.exists(),
        "removed once the admin has their own password"
    );
    drop(instances);

    // A file left behind (restored from a backup, say) no longer opens the account: the
    // next start removes it.
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut instances = vec![spawn(&url, dir.path(), &json)];
    wait_healthy(&mut instances).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !file.exists(),
        "a stale password file is removed at start: {:?}",
        instances[0].output()
    );
}
