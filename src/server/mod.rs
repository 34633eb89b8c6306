//! The HTTP server loop: accepts connections on a listener and serves a router on each
//! until shutdown, within the limits that keep idle, slow or numerous clients from holding
//! a camp server's sockets ([`ServerLimits`]). Knows nothing of the routes.

mod admission;
mod body;
mod io;
mod malformed;

pub use admission::RETRY_AFTER_SECONDS;
pub use body::BodyDeadline;
pub use malformed::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_TARGET_BYTES};

use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;

/// How long the server waits for a client, and how many it holds. Why: a connection that
/// sends nothing, drips its request, never reads its answer, or is one of thousands would
/// otherwise hold a task and a socket for ever (a handful of such clients can exhaust a
/// small camp server).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// For the head of each request to arrive in full: from the connection's start, and
    /// between requests on a kept-alive connection (so this is also the idle timeout).
    pub header_read: Duration,
    /// For the body of a request to arrive in full once its head has: one deadline for
    /// the whole body, however it is dripped ([`BodyDeadline`]).
    pub body_read: Duration,
    /// For the client to take an answer in full, from its first byte.
    pub answer_write: Duration,
    /// Connections held at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Connections held at once from one client address.
    pub max_connections_per_address: usize,
}

impl Default for ServerLimits {
    /// 30 s for a request head or an idle keep-alive connection, 60 s for a body, 60 s
    /// for an answer; 512 connections, 64 from one address.
    fn default() -> Self {
        ServerLimits {
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(60),
            answer_write: Duration::from_secs(60),
            max_connections: 512,
            max_connections_per_address: 64,
        }
    }
}

/// Refusals of connections over a cap being written at once, each reading what the client
/// sends for a moment before closing; past this a refusal is written without waiting and
/// the connection closed at once (a flood gets no task per socket).
const REFUSALS_IN_FLIGHT: usize = 64;

/// Serves `router` on `listener` until `shutdown` resolves, within `limits`. Paths work
/// with and without a trailing slash: the slash is trimmed before routing. Handlers see
/// the peer address (`ConnectInfo`).
///
/// axum's own `serve` gives hyper no timer, so hyper's header-read timeout never fires
/// there: this loop is axum's, with the timer set and the limits kept.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let app = NormalizePathLayer::trim_trailing_slash().layer(router);
    // HTTP/1 only, through hyper's own HTTP/1 builder: hyper-util's auto builder sniffs
    // for HTTP/2 by reading the first bytes with no timeout, so a client that connects
    // and sends nothing would never be dropped. (Plain-text HTTP/2 needs prior knowledge,
    // which browsers and camp clients do not use.)
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let admission =
        admission::Admission::new(limits.max_connections, limits.max_connections_per_address);
    let refusals = std::sync::Arc::new(tokio::sync::Semaphore::new(REFUSALS_IN_FLIGHT));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, as axum's loop does.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics::counter!("ehrs_http_connections_refused_total", "limit" => refusal.limit_label())
                    .increment(1);
                match refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            refuse(stream, refusal.answer()).await;
                            drop(permit);
                        });
                    }
                    // A flood: the answer goes into the new socket's empty send buffer
                    // at once, without a task, and the socket is closed.
                    Err(_) => {
                        let _ = stream.try_write(&refusal.answer());
                    }
                }
                continue;
            }
        };
        // Handlers see the peer address (`ConnectInfo`, for login throttling per client
        // address), as axum's `into_make_service_with_connect_info` would give them.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |request: axum::http::Request<hyper::body::Incoming>| {
                let mut request = request.map(|body| body::within(body, limits.body_read));
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let io = TokioIo::new(io::ClientIo::new(stream, limits.answer_write));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(error) = connection.await
                && error.is_timeout()
            {
                metrics::counter!("ehrs_http_timeouts_total", "phase" => "header_read")
                    .increment(1);
            }
            drop(ticket);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Writes `answer` to a connection the server will not serve, then reads what the client
/// sends for a moment before closing: closing with its request unread would make the
/// kernel reset the connection, and the client would see "connection reset" instead of
/// the answer.
async fn refuse(mut stream: tokio::net::TcpStream, answer: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let polite = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), polite).await;
}

/// A whole HTTP/1.1 answer written straight to a socket, for the connection-level errors
/// no route sees: `status_line`, `headers`, and `body` as the JSON error (with the headers
/// every answer has that apply to an error), closing the connection.
fn raw_answer(status_line: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Vec<u8> {
    let mut body = serde_json::to_vec(body).expect("a JSON value serialises");
    body.push(b'\n');
    let mut answer = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n",
        body.len()
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    answer
}
