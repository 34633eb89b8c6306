//! The local receivers: count deliveries and time each one's arrival; and the ceiling,
//! signed POSTs straight to a receiver with no storage at all.

use crate::load::{drive, p, summary};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
pub(crate) struct ReceiverStats {
    pub(crate) count: usize,
    /// Envelope timestamp (the write, stamped in whole milliseconds) to arrival, in
    /// milliseconds.
    pub(crate) latencies_ms: Vec<f64>,
    /// Which write each delivery carried (the `i` of its camp's name) and when it came.
    pub(crate) arrivals: Vec<(usize, Instant)>,
    pub(crate) last_arrival: Option<Instant>,
}

pub(crate) type Stats = Arc<Mutex<ReceiverStats>>;

/// When one write's request left and when its answer came.
pub(crate) type RequestTimes = (Option<Instant>, Option<Instant>);

pub(crate) async fn start_receiver() -> (String, Stats) {
    let stats: Stats = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(stats.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, stats)
}

pub(crate) async fn receive(State(stats): State<Stats>, body: Bytes) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Stamp {
        timestamp: Option<String>,
        data: Option<Data>,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        name: Option<String>,
    }
    let arrived = Instant::now();
    let now = chrono::Utc::now();
    let stamp: Option<Stamp> = serde_json::from_slice(&body).ok();
    let write = stamp.as_ref().and_then(|s| {
        s.data
            .as_ref()?
            .name
            .as_deref()?
            .strip_prefix("Camp ")?
            .parse()
            .ok()
    });
    let latency = stamp
        .and_then(|s| s.timestamp)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| {
            (now - t.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0
        });
    let mut stats = stats.lock().unwrap();
    stats.count += 1;
    if let Some(latency) = latency {
        stats.latencies_ms.push(latency);
    }
    if let Some(write) = write {
        stats.arrivals.push((write, arrived));
    }
    stats.last_arrival = Some(arrived);
    "ok"
}

/// Signed POSTs with no storage: the most any webhook sender could do here. Returns one
/// POST's p50 latency (ms).
pub(crate) async fn ceiling(events: usize, concurrency: usize) -> f64 {
    let (url, stats) = start_receiver().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let key =
        ehrs::outbound::signing::secret_key(&ehrs::outbound::signing::generate_secret()).unwrap();
    let (latencies, wall) = drive(events, concurrency, move |i| {
        let client = client.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let body = json!({"type": "camp.created", "timestamp": chrono::Utc::now().to_rfc3339(), "data": {"i": i}}).to_string();
            let id = format!("msg_{i}");
            let ts = chrono::Utc::now().timestamp();
            let signature = ehrs::outbound::signing::sign(&key, &id, ts, body.as_bytes());
            client
                .post(&url)
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let received = stats.lock().unwrap().count;
    println!("ceiling (signed POSTs, no storage, {concurrency} in flight):");
    println!(
        "  {:.0} POSTs/s ({received} in {:.2} s)",
        events as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    let p50 = p(&latencies, 0.5);
    println!("  one loopback POST: {}", summary(latencies));
    p50
}
