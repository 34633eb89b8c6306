//! Benchmarks that print figures (never asserted in tests: these machines are noisy).
//!
//! `cargo run --release --bin ehrs-bench -- delivery [--events N] [--receivers N] [--concurrency N]`
//!
//! 1. Ceiling: signed POSTs straight to a local receiver, no storage at all.
//! 2. End to end: the clinical API on SQLite (a fresh temporary database) with the
//!    embedded engine delivering to N local receivers: events accepted per second,
//!    deliveries per second, API latency, and commit-to-receiver latency.
//!
//! Everything runs in this one process on 127.0.0.1: load generator, server, engine and
//! receivers share the machine's cores, as they would on a small camp server.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use ehrs::app;
use ehrs::config::Settings;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Clinical events created through the API and delivered end to end.
    Delivery {
        /// Clinical writes to make.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Local receivers, one subscription each.
        #[arg(long, default_value_t = 1)]
        receivers: usize,
        /// API requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

#[derive(Default)]
struct ReceiverStats {
    count: usize,
    /// Envelope timestamp (the commit) to arrival, in milliseconds.
    latencies_ms: Vec<f64>,
    last_arrival: Option<Instant>,
}

type Stats = Arc<Mutex<ReceiverStats>>;

async fn start_receiver() -> (String, Stats) {
    let stats: Stats = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(stats.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, stats)
}

async fn receive(State(stats): State<Stats>, body: Bytes) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Stamp {
        timestamp: Option<String>,
    }
    let now = chrono::Utc::now();
    let stamp: Option<Stamp> = serde_json::from_slice(&body).ok();
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
    stats.last_arrival = Some(Instant::now());
    "ok"
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN)
    )
}

/// Runs `total` jobs with `concurrency` workers; returns per-job latencies (ms) and the
/// wall time.
async fn drive<F, Fut>(total: usize, concurrency: usize, job: F) -> (Vec<f64>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let job = job.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                job(i).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    (latencies, started.elapsed())
}

/// Signed POSTs with no storage: the most any webhook sender could do here.
async fn ceiling(events: usize, concurrency: usize) {
    let (url, stats) = start_receiver().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let key =
        ehrs::webhooks::signing::secret_key(&ehrs::webhooks::signing::generate_secret()).unwrap();
    let (latencies, wall) = drive(events, concurrency, move |i| {
        let client = client.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let body = json!({"type": "camp.created", "timestamp": chrono::Utc::now().to_rfc3339(), "data": {"i": i}}).to_string();
            let id = format!("msg_{i}");
            let ts = chrono::Utc::now().timestamp();
            let signature = ehrs::webhooks::signing::sign(&key, &id, ts, body.as_bytes());
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
    println!("  one loopback POST: {}", summary(latencies));
}

async fn end_to_end(events: usize, receivers: usize, concurrency: usize) {
    let dir = std::env::temp_dir().join(format!("ehrs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = Settings::defaults();
    settings.data_dir = dir.clone();
    settings.admin_password = Some("bench-password-1".into());
    settings.webhooks_allow_insecure = true;
    let (state, _) = app::prepare(settings).await.expect("server prepares");
    let engine = ehrs::webhooks::DeliveryEngine::start(&state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(app::serve(
        listener,
        app::router(state.clone()),
        std::future::pending(),
    ));

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let token: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "bench-password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let mut all_stats = Vec::new();
    for _ in 0..receivers {
        let (url, stats) = start_receiver().await;
        let response = client
            .post(format!("{base}/api/v1/webhooks/subscriptions"))
            .bearer_auth(&token)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        all_stats.push(stats);
    }

    let started = Instant::now();
    let api = client.clone();
    let (latencies, wall) = drive(events, concurrency, move |i| {
        let api = api.clone();
        let url = format!("{base}/api/v1/medical-camps");
        let token = token.clone();
        async move {
            let response = api
                .post(url)
                .bearer_auth(token)
                .json(&json!({"name": format!("Camp {i}"), "location": "Pune", "start_date": "2026-11-28", "end_date": "2026-11-29"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
    })
    .await;
    let expected = events * receivers;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let delivered: usize = all_stats.iter().map(|s| s.lock().unwrap().count).sum();
        if delivered >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = all_stats
        .iter()
        .filter_map(|s| s.lock().unwrap().last_arrival)
        .max()
        .unwrap_or_else(Instant::now);
    let delivered: usize = all_stats.iter().map(|s| s.lock().unwrap().count).sum();
    let delivery_wall = last.duration_since(started);
    let commit_to_receiver: Vec<f64> = all_stats
        .iter()
        .flat_map(|s| s.lock().unwrap().latencies_ms.clone())
        .collect();

    println!("end to end (SQLite, {receivers} receiver(s), {concurrency} API requests in flight):");
    println!(
        "  events accepted: {:.0}/s ({events} in {:.2} s)",
        events as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!("  API latency: {}", summary(latencies));
    println!(
        "  deliveries: {:.0}/s ({delivered} of {expected} in {:.2} s, first request to last delivery)",
        delivered as f64 / delivery_wall.as_secs_f64(),
        delivery_wall.as_secs_f64()
    );
    println!(
        "  commit-to-receiver latency: {}",
        summary(commit_to_receiver)
    );
    engine.stop().await;
    state.db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Delivery {
            events,
            receivers,
            concurrency,
        } => {
            ceiling(events, concurrency).await;
            end_to_end(events, receivers, concurrency).await;
        }
    }
}
