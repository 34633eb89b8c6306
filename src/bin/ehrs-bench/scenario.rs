//! One end-to-end scenario on a fresh server and database, and its report.

use crate::load::{drive, paced, summary};
use crate::receiver::{RequestTimes, start_receiver};
use ehrs::application::Application;
use ehrs::config::Settings;
use ehrs::outbound::PayloadMode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a scenario's server keeps its data.
#[derive(Clone)]
pub(crate) enum Store {
    Sqlite,
    /// A PostgreSQL server: a fresh database is made on it and dropped after.
    Postgres(String),
}

impl Store {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
        }
    }
}

/// How the API is loaded: a fixed number of requests in flight, or an open-loop rate.
#[derive(Clone, Copy)]
pub(crate) enum Load {
    Closed { concurrency: usize },
    Paced { per_second: u32 },
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub(crate) accepted_per_s: f64,
    pub(crate) api_ms: Vec<f64>,
    pub(crate) delivered: usize,
    pub(crate) expected: usize,
    pub(crate) deliveries_per_s: f64,
    pub(crate) commit_to_receiver_ms: Vec<f64>,
    /// The commit happens after its request was sent and before its answer came back,
    /// so these bound commit-to-receiver to the microsecond: the API answer to the
    /// arrival (a lower bound; negative when the delivery beat the answer) and the
    /// request to the arrival (an upper bound).
    pub(crate) answer_to_receiver_ms: Vec<f64>,
    pub(crate) request_to_receiver_ms: Vec<f64>,
    /// Last delivery after the last API answer.
    pub(crate) drain: Duration,
    pub(crate) peak_rss_kb: u64,
    /// SQLite: the size of the write-ahead log when the load ended (it grows while
    /// checkpoints cannot keep up).
    pub(crate) wal_bytes: Option<u64>,
    /// SQLite: commits made and the write transactions they made durable.
    pub(crate) group_commit: Option<(f64, f64)>,
}

/// The writer's counters from `/metrics`: (commits, transactions committed).
pub(crate) fn sqlite_commits(state: &ehrs::state::AppState) -> (f64, f64) {
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
pub(crate) fn peak_rss_kb() -> u64 {
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
pub(crate) async fn isolated(store: &Store, events: usize, receivers: usize, load: Load) -> Report {
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

pub(crate) async fn postgres_database(admin_url: &str, create: bool) -> String {
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

/// A fresh server on a fresh database (a scratch PostgreSQL database, or a temporary
/// SQLite data dir), serving on 127.0.0.1, with its workers running and an admin signed in.
pub(crate) struct Server {
    pub(crate) app: Application,
    workers: ehrs::tasks::Tasks,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
    dir: std::path::PathBuf,
    store: Store,
}

impl Server {
    pub(crate) async fn start(store: &Store) -> Server {
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
        if app.state.db.sqlite_key().is_some() {
            eprintln!("(the SQLite database is encrypted: EHRS_DB_PASSPHRASE is set)");
        }
        let workers = app.start_workers();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(ehrs::server::serve(
            listener,
            app.router(),
            ehrs::application::server_limits(&app.state.settings),
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
        Server {
            app,
            workers,
            client,
            base,
            token,
            dir,
            store: store.clone(),
        }
    }

    /// Stops the workers, closes the database and removes it.
    pub(crate) async fn stop(self) {
        self.workers.stop().await;
        self.app.state.db.close().await;
        if let Store::Postgres(admin_url) = &self.store {
            postgres_database(admin_url, false).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs one scenario on a fresh server: `events` camp creations through the API with
/// `receivers` subscriptions in `payload` mode (each a local receiver), waiting for every
/// delivery.
pub(crate) async fn end_to_end(
    store: &Store,
    events: usize,
    receivers: usize,
    load: Load,
    payload: PayloadMode,
) -> Report {
    let server = Server::start(store).await;
    let (client, base, token, state) = (
        server.client.clone(),
        server.base.clone(),
        server.token.clone(),
        server.app.state.clone(),
    );
    let mut all_stats = Vec::new();
    for _ in 0..receivers {
        let (url, stats) = start_receiver().await;
        let response = client
            .post(format!("{base}/api/v1/webhooks/subscriptions"))
            .bearer_auth(&token)
            .json(&json!({"url": url, "payload": payload.as_str()}))
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
    server.stop().await;
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
pub(crate) fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

pub(crate) fn print_report(title: &str, report: &Report, events: usize) {
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
