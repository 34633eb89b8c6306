//! The application: shared state, router assembly, and the server's start and stop.

use crate::auth::{self, TokenIssuer};
use crate::config::{Keys, Settings};
use crate::db::Db;
use crate::error::ApiError;
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler may need. Cheap to clone; no globals.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub tokens: TokenIssuer,
    /// The bounded password hashing pool (logins, password changes).
    pub passwords: auth::Passwords,
    /// Failed-login records per username and per client address.
    pub logins: auth::LoginThrottle,
    pub keys: Arc<Keys>,
    /// Seals secrets stored in the database (webhook and inbound-source secrets).
    pub secrets: crate::crypto::SecretBox,
    /// Name resolution for webhook targets (replaceable in tests).
    pub lookup: Arc<dyn crate::webhooks::ssrf::Lookup>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The delivery backend behind the webhook administration API.
    pub webhooks: Arc<dyn crate::webhooks::backend::WebhookBackend>,
    /// The Svix backend, when `WEBHOOK_BACKEND=svix` (its workers and ops webhooks).
    pub svix: Option<Arc<crate::webhooks::svix_backend::SvixBackend>>,
}

impl AppState {
    pub fn new(db: Db, settings: Settings, keys: Keys) -> anyhow::Result<Self> {
        let secrets = crate::crypto::SecretBox::new(&keys.data);
        let lookup: Arc<dyn crate::webhooks::ssrf::Lookup> =
            Arc::new(crate::webhooks::ssrf::SystemLookup);
        let backends = crate::webhooks::backend_for(&settings, &db, &secrets, &lookup)?;
        Ok(AppState {
            tokens: TokenIssuer::new(&keys.jwt, settings.token_ttl)?,
            passwords: auth::Passwords::new(
                settings.password_hash_workers,
                settings.password_hash_queue,
            ),
            logins: auth::LoginThrottle::new(settings.login_throttle()),
            secrets,
            lookup,
            metrics: crate::metrics::handle(),
            webhooks: backends.webhooks,
            svix: backends.svix,
            db,
            settings: Arc::new(settings),
            keys: Arc::new(keys),
        })
    }
}

impl AppState {
    /// What the webhook SSRF guard allows under the current settings.
    pub fn webhook_policy(&self) -> crate::webhooks::ssrf::Policy {
        crate::webhooks::ssrf::Policy {
            allow_insecure: self.settings.webhooks_allow_insecure,
        }
    }
}

/// Largest JSON body the API accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(crate::camps::router())
        .merge(crate::patients::router())
        .merge(crate::vitals::router())
        .merge(crate::doctors::router())
        .merge(crate::consultations::router())
        .merge(crate::queue::router())
        .merge(crate::medicines::router())
        .merge(crate::prescriptions::router())
        .merge(crate::webhooks::router());
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(crate::health::health))
        .route("/metrics", get(crate::metrics::render))
        .merge(crate::openapi::router())
        .merge(crate::portal::router())
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized_bodies))
        .layer(axum::middleware::from_fn(count_requests))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // Method and path only: query strings and headers may carry tokens or patient data.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves. Paths work with and without a
/// trailing slash: the slash is trimmed before routing. Handlers see the peer address
/// (`ConnectInfo`, for login throttling per client address).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = NormalizePathLayer::trim_trailing_slash().layer(router);
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            std::net::SocketAddr,
        >(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Opens the database, migrates it, and makes sure an admin exists. Returns the state and,
/// when an admin was created with a generated password, that password (to print once).
pub async fn prepare(settings: Settings) -> anyhow::Result<(AppState, Option<String>)> {
    if !settings.is_postgres() {
        crate::db::files::private_data_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot make the data dir {} private",
                settings.data_dir.display()
            )
        })?;
    }
    let keys = settings.load_keys()?;
    let db = Db::connect(&settings.database_url(), settings.db_pool_size).await?;
    db.migrate().await?;
    let generated = ensure_admin(&db, settings.admin_password.clone()).await?;
    Ok((AppState::new(db, settings, keys)?, generated))
}

/// On an empty user table, creates `admin` with `EHRS_ADMIN_PASSWORD` or a generated
/// password, which is returned so the caller can print it once. Safe when several
/// instances start together on one empty database: exactly one creates the admin, and
/// only that one returns (prints) a password.
async fn ensure_admin(db: &Db, password: Option<String>) -> anyhow::Result<Option<String>> {
    if auth::repo::count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(password) => {
            if let Some(reason) = auth::policy::problem(&password, "admin") {
                anyhow::bail!("EHRS_ADMIN_PASSWORD is refused by the password policy: it {reason}");
            }
            (password, false)
        }
        None => (generate_password(), true),
    };
    let hash = auth::hash_password(password.clone()).await?;
    let mut tx = db.begin().await?;
    let created = auth::repo::insert_first_admin(&mut tx, &hash).await?;
    tx.commit().await?;
    Ok((created && generated).then_some(password))
}

fn generate_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Past this a declared-oversized body is not read to its end: the connection is simply closed.
const OVERSIZED_DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// Refuses a body whose declared length is over [`MAX_BODY_BYTES`] before any handler runs,
/// and reads the body to its end first. Why: a server that answers while the client is
/// still sending, then closes, makes the kernel reset the connection, and the client sees
/// "connection reset" instead of our 413. (Chunked bodies with no declared length are
/// still cut off by the extractors' limit.)
async fn refuse_oversized_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&length| length > MAX_BODY_BYTES as u64) else {
        return next.run(request).await;
    };
    let refusal = ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the server accepts ({MAX_BODY_BYTES} bytes)"),
    )
    .with_details(serde_json::json!({ "limit_bytes": MAX_BODY_BYTES, "declared_bytes": declared }));
    if declared <= OVERSIZED_DRAIN_BYTES {
        let mut body = request.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    }
    let mut response = refusal.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Counts requests by method and status (paths are left out: they carry ids).
async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::counter!("ehrs_http_requests_total", "method" => method, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}
