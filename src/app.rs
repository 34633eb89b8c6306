//! The application: shared state, router assembly, and the server's start and stop.

use crate::auth::{self, TokenIssuer};
use crate::config::{Keys, Settings};
use crate::db::Db;
use crate::error::ApiError;
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    pub lookup: Arc<dyn crate::outbound::ssrf::Lookup>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The delivery backend behind the webhook administration API.
    pub webhooks: Arc<dyn crate::outbound::backend::WebhookBackend>,
    /// The Svix backend, when `WEBHOOK_BACKEND=svix` (its workers and ops webhooks).
    pub svix: Option<Arc<crate::svix::SvixBackend>>,
}

impl AppState {
    pub fn new(db: Db, settings: Settings, keys: Keys) -> anyhow::Result<Self> {
        let secrets = crate::crypto::SecretBox::new(&keys.data);
        let lookup: Arc<dyn crate::outbound::ssrf::Lookup> =
            Arc::new(crate::outbound::ssrf::SystemLookup);
        let backends = crate::outbound::backend_for(&settings, &db, &secrets, &lookup)?;
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
    pub fn webhook_policy(&self) -> crate::outbound::ssrf::Policy {
        crate::outbound::ssrf::Policy {
            allow_insecure: self.settings.webhooks_allow_insecure,
        }
    }
}

/// Largest JSON body the API accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every documented route, each registered once with its OpenAPI operation: the router
/// and the document (`crate::openapi::document`) are both taken from this.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(auth::router())
        .merge(crate::camps::router())
        .merge(crate::patients::router())
        .merge(crate::vitals::router())
        .merge(crate::doctors::router())
        .merge(crate::consultations::router())
        .merge(crate::queue::router())
        .merge(crate::medicines::router())
        .merge(crate::prescriptions::router())
        .merge(crate::outbound::router())
        .routes(routes!(crate::health::health))
        .routes(routes!(crate::metrics::render))
        .merge(crate::openapi::router())
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (router, _document) = routes().split_for_parts();
    router
        // The portal is pages, not API: it is not in the document.
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
        .layer(axum::middleware::from_fn(refuse_invalid_utf8))
        .layer(axum::middleware::from_fn(count_requests))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // Method and path only: query strings and headers may carry tokens or patient data.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// How long the server waits for a client. Why: a connection that sends nothing, half a
/// request head, or sits idle between keep-alive requests would otherwise hold a task and
/// a socket for ever (a handful of such clients can exhaust a small camp server).
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// For the head of each request to arrive in full: from the connection's start, and
    /// between requests on a kept-alive connection (so this is also the idle timeout).
    pub header_read: std::time::Duration,
    /// For the body of a request to arrive in full once its head has.
    pub body_read: std::time::Duration,
}

impl Default for ServerTimeouts {
    /// 30 s for a request head or an idle keep-alive connection, 60 s for a body.
    fn default() -> Self {
        ServerTimeouts {
            header_read: std::time::Duration::from_secs(30),
            body_read: std::time::Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, with the default
/// [`ServerTimeouts`]. Paths work with and without a trailing slash: the slash is trimmed
/// before routing. Handlers see the peer address (`ConnectInfo`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_timeouts(listener, router, ServerTimeouts::default(), shutdown).await
}

/// [`serve`] with chosen timeouts. axum's own `serve` gives hyper no timer, so hyper's
/// header-read timeout never fires there: this loop is axum's, with the timer set.
pub async fn serve_with_timeouts(
    listener: TcpListener,
    router: Router,
    timeouts: ServerTimeouts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let app = NormalizePathLayer::trim_trailing_slash().layer(router.layer(
        tower_http::timeout::RequestBodyTimeoutLayer::new(timeouts.body_read),
    ));
    // HTTP/1 only, through hyper's own HTTP/1 builder: hyper-util's auto builder sniffs
    // for HTTP/2 by reading the first bytes with no timeout, so a client that connects
    // and sends nothing would never be dropped. (Plain-text HTTP/2 needs prior knowledge,
    // which browsers and camp clients do not use.)
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, as axum's loop does.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Handlers see the peer address (`ConnectInfo`, for login throttling per client
        // address), as axum's `into_make_service_with_connect_info` would give them.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |request: axum::http::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

/// Counts requests by method, route and status. Labels stay bounded whatever clients
/// send: a method outside the standard ones is `OTHER`, and the route is the matched
/// template (`/api/v1/patients/{book_no}`, never the id itself) or `unmatched`.
async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics::counter!("ehrs_http_requests_total", "method" => method, "route" => route, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

/// A path or query whose percent-escapes do not decode to UTF-8 names nothing: a JSON 400
/// before routing (axum's own rejection is plain text, and a query would be read lossily).
async fn refuse_invalid_utf8(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use percent_encoding::percent_decode_str;
    let uri = request.uri();
    if percent_decode_str(uri.path()).decode_utf8().is_err() {
        return ApiError::bad_request(
            "invalid_path",
            "the path is not valid UTF-8 once percent-decoded",
        )
        .into_response();
    }
    let bad_query = uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| percent_decode_str(pair).decode_utf8().is_err())
    });
    if bad_query {
        return ApiError::bad_request(
            "invalid_query",
            "the query string is not valid UTF-8 once percent-decoded",
        )
        .into_response();
    }
    next.run(request).await
}

/// The Content-Security-Policy of API answers (JSON and text: nothing to load or frame).
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The policy of pages (`/docs`, and any other HTML page that sets none of its own): only
/// this server's own files, no inline script, never framed. Swagger UI needs inline styles
/// and `data:` images.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Security headers on every answer, whatever route or fallback produced it: no MIME
/// sniffing, no referrer, never framed, and `Cache-Control: no-store` (answers carry
/// patient data and tokens; camp laptops are shared). A handler may set its own
/// `Cache-Control` or `Content-Security-Policy`; the rest are always set.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(if is_html {
            PAGE_CSP
        } else {
            API_CSP
        }));
    response
}
