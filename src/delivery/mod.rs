//! The embedded delivery engine.
//!
//! Emission writes one outbox row ([`crate::outbound::emit`]). One dispatcher task per
//! engine (`dispatch.rs`), woken the moment such a transaction commits, fans the new
//! messages out (`fanout.rs`: deliveries with per-subscription sequence numbers, leased
//! to this engine) and sends them straight from memory: no re-read of what it just wrote.
//! Each send runs as its own task: sign, POST, classify (`send.rs`, into the shared
//! `outbound::outcome::Outcome`); outcomes go to a recorder task that
//! writes attempts, statuses, retries and failure counters in batches that take a
//! bounded share of the writer (`record.rs`). Slots are per subscription with a shared
//! pool, and an endpoint that stops answering drops to one probing slot (`lanes.rs`), so
//! however many endpoints hang, a healthy one's deliveries leave at once.
//!
//! The database stays the durable log. Retries coming due, a backlog the dispatcher had
//! no room for, re-enabled or recovered subscriptions and a crashed engine's leases are
//! claimed from it (`claim.rs`), at once when an administrator's change asks for it,
//! when a retry is due, and in a sweep once a second; several engines on PostgreSQL
//! divide that work by leases with `FOR UPDATE SKIP LOCKED`, and one of them at a time
//! fans out (an advisory lock). On SQLite one process delivers for a file (a lock file
//! beside it), and at its start every lease left in the file is released.
//!
//! Before anything acts on a failure of the network, it is judged against the camp's
//! uplink (`uplink.rs`): when no endpoint is reachable at all, the link is down, and
//! deliveries wait for it instead of using up their retries and pausing their partners.
//!
//! The catch-up feed's pages are read and rendered here too (`feed.rs`), with the
//! sender's renderer and keys, so a page holds the bytes that were POSTed.
//!
//! The statements on the webhook tables live in `outbound::store` (and the health
//! counters in `outbound::health`); these modules decide what to run. They must not
//! touch clinical tables, nor anything of the Svix backend. Every time decision reads [`EngineConfig::clock`], so a test can move
//! time forward instead of waiting for a retry or a lease.

mod backend;
mod claim;
mod dispatch;
mod fanout;
mod feed;
mod heartbeat;
mod lanes;
mod record;
mod send;
mod uplink;

pub use backend::EmbeddedBackend;
pub use send::{Attempt, HttpSender, guarded_client};
pub use uplink::Uplink;

use crate::config::RetrySchedule;
use crate::db::Db;
use crate::outbound::outbox::REQUEUE_SIGNAL;
use crate::tasks::Tasks;
use crate::time::Clock;
use std::time::Duration;

/// Engine settings, taken from [`crate::config::Settings`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub schedule: RetrySchedule,
    pub timeout: Duration,
    pub autopause_after: i64,
    pub global_concurrency: usize,
    pub endpoint_concurrency: usize,
    /// Fallback poll interval.
    pub poll_interval: Duration,
    /// This engine's name in `locked_by`, so a graceful stop releases only its claims.
    pub instance: String,
    /// Every time decision of the engine reads this: due retries, leases, attempt times,
    /// failure and pause times.
    pub clock: Clock,
    /// Whether the camp's uplink is down (shared by the process's engines).
    pub uplink: Uplink,
    /// What `fhir` payloads are rendered with (the catch-up feed renders as the sender).
    pub fhir: crate::outbound::fhir::FhirSettings,
}

