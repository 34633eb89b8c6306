use ehrs::application::Application;
use ehrs::auth::{self, Role};
use ehrs::config::{Keys, Settings};
use ehrs::state::AppState;
use ehrs::tasks::Tasks;
use reqwest::Method;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the tests find PostgreSQL (a server; each test creates and drops its own database).
fn postgres_admin_url() -> String {
    std::env::var("EHRS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The real application on a fresh database, served over HTTP on 127.0.0.1.
pub struct TestApp {
    pub backend: Backend,
    pub base_url: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    tokens: Vec<(Role, String)>,
}

/// What must be undone after a test: the server, the temporary directory, the PostgreSQL
/// database. Kept apart from [`TestApp`] so it survives a panicking test body.
pub struct Cleanup {
    shutdown: Option<oneshot::Sender<()>>,
    workers: Option<Tasks>,
    _dir: tempfile::TempDir,
    pg_database: Option<String>,
}

impl Cleanup {
    pub async fn run(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(workers) = self.workers.take() {
            workers.stop().await;
        }
        if let Some(name) = self.pg_database.take() {
            drop_postgres_database(&name).await;
        }
    }
}

/// A response with its JSON body already read (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// Reads an answer whole: status, headers, text, and the text as JSON.
    pub async fn read(response: reqwest::Response) -> TestResponse {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        TestResponse {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self.body
    }

    /// The `error.code` of an error answer.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Settings for tests: defaults, a temporary data dir, the test keys, fast and permissive
/// webhooks; no first admin (each test app makes one user per role) and no job runner
/// (tests run due jobs themselves).
pub fn test_settings(dir: &std::path::Path) -> Settings {
    use base64::Engine;
    let mut settings = Settings::defaults();
    let keys = test_keys();
    settings.jwt_secret = Some(String::from_utf8(keys.jwt).unwrap());
    settings.secret_key = Some(base64::engine::general_purpose::STANDARD.encode(keys.data));
    settings.create_admin = false;
    settings.job_workers = false;
    settings.data_dir = dir.to_path_buf();
    settings.bind = "127.0.0.1:0".into();
    settings.webhooks_allow_insecure = true;
    settings.webhook_timeout = std::time::Duration::from_secs(5);
    settings.db_pool_size = 5;
    settings
}

pub fn test_keys() -> Keys {
    Keys {
        jwt: b"test-jwt-secret-0123456789abcdef".to_vec(),
        data: [7u8; 32],
    }
}

impl TestApp {
    /// Spawns with settings adjusted by `configure` (retry schedule, timeouts, …).
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> (TestApp, Cleanup) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(dir.path());
        let mut pg_database = None;
        settings.database_url = Some(match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("ehrs.db").display()),
            Backend::Postgres => {
                let (url, name) = create_postgres_database().await;
                pg_database = Some(name);
                url
            }
        });
        configure(&mut settings);
        let application = Application::build(settings).await.expect("the app builds");
        let state = application.state.clone();

        let mut tokens = Vec::new();
        for role in Role::ALL {
            let mut tx = state.db.begin().await.unwrap();
            let user = auth::repo::insert(
                &mut tx,
                &format!("{}_user", role.as_str()),
                password_hash().await,
                role,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            tokens.push((role, state.auth.tokens.issue(&user.id, role, 0).unwrap()));
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let limits = ehrs::application::server_limits(&application.state.settings);
        tokio::spawn(ehrs::server::serve(
            listener,
            application.router(),
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        let app = TestApp {
            backend,
            base_url: format!("http://{addr}"),
            addr,
            state,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            tokens,
        };
        let cleanup = Cleanup {
            shutdown: Some(shutdown),
            workers: Some(application.start_workers()),
            _dir: dir,
            pg_database,
        };
        (app, cleanup)
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Sends a request as `role` (or anonymously with `None`), with an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        role: Option<Role>,
        path: &str,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base_url, path));
        if let Some(role) = role {
            request = request.bearer_auth(self.token(role));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        TestResponse::read(request.send().await.expect("request failed")).await
    }

    pub async fn get(&self, role: Role, path: &str) -> TestResponse {
        self.request(Method::GET, Some(role), path, None).await
    }

    pub async fn post(&self, role: Role, path: &str, body: &Value) -> TestResponse {
        self.request(Method::POST, Some(role), path, Some(body))
            .await
    }

    pub async fn put(&self, role: Role, path: &str, body: &Value) -> TestResponse {
        self.request(Method::PUT, Some(role), path, Some(body))
            .await
    }

    pub async fn patch(&self, role: Role, path: &str, body: &Value) -> TestResponse {
        self.request(Method::PATCH, Some(role), path, Some(body))
            .await
    }

    pub async fn delete(&self, role: Role, path: &str) -> TestResponse {
        self.request(Method::DELETE, Some(role), path, None).await
    }

    /// Sends raw bytes with a content type (for malformed-input tests).
    pub async fn send_raw(
        &self,
        method: Method,
        role: Role,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> TestResponse {
        TestResponse::read(
            self.client
                .request(method, format!("{}{}", self.base_url, path))
                .bearer_auth(self.token(role))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("request failed"),
        )
        .await
    }

    /// Creates a subscription as admin; returns its id and `whsec_` secret.
    pub async fn subscribe(
        &self,
        url: &str,
        event_types: &[&str],
        payload: &str,
    ) -> (String, String) {
        let created = self
            .post(
                Role::Admin,
                "/api/v1/webhooks/subscriptions",
                &serde_json::json!({"url": url, "event_types": event_types, "payload": payload, "description": "test"}),
            )
            .await
            .expect(201);
        (
            created["id"].as_str().unwrap().to_string(),
            created["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Rows in a table, for "nothing was written" assertions.
    pub async fn count_rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
    }

    /// Event types in the outbox, oldest first.
    pub async fn emitted_event_types(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM webhook_messages ORDER BY created_at, id")
            .fetch_all(self.state.db.pool())
            .await
            .unwrap()
    }

    /// The outbox payloads (`{"data", "changed_fields"}`) of one event type, oldest first.
    pub async fn emitted_payloads(&self, event_type: &str) -> Vec<Value> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT payload FROM webhook_messages WHERE event_type = $1 ORDER BY created_at, id",
        )
        .bind(event_type)
        .fetch_all(self.state.db.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect()
    }
}

/// One argon2 hash shared by every test user (hashing is slow by design).
async fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    if let Some(hash) = HASH.get() {
        return hash;
    }
    let hash = auth::hash_password(TEST_PASSWORD.to_string())
        .await
        .unwrap();
    HASH.get_or_init(|| hash)
}

/// The password of every `<role>_user` a [`TestApp`] creates.
pub const TEST_PASSWORD: &str = "correct-horse-battery";

pub async fn create_postgres_database() -> (String, String) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let admin_url = postgres_admin_url();
    let name = format!(
        "ehrs_test_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let mut conn = sqlx::AnyConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL must run at 127.0.0.1:5432 (see .ci/run)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin_url);
    (format!("{base}/{name}"), name)
}

pub async fn drop_postgres_database(name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::AnyConnection::connect(&postgres_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

/// Runs `body` against a fresh app on `backend` (settings adjusted by `configure`), then
/// stops the server and drops the database even when the body panicked (the panic is then
/// re-raised so the test fails).
pub async fn run_test<F, Fut>(backend: Backend, configure: impl FnOnce(&mut Settings), body: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (app, cleanup) = TestApp::spawn_with(backend, configure).await;
    let outcome = tokio::spawn(body(app)).await;
    cleanup.run().await;
    if let Err(err) = outcome
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
    }
}
