//! Benchmarks that print figures (never asserted in tests: these machines are noisy).
//!
//! `cargo run --release --bin ehrs-bench -- suite [--events N] [--postgres URL]` prints,
//! in one run, every figure the pipeline is judged by:
//!
//! 1. Ceiling: signed POSTs straight to a local receiver, no storage at all.
//! 2. API-only writes on SQLite (no subscription).
//! 3. End to end with one subscription, on SQLite and on PostgreSQL (a fresh database
//!    made on the server at `--postgres`, dropped after): events accepted per second,
//!    deliveries per second, API p50/p99, commit-to-receiver p50/p99.
//! 4. A paced 400 writes/s for 10 s with one subscription, on each database: the
//!    commit-to-receiver latency of a delivery when deliveries do not queue (the closed
//!    loop of 3 saturates the machine, so its latency figure is the queue's).
//! 5. A paced 400 writes/s for 10 s with 10 subscriptions against none: API p50/p99 of
//!    each, and whether delivery kept pace.
//! 6. Peak RSS of each scenario: each runs in a process of its own (`scenario`), whose
//!    VmHWM is printed; the load generator and receivers share that process, so it is an
//!    upper bound for the server.
//!
//! `… -- delivery [--events N] [--receivers N] [--concurrency N]` runs 1 and one end-to-end
//! scenario on SQLite alone.
//!
//! Everything runs in this one process on 127.0.0.1: load generator, server, engine and
//! receivers share the machine's cores, as they would on a small camp server.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use ehrs::application::Application;
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
    /// Every figure in one run: ceiling, API only, end to end on SQLite and PostgreSQL,
    /// paced 400 writes/s with 10 subscriptions against none, peak RSS.
    Suite {
        /// Writes per closed-loop scenario.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// API requests in flight at once (closed-loop scenarios).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// A PostgreSQL server to make a scratch database on (omit to skip PostgreSQL).
        #[arg(long)]
        postgres: Option<String>,
        /// Length of the paced scenarios.
        #[arg(long, default_value_t = 10)]
        paced_seconds: u32,
    },
    /// One end-to-end scenario, its report printed as one `REPORT {json}` line: the suite
    /// runs each scenario in a process of its own so each peak RSS is its own.
    #[command(hide = true)]
    Scenario {
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long)]
        events: usize,
        #[arg(long)]
        receivers: usize,
        /// Closed loop with this many requests in flight (else `--per-second`).
        #[arg(long)]
        concurrency: Option<usize>,
        #[arg(long, default_value_t = 400)]
        per_second: u32,
    },
}

#[derive(Default)]
struct ReceiverStats {
    count: usize,
    /// Envelope timestamp (the write, stamped in whole milliseconds) to arrival, in
    /// milliseconds.
    latencies_ms: Vec<f64>,
    /// Which write each delivery carried (the `i` of its camp's name) and when it came.
    arrivals: Vec<(usize, Instant)>,
    last_arrival: Option<Instant>,
}

type Stats = Arc<Mutex<ReceiverStats>>;

/// When one write's request left and when its answer came.
type RequestTimes = (Option<Instant>, Option<Instant>);

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

/// Signed POSTs with no storage: the most any webhook sender could do here. Returns one
/// POST's p50 latency (ms).
async fn ceiling(events: usize, concurrency: usize) -> f64 {
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

/// Where a scenario's server keeps its data.
#[derive(Clone)]
enum Store {
    Sqlite,
    /// A PostgreSQL server: a fresh database is made on it and dropped after.
    Postgres(String),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
        }
    }
}

/// How the API is loaded: a fixed number of requests in flight, or an open-loop rate.
#[derive(Clone, Copy)]
enum Load {
    Closed { concurrency: usize },
    Paced { per_second: u32 },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    accepted_per_s: f64,
    api_ms: Vec<f64>,
    delivered: usize,
    expected: usize,
    deliveries_per_s: f64,
    commit_to_receiver_ms: Vec<f64>,
    /// The commit happens after its request was sent and before its answer came back,
    /// so these bound commit-to-receiver to the microsecond: the API answer to the
    /// arrival (a lower bound; negative when the delivery beat the answer) and the
    /// request to the arrival (an upper bound).
    answer_to_receiver_ms: Vec<f64>,
    request_to_receiver_ms: Vec<f64>,
    /// Last delivery after the last API answer.
    drain: Duration,
    peak_rss_kb: u64,
    /// SQLite: the size of the write-ahead log when the load ended (it grows while
    /// checkpoints cannot keep up).
    wal_bytes: Option<u64>,
    /// SQLite: commits made and the write transactions they made durable.
    group_commit: Option<(f64, f64)>,
}