impl EngineConfig {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        EngineConfig {
            schedule: settings.webhook_retry_schedule.clone(),
            timeout: settings.webhook_timeout,
            autopause_after: settings.webhook_autopause_after.max(1),
            global_concurrency: settings.webhook_concurrency.max(1),
            endpoint_concurrency: settings.webhook_endpoint_concurrency.max(1),
            poll_interval: settings.webhook_sweep_interval,
            instance: EngineConfig::new_instance(),
            clock: settings.webhook_clock.clone(),
            uplink: Uplink::new(
                settings.uplink_probe.clone(),
                settings.uplink_probe_interval,
                settings.webhook_timeout,
                settings.webhook_clock.clone(),
            ),
            fhir: crate::outbound::fhir::FhirSettings::from_settings(settings),
        }
    }

    /// A fresh engine name for `locked_by`.
    fn new_instance() -> String {
        format!("ehrs-{}", ulid::Ulid::generate().to_string().to_lowercase())
    }

    /// How long a claim holds a delivery: long enough for one attempt with its timeout,
    /// short enough that a crashed process's deliveries come back soon.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// Sends one delivery now, outside the dispatcher (the admin test route), records the
/// attempt like any other, and returns it. The delivery must be held (locked) by the
/// caller so the dispatcher does not send it too.
pub async fn deliver_now(
    db: &Db,
    sender: &HttpSender,
    config: &EngineConfig,
    delivery: &crate::ids::DeliveryId,
) -> anyhow::Result<Attempt> {
    let claimed = claim::by_id(db, delivery)
        .await?
        .ok_or_else(|| anyhow::anyhow!("delivery {delivery} vanished before it was sent"))?;
    let sent = config.uplink.send(sender, claimed).await;
    let attempt = sent.attempt.clone();
    record::write(db, config, std::slice::from_ref(&sent)).await?;
    db.commit_signal(REQUEUE_SIGNAL).notify_one(); // a pause it caused must be seen
    Ok(attempt)
}

/// Starts an engine in `tasks`: its dispatcher (fan-out, claims, sends, recording). Each engine gets a name of its own for its leases, so several may run
/// on one PostgreSQL database (or, in tests, in one process). Stopping `tasks` stops
/// claiming, lets in-flight deliveries finish (up to the attempt timeout plus a little),
/// records their outcomes, and releases what was not finished so it is due again at the
/// next start.
pub fn start(tasks: &mut Tasks, db: &Db, config: &EngineConfig, sender: &HttpSender) {
    let config = EngineConfig {
        instance: EngineConfig::new_instance(),
        ..config.clone()
    };
    match lock_workers(db) {
        WorkerLock::Elsewhere => tracing::error!(
            "another ehrs process is delivering webhooks for this SQLite database; this one will not \
             (run one process per SQLite file, or use PostgreSQL for several)"
        ),
        lock => {
            uplink::start(tasks, &config.uplink, db, sender);
            let (db, config, sender) = (db.clone(), config.clone(), sender.clone());
            let (heartbeat_db, clock) = (db.clone(), config.clock.clone());
            tasks.spawn(move |stop| {
                dispatch::run(db, config, sender, stop, lock == WorkerLock::First)
            });
            tasks.spawn(move |stop| heartbeat::run(heartbeat_db, clock, stop));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerLock {
    /// This process just became the one delivering for the database (or it is
    /// PostgreSQL, where any number of processes share the work).
    First,
    /// Another engine of this process already holds it.
    Again,
    /// Another process holds it: this one must not deliver.
    Elsewhere,
}

/// SQLite files this process delivers for, with the open lock file of each.
static WORKER_LOCKS: std::sync::Mutex<Vec<(std::path::PathBuf, std::fs::File)>> =
    std::sync::Mutex::new(Vec::new());

/// SQLite: takes the lock that makes this process the one delivering for the database,
/// an exclusive lock on `<db file>.workers.lock`, released by the OS if the process dies.
fn lock_workers(db: &Db) -> WorkerLock {
    let Some(db_path) = db.sqlite_path() else {
        return WorkerLock::First;
    };
    let path = std::path::PathBuf::from(format!("{}.workers.lock", db_path.display()));
    let mut held = WORKER_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    if held.iter().any(|(p, _)| *p == path) {
        return WorkerLock::Again;
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(error = %err, path = %path.display(), "cannot open the worker lock file");
            return WorkerLock::Elsewhere;
        }
    };
    match file.try_lock() {
        Ok(()) => {
            held.push((path, file));
            WorkerLock::First
        }
        Err(_) => WorkerLock::Elsewhere,
    }
}
