//! `TestReceiver`: a real HTTP server on 127.0.0.1 that records every webhook it receives
//! and answers with scripted statuses, optional `Retry-After`, or a stall.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    pub json: Value,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    /// Verifies the delivery with the official Svix library.
    pub fn verify(&self, secret: &str) -> bool {
        let webhook = svix::webhooks::Webhook::new(secret).expect("valid whsec_ secret");
        webhook.verify(self.body.as_bytes(), &self.headers).is_ok()
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Wait this long, then 200.
    Stall(Duration),
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    completed: usize,
}

#[derive(Clone)]
pub struct TestReceiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
}

impl TestReceiver {
    /// A receiver that answers 200 unless scripted otherwise.
    pub async fn start() -> TestReceiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let arrived = Arc::new(Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = TestReceiver {
            url,
            inner,
            arrived,
        };
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// The next requests are answered with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Every request after the script is answered with `reply`.
    pub fn always(&self, reply: Reply) {
        self.inner.lock().unwrap().default = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests whose answer has been sent (a stalled one counts when it ends).
    pub fn completed(&self) -> usize {
        self.inner.lock().unwrap().completed
    }

    /// Waits until at least `count` requests arrived; panics after `limit` (a failure
    /// detector, not a speed assertion: it is generous).
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "expected {count} deliveries, got {} within {limit:?}",
                received.len()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits until `count` distinct webhook-ids arrived.
    pub async fn wait_for_distinct(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let received = self.received();
            let mut ids: Vec<&str> = received.iter().map(|r| r.webhook_id()).collect();
            ids.sort();
            ids.dedup();
            if ids.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} distinct deliveries, got {} within {limit:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(State(receiver): State<TestReceiver>, headers: HeaderMap, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let reply = {
        let mut inner = receiver.inner.lock().unwrap();
        inner.received.push(Received {
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            headers,
            body,
            at: Instant::now(),
        });
        inner
            .script
            .pop_front()
            .or_else(|| inner.default.clone())
            .unwrap_or(Reply::Status(200))
    };
    receiver.arrived.notify_waiters();
    let response = match reply {
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), "ok").into_response(),
        Reply::RetryAfter(code, seconds) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", seconds.to_string())],
            "later",
        )
            .into_response(),
        Reply::Stall(duration) => {
            tokio::time::sleep(duration).await;
            (StatusCode::OK, "slow ok").into_response()
        }
    };
    receiver.inner.lock().unwrap().completed += 1;
    response
}
