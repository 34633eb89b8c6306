//! The HTTP server loop: accepts connections on a listener and serves a router on each
//! until shutdown, with the timeouts that keep idle or slow clients from holding a camp
//! server's sockets. Knows nothing of the routes.

use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;

/// How long the server waits for a client. Why: a connection that sends nothing, half a
/// request head, or sits idle between keep-alive requests would otherwise hold a task and
/// a socket for ever (a handful of such clients can exhaust a small camp server).
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// For the head of each request to arrive in full: from the connection's start, and
    /// between requests on a kept-alive connection (so this is also the idle timeout).
    pub header_read: std::time::Duration,
    /// For the body of a request to arrive in full once its head has: one deadline for
    /// the whole body, however it is dripped ([`BodyDeadline`]).
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
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_timeouts(listener, router, ServerTimeouts::default(), shutdown).await
}

/// [`serve`] with chosen timeouts. axum's own `serve` gives hyper no timer, so hyper's
/// header-read timeout never fires there: this loop is axum's, with the timer set.
pub async fn serve_with_timeouts(
    listener: TcpListener,
    router: axum::Router,
    timeouts: ServerTimeouts,
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
                let mut request = request.map(|body| within(body, timeouts.body_read));
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

/// A request body that did not arrive in full by its deadline: the body's error, which
/// the router answers with 408.
#[derive(Debug)]
pub struct BodyDeadline(pub std::time::Duration);

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive in full within {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyDeadline {}

/// `body`, failing with [`BodyDeadline`] once `limit` has passed since the request's
/// head arrived. One deadline for the whole body: a per-chunk timeout restarts with every
/// byte, so a client dripping one byte a minute would hold the connection for ever. A
/// request with no body gets no timer.
fn within(body: hyper::body::Incoming, limit: std::time::Duration) -> axum::body::Body {
    use http_body::Body as _;
    if body.is_end_stream() {
        return axum::body::Body::new(body);
    }
    axum::body::Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(limit)),
        limit,
    })
}

struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: std::time::Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(Box::new(BodyDeadline(this.limit)))));
        }
        std::pin::Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
