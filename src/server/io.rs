//! The client's socket as hyper sees it, with two duties hyper does not have:
//! - a deadline for writing an answer: the client must take the whole answer within
//!   [`super::ServerLimits::answer_write`] of its first byte, or the connection is closed
//!   (a client that never reads would otherwise hold its socket and the answer for ever);
//! - the JSON error body on the answers hyper writes itself, with an empty body, to a
//!   request head it cannot read (400, 414 URI too long, 431 head too large).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub(super) struct ClientIo {
    stream: TcpStream,
    write_limit: Duration,
    /// When the answer being written began: its first write since the client last sent
    /// something.
    answer_started: Option<Instant>,
    /// Set while a write waits for the client to take bytes: a client that sends more
    /// while it does not read does not restart the answer's clock.
    waiting: bool,
    timer: Option<Pin<Box<Sleep>>>,
    /// Our answer in place of hyper's bodiless one: the bytes, how many are written, and
    /// how many of hyper's bytes it stands for.
    replacement: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl ClientIo {
    pub(super) fn new(stream: TcpStream, write_limit: Duration) -> Self {
        ClientIo {
            stream,
            write_limit,
            answer_started: None,
            waiting: false,
            timer: None,
            replacement: None,
        }
    }

    /// `Pending` while the client may still take the answer; an error once the answer's
    /// deadline has passed (and a wake-up registered for that moment until then).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let started = *self.answer_started.get_or_insert_with(Instant::now);
        let deadline = started + self.write_limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        metrics::counter!("ehrs_http_timeouts_total", "phase" => "answer_write").increment(1);
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the client did not take the answer within {} s",
                self.write_limit.as_secs()
            ),
        ))
    }

    /// Before a write whose bytes are `whole` (when they are one piece): the answer's clock
    /// starts at its first byte, and hyper's bodiless answer to a head it could not read
    /// is swapped for ours.
    fn before_write(&mut self, whole: Option<&[u8]>) {
        if self.answer_started.is_none() {
            self.answer_started = Some(Instant::now());
        }
        if self.replacement.is_none()
            && let Some(written) = whole
            && let Some(bytes) = super::malformed::replace(written)
        {
            self.replacement = Some(Replacement {
                bytes,
                written: 0,
                stands_for: written.len(),
            });
        }
    }

    /// After a write attempt: on `Pending`, the deadline decides.
    fn judge(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match written {
            Poll::Ready(result) => {
                self.waiting = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.waiting = true;
                self.poll_deadline(cx).map(Err)
            }
        }
    }

    /// Writes the replacement answer; `Ready` with the length it stands for once all of
    /// it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        while let Some(rest) = self
            .replacement
            .as_ref()
            .and_then(|r| r.bytes.get(r.written..))
            .filter(|rest| !rest.is_empty())
        {
            let written = Pin::new(&mut self.stream).poll_write(cx, rest);
            match ready!(self.judge(cx, written)) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    if let Some(replacement) = self.replacement.as_mut() {
                        replacement.written += n;
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Poll::Ready(Ok(self.replacement.take().map_or(0, |r| r.stands_for)))
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = ready!(Pin::new(&mut this.stream).poll_read(cx, buf));
        if buf.filled().len() > before && !this.waiting {
            // The client sent something (the next request): the next answer's clock
            // starts at its first write.
            this.answer_started = None;
        }
        Poll::Ready(read)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(Some(buf));
        if this.replacement.is_some() {
            return this.poll_replacement(cx);
        }
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.judge(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // hyper hands its whole head as one slice when there is no body to follow.
        let whole = match bufs {
            [only] => Some(&only[..]),
            _ => None,
        };
        this.before_write(whole);
        if this.replacement.is_some() {
            return this.poll_replacement(cx);
        }
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.judge(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