/// The writer's counters from `/metrics`: (commits, transactions committed).
fn sqlite_commits(state: &ehrs::state::AppState) -> (f64, f64) {
    let text = state.metrics.render();
    let read = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read("ehrs_sqlite_commits_total"),
        read("ehrs_sqlite_committed_transactions_total"),
    )
}

/// Peak resident set of this process since the last reset, in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one end-to-end scenario in a fresh process (this program's `scenario`
/// command), so its peak RSS is its own and not the maximum of every earlier scenario.
async fn isolated(store: &Store, events: usize, receivers: usize, load: Load) -> Report {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .arg("scenario")
        .arg(format!("--events={events}"))
        .arg(format!("--receivers={receivers}"));
    if let Store::Postgres(url) = store {
        command.arg(format!("--postgres={url}"));
    }
    match load {
        Load::Closed { concurrency } => command.arg(format!("--concurrency={concurrency}")),
        Load::Paced { per_second } => command.arg(format!("--per-second={per_second}")),
    };
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("the scenario process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("the scenario printed no report: {stdout}"));
    serde_json::from_str(line).expect("a report")
}

async fn postgres_database(admin_url: &str, create: bool) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("ehrs_bench_{}", std::process::id());
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("the --postgres server must accept connections");
    let sql = if create {
        format!("CREATE DATABASE {name}")
    } else {
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{name}")
}

/// Runs one scenario on a fresh server: `events` camp creations through the API with
/// `receivers` subscriptions (each a local receiver), waiting for every delivery.
async fn end_to_end(store: &Store, events: usize, receivers: usize, load: Load) -> Report {
    let dir = std::env::temp_dir().join(format!("ehrs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = Settings::defaults();
    settings.data_dir = dir.clone();
    settings.admin_password = Some("bench-password-1".into());
    settings.webhooks_allow_insecure = true;
    if let Store::Postgres(admin_url) = store {
        settings.database_url = Some(postgres_database(admin_url, true).await);
        settings.jwt_secret = Some("bench-jwt-secret-0123456789abcdef".into());
        settings.secret_key = Some(base64_key());
    }
    let app = Application::build(settings).await.expect("server prepares");
    let workers = app.start_workers();
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ehrs::server::serve(
        listener,
        app.router(),
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

    let commits_before = sqlite_commits(&state);
    // When each write's request left and its answer came.
    let timings: Arc<Vec<Mutex<RequestTimes>>> =
        Arc::new((0..events).map(|_| Mutex::default()).collect());
    let started = Instant::now();
    let api = client.clone();
    let times = timings.clone();
    let create = move |i: usize| {
        let api = api.clone();
        let url = format!("{base}/api/v1/medical-camps");
        let token = token.clone();
        let times = times.clone();
        async move {
            times[i].lock().unwrap().0 = Some(Instant::now());
            let response = api
                .post(url)
                .bearer_auth(token)
                .json(&json!({"name": format!("Camp {i}"), "location": "Pune", "start_date": "2026-11-28", "end_date": "2026-11-29"}))
                .send()
                .await
                .unwrap();
            times[i].lock().unwrap().1 = Some(Instant::now());
            assert_eq!(response.status(), 201);
        }
    };
    let (latencies, wall) = match load {
        Load::Closed { concurrency } => drive(events, concurrency, create).await,
        Load::Paced { per_second } => paced(events, per_second, create).await,
    };
    let api_done = Instant::now();
    let expected = events * receivers;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let delivered: usize = all_stats.iter().map(|s| s.lock().unwrap().count).sum();
        if delivered >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
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
    let (mut answer_to_receiver, mut request_to_receiver) = (Vec::new(), Vec::new());
    for stats in &all_stats {
        for &(write, arrived) in &stats.lock().unwrap().arrivals {
            let Some(slot) = timings.get(write) else {
                continue;
            };
            let (Some(sent), Some(answered)) = *slot.lock().unwrap() else {
                continue;
            };
            let ms = |from: Instant| {
                if arrived >= from {
                    arrived.duration_since(from).as_secs_f64() * 1000.0
                } else {
                    -(from.duration_since(arrived).as_secs_f64() * 1000.0)
                }
            };
            answer_to_receiver.push(ms(answered));
            request_to_receiver.push(ms(sent));
        }
    }
    let peak_rss_kb = peak_rss_kb();
    let (commits, transactions) = sqlite_commits(&state);
    let group_commit = state
        .db
        .sqlite_path()
        .is_some()
        .then_some((commits - commits_before.0, transactions - commits_before.1));
    let wal_bytes = state
        .db
        .sqlite_path()
        .and_then(|db| std::fs::metadata(format!("{}-wal", db.display())).ok())
        .map(|wal| wal.len());
    workers.stop().await;
    state.db.close().await;
    if let Store::Postgres(admin_url) = store {
        postgres_database(admin_url, false).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Report {
        accepted_per_s: events as f64 / wall.as_secs_f64(),
        api_ms: latencies,
        delivered,
        expected,
        deliveries_per_s: delivered as f64 / delivery_wall.as_secs_f64(),
        commit_to_receiver_ms: commit_to_receiver,
        answer_to_receiver_ms: answer_to_receiver,
        request_to_receiver_ms: request_to_receiver,
        drain: last.saturating_duration_since(api_done),
        peak_rss_kb,
        wal_bytes,
        group_commit,
    }
}

/// A fixed 32-byte key, base64, for the PostgreSQL scenarios' `EHRS_SECRET_KEY`.
fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

/// Sends `total` jobs at `per_second`, open loop (a late answer does not delay the next
/// request); returns per-job latencies (ms) and the wall time.
async fn paced<F, Fut>(total: usize, per_second: u32, job: F) -> (Vec<f64>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let interval = Duration::from_secs(1) / per_second;
    let mut running = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let work = job(i);
        running.push(tokio::spawn(async move {
            let t = Instant::now();
            work.await;
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in running {
        latencies.push(task.await.unwrap());
    }
    (latencies, started.elapsed())
}

fn print_report(title: &str, report: &Report, events: usize) {
    println!("{title}:");
    println!(
        "  events accepted: {:.0}/s ({events} writes)",
        report.accepted_per_s
    );
    println!("  API latency: {}", summary(report.api_ms.clone()));
    if report.expected > 0 {
        println!(
            "  deliveries: {:.0}/s ({} of {}, first request to last delivery; last delivery {:.0} ms after the last API answer)",
            report.deliveries_per_s,
            report.delivered,
            report.expected,
            report.drain.as_secs_f64() * 1000.0
        );
        println!(
            "  commit-to-receiver latency (envelope stamp, whole ms): {}",
            summary(report.commit_to_receiver_ms.clone())
        );
        println!(
            "  API answer to receiver: {}; request sent to receiver: {}",
            summary(report.answer_to_receiver_ms.clone()),
            summary(report.request_to_receiver_ms.clone())
        );
    }
    println!("  peak RSS: {:.1} MB", report.peak_rss_kb as f64 / 1024.0);
    if let Some(wal) = report.wal_bytes {
        println!("  SQLite WAL at the end: {:.1} MB", wal as f64 / 1e6);
    }
    if let Some((commits, transactions)) = report.group_commit {
        println!(
            "  SQLite group commit: {commits:.0} commits for {transactions:.0} write transactions ({:.1} per commit)",
            transactions / commits.max(1.0)
        );
    }
}

fn p(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    percentile(&sorted, q)
}

async fn suite(events: usize, concurrency: usize, postgres: Option<String>, paced_seconds: u32) {
    let ceiling_p50 = ceiling(events, concurrency).await;
    let closed = Load::Closed { concurrency };
    let api_only = isolated(&Store::Sqlite, events, 0, closed).await;
    print_report("API only (SQLite, no subscription)", &api_only, events);
    let mut stores = vec![Store::Sqlite];
    stores.extend(postgres.map(Store::Postgres));
    let mut e2e = Vec::new();
    for store in &stores {
        let report = isolated(store, events, 1, closed).await;
        print_report(
            &format!(
                "end to end ({}, 1 subscription, {concurrency} in flight)",
                store.name()
            ),
            &report,
            events,
        );
        e2e.push((store.name(), report));
    }
    let rate = 400;
    let paced_events = (rate * paced_seconds) as usize;
    let load = Load::Paced { per_second: rate };
    // Under the closed loop deliveries queue behind a saturated machine, so its
    // commit-to-receiver figure measures the queue; at a steady 400 writes/s it measures
    // what one delivery takes.
    let mut steady = Vec::new();
    for store in &stores {
        let report = isolated(store, paced_events, 1, load).await;
        print_report(
            &format!("paced 400 writes/s, {}, 1 subscription", store.name()),
            &report,
            paced_events,
        );
        steady.push((store.name(), report));
    }
    let quiet = isolated(&Store::Sqlite, paced_events, 0, load).await;
    print_report(
        "paced 400 writes/s, SQLite, no subscription",
        &quiet,
        paced_events,
    );
    let busy = isolated(&Store::Sqlite, paced_events, 10, load).await;
    print_report(
        "paced 400 writes/s, SQLite, 10 subscriptions",
        &busy,
        paced_events,
    );

    println!();
    println!("summary (targets from the pipeline issue):");
    println!(
        "  API-only writes on SQLite: {:.0}/s (target >= 8,000)",
        api_only.accepted_per_s
    );
    for (name, report) in &e2e {
        let target = if *name == "SQLite" { "2,700" } else { "1,700" };
        println!(
            "  end to end on {name}: {:.0} events/s (target >= {target}); commit->receiver p50 {:.2} ms, p99 {:.2} ms with the machine saturated",
            report.deliveries_per_s.min(report.accepted_per_s),
            p(&report.commit_to_receiver_ms, 0.5),
            p(&report.commit_to_receiver_ms, 0.99),
        );
    }
    for (name, report) in &steady {
        println!(
            "  commit->receiver on {name} at 400 writes/s: p50 between {:.2} and {:.2} ms (API answer / request sent to receiver), p99 between {:.2} and {:.2} ms (target p50 <= 2 x one POST = {:.2} ms)",
            p(&report.answer_to_receiver_ms, 0.5),
            p(&report.request_to_receiver_ms, 0.5),
            p(&report.answer_to_receiver_ms, 0.99),
            p(&report.request_to_receiver_ms, 0.99),
            2.0 * ceiling_p50
        );
    }
    let kept_pace = busy.delivered == busy.expected && busy.drain < Duration::from_secs(1);
    println!(
        "  paced 400/s: API p50 {:.2} ms with 10 subscriptions vs {:.2} ms with none ({:.2}x, target <= 1.25x); p99 {:.2} vs {:.2} ms; delivery {}",
        p(&busy.api_ms, 0.5),
        p(&quiet.api_ms, 0.5),
        p(&busy.api_ms, 0.5) / p(&quiet.api_ms, 0.5),
        p(&busy.api_ms, 0.99),
        p(&quiet.api_ms, 0.99),
        if kept_pace {
            "kept pace"
        } else {
            "fell behind"
        }
    );
    println!(
        "  peak RSS of the paced 10-subscription scenario's process (server, load generator and receivers): {:.1} MB (target < 60 MB for the server)",
        busy.peak_rss_kb as f64 / 1024.0
    );
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
            let report = end_to_end(
                &Store::Sqlite,
                events,
                receivers,
                Load::Closed { concurrency },
            )
            .await;
            print_report(
                &format!(
                    "end to end (SQLite, {receivers} receiver(s), {concurrency} API requests in flight)"
                ),
                &report,
                events,
            );
        }
        Command::Suite {
            events,
            concurrency,
            postgres,
            paced_seconds,
        } => suite(events, concurrency, postgres, paced_seconds).await,
        Command::Scenario {
            postgres,
            events,
            receivers,
            concurrency,
            per_second,
        } => {
            let store = postgres.map_or(Store::Sqlite, Store::Postgres);
            let load = match concurrency {
                Some(concurrency) => Load::Closed { concurrency },
                None => Load::Paced { per_second },
            };
            let report = end_to_end(&store, events, receivers, load).await;
            println!("REPORT {}", serde_json::to_string(&report).unwrap());
        }
    }
}
