//! A request body with one deadline for the whole of it.

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
pub(super) fn within(body: hyper::body::Incoming, limit: std::time::Duration) -> axum::body::Body {
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
            metrics::counter!("ehrs_http_timeouts_total", "phase" => "body_read").increment(1);
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
