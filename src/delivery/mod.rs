//! The embedded delivery engine.
//!
//! Emission writes one outbox row ([`crate::outbound::emit`]). One dispatcher task per
//! engine, woken the moment such a transaction commits, fans the new messages out
//! (`fanout.rs`: deliveries with per-subscription sequence numbers, leased to this
//! engine) and sends them straight from memory: no re-read of what it just wrote. Each
//! send runs as its own task: sign, POST, classify; outcomes go to a recorder task that
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
//! The statements on the webhook tables live in `outbound::store`; these modules decide
//! what to run. Every time decision reads [`EngineConfig::clock`], so a test can move
//! time forward instead of waiting for a retry or a lease.

mod backend;
mod claim;
mod fanout;
mod lanes;
mod record;
mod send;

pub use backend::EmbeddedBackend;
pub use claim::json_rows;
pub use record::Attempt;
pub use send::{Envelope, FailureKind, HttpSender, OutboxMessage, guarded_client};

use crate::config::RetrySchedule;
use crate::db::Db;
use crate::ids::SubscriptionId;
use crate::outbound::outbox::{OUTBOX_SIGNAL, REQUEUE_SIGNAL};
use crate::tasks::Tasks;
use crate::time::Clock;
use lanes::{Lanes, Slot};
use record::Outcome;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

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
    let outcome = sender.deliver(claimed).await;
    let attempt = outcome.attempt.clone();
    record::write(db, config, std::slice::from_ref(&outcome)).await?;
    db.commit_signal(REQUEUE_SIGNAL).notify_one(); // a pause it caused must be seen
    Ok(attempt)
}

/// Starts an engine in `tasks`: its dispatcher (fan-out, claims, sends, recording) and its
/// hourly upkeep. Each engine gets a name of its own for its leases, so several may run
/// on one PostgreSQL database (or, in tests, in one process). Stopping `tasks` stops
/// claiming, lets in-flight deliveries finish (up to the attempt timeout plus a little),
/// records their outcomes, and releases what was not finished so it is due again at the
/// next start.
pub fn start(
    tasks: &mut Tasks,
    db: &Db,
    config: &EngineConfig,
    sender: &HttpSender,
    retention_days: i64,
) {
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
            let (db, config, sender) = (db.clone(), config.clone(), sender.clone());
            tasks.spawn(move |stop| dispatch(db, config, sender, stop, lock == WorkerLock::First));
        }
    }
    let (db, clock) = (db.clone(), config.clock.clone());
    tasks.spawn(move |stop| maintain(db, retention_days, clock, stop));
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

/// What the recorder tells the dispatcher.
enum Recorded {
    /// It disabled subscriptions: drop what is held for them.
    Paused,
    /// It scheduled a retry due at this time (Unix ms).
    RetryAt(i64),
    /// It wrote a batch after the dispatcher asked (`wake_after_write`): leases of
    /// finished sends are gone, so an ordered lane waiting behind its own last send can
    /// claim on.
    Written,
}

/// A send that finished: its slot, whether the endpoint failed to answer, and whether
/// it was delivered.
type Finished = (Slot, bool, bool);

async fn dispatch(
    db: Db,
    config: EngineConfig,
    sender: HttpSender,
    mut stop: watch::Receiver<bool>,
    first: bool,
) {
    if first
        && db.sqlite_path().is_some()
        && let Err(err) = claim::release_all(&db).await
    {
        tracing::warn!(error = %err, "could not release the leases of a previous run; they come back when they end");
    }
    let outbox = db.commit_signal(OUTBOX_SIGNAL);
    let requeue = db.commit_signal(REQUEUE_SIGNAL);
    let (outcomes, outcomes_rx) = mpsc::channel::<Outcome>(4096);
    let (news, mut news_rx) = mpsc::unbounded_channel::<Recorded>();
    // Raised before an ordered lane claims: its lowest pending delivery may be its own
    // last send, not recorded yet; the recorder then says when it wrote.
    let wake_after_write = Arc::new(AtomicBool::new(false));
    let recorder = tokio::spawn(record::run(
        db.clone(),
        config.clone(),
        outcomes_rx,
        news,
        wake_after_write.clone(),
    ));
    let (finished, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
    let mut lanes = Lanes::new(config.global_concurrency, config.endpoint_concurrency);
    let mut enabled: Vec<SubscriptionId> = Vec::new();
    let mut known: Vec<fanout::Target> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut sweep_at = Instant::now();
    // A test moving the clock makes retries and leases due: look at once.
    let mut clock_moved = config.clock.watch();
    let mut refresh = true;
    // When the next fan-out batch runs (`None`: nothing known to hand off).
    let mut fan_out_at = Some(Instant::now());
    let mut last_fan_out = Instant::now();
    let mut look_again_wait = LOOK_AGAIN_FIRST;

    loop {
        if *stop.borrow() {
            break;
        }
        if refresh {
            refresh = false;
            match fanout::enabled_targets(db.pool()).await {
                Ok(targets) => {
                    apply_targets(&db, &config, &mut lanes, &mut enabled, &mut known, targets).await
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading subscriptions failed; will retry");
                    refresh = true;
                }
            }
        }
        if fan_out_at.is_some_and(|at| at <= Instant::now()) {
            fan_out_at = None;
            last_fan_out = Instant::now();
            let mut look_again = false;
            loop {
                match fanout::run_batch(&db, &config, &|s| lanes.room(s)).await {
                    Ok(batch) => {
                        let more = batch.messages >= fanout::BATCH as usize;
                        look_again = batch.look_again;
                        if let Some(targets) = batch.targets {
                            apply_targets(
                                &db,
                                &config,
                                &mut lanes,
                                &mut enabled,
                                &mut known,
                                targets,
                            )
                            .await;
                        }
                        for subscription in &batch.overflowed {
                            lanes.mark_backlog(subscription);
                        }
                        for delivery in batch.leased {
                            lanes.push(delivery);
                        }
                        if !more {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "fanning out outbox messages failed; will retry");
                        break;
                    }
                }
            }
            if look_again {
                fan_out_at = Some(Instant::now() + look_again_wait);
                look_again_wait = (look_again_wait * 2).min(LOOK_AGAIN_MAX);
            } else {
                look_again_wait = LOOK_AGAIN_FIRST;
            }
        }
        let sweep = Instant::now() >= sweep_at;
        if sweep {
            sweep_at = Instant::now() + config.poll_interval;
        }
        let wants = lanes.wants(&enabled, sweep);
        if wants.iter().any(|w| w.ordered) {
            wake_after_write.store(true, Ordering::SeqCst);
        }
        if !wants.is_empty() {
            match claim::claim(&db, &config, &wants).await {
                Ok(claims) => {
                    for want in &wants {
                        let got = claims
                            .claimed
                            .iter()
                            .filter(|c| c.subscription_id == want.subscription)
                            .count();
                        lanes.claimed(&want.subscription, want.count, got);
                    }
                    for subscription in &claims.behind_own_lease {
                        lanes.mark_backlog(subscription);
                    }
                    for delivery in claims.claimed {
                        lanes.push(delivery);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "claiming deliveries failed; will retry"),
            }
        }
        if !enabled.is_empty() {
            enabled.rotate_left(1); // no subscription is always served last
        }
        let latest_start =
            config.clock.now_ms() + (config.timeout + LEASE_MARGIN).as_millis() as i64;
        while let Some((delivery, slot)) = lanes.next_ready(&enabled) {
            if delivery.lease_until.is_some_and(|end| end < latest_start) {
                // Held in memory too long: its lease may end mid-attempt, when another
                // engine could claim it. Let the lease run out; a claim takes it then.
                // An ordered lane lets go of the rest too: they must not overtake it.
                lanes.cancel(&slot);
                lanes.mark_backlog(&slot.subscription);
                if lanes.is_ordered(&slot.subscription) {
                    let rest = lanes.drain(&slot.subscription);
                    release_or_warn(&db, &config, &rest).await;
                }
                continue;
            }
            let sender = sender.clone();
            let outcomes = outcomes.clone();
            let finished = finished.clone();
            tasks.spawn(async move {
                let outcome = sender.deliver(delivery).await;
                let unresponsive = outcome
                    .attempt
                    .failure
                    .is_some_and(FailureKind::is_unresponsive);
                let delivered = outcome.attempt.delivered();
                let _ = outcomes.send(outcome).await;
                let _ = finished.send((slot, unresponsive, delivered));
            });
        }
        while tasks.try_join_next().is_some() {}

        tokio::select! {
            _ = outbox.notified() => {
                soonest(&mut fan_out_at, Instant::now().max(last_fan_out + FAN_OUT_INTERVAL));
            }
            _ = tokio::time::sleep_until(fan_out_at.unwrap_or(sweep_at)), if fan_out_at.is_some() => {}
            _ = requeue.notified() => {
                refresh = true;
                sweep_at = Instant::now();
            }
            Some(news) = news_rx.recv() => match news {
                Recorded::Paused => refresh = true,
                Recorded::RetryAt(due) => {
                    let wait = Duration::from_millis(due.saturating_sub(config.clock.now_ms()).max(0) as u64);
                    sweep_at = sweep_at.min(Instant::now() + wait);
                }
                Recorded::Written => {}
            },
            Some(first) = finished_rx.recv() => {
                let mut next = Some(first);
                while let Some((slot, unresponsive, delivered)) = next {
                    lanes.finish(&slot, unresponsive);
                    if !delivered && lanes.is_ordered(&slot.subscription) {
                        // Nothing may overtake the delivery now waiting for its retry.
                        let held = lanes.drain(&slot.subscription);
                        release_or_warn(&db, &config, &held).await;
                    }
                    next = finished_rx.try_recv().ok();
                }
            }
            _ = tokio::time::sleep_until(sweep_at) => {
                // Other processes' commits on a shared PostgreSQL wake nobody here.
                soonest(&mut fan_out_at, Instant::now());
            }
            _ = clock_moved.changed() => {
                soonest(&mut fan_out_at, Instant::now());
                sweep_at = Instant::now();
            }
            _ = stop.changed() => {}
        }
    }

    // Graceful stop: give in-flight deliveries their timeout to finish.
    let grace = config.timeout + Duration::from_secs(2);
    let finished =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tasks.abort_all();
    }
    drop(outcomes);
    let _ = recorder.await;
    // What was held in memory or still in flight is leased to this engine: release it.
    if let Err(err) = claim::release_unfinished(&db, &config.instance).await {
        tracing::warn!(error = %err, "could not release unfinished claims; they come back when their lease ends");
    }
}

/// Gives back this engine's leases on deliveries it will not send now.
async fn release_or_warn(db: &Db, config: &EngineConfig, ids: &[crate::ids::DeliveryId]) {
    if let Err(err) = claim::release(db, &config.instance, ids).await {
        tracing::warn!(error = %err, "could not release held deliveries; they come back when their lease ends");
    }
}

/// Room kept between a lease's end and the latest time an attempt may start under it.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// At most one fan-out batch starts per interval: under load the messages of several
/// commits go out in one batch (one write transaction) instead of one batch each.
const FAN_OUT_INTERVAL: Duration = Duration::from_millis(1);
/// PostgreSQL: how soon a batch that could not take every committed message (held back
/// by an open transaction, or another instance leading) looks again, doubling up to the
/// longest wait while that lasts.
const LOOK_AGAIN_FIRST: Duration = Duration::from_millis(1);
const LOOK_AGAIN_MAX: Duration = Duration::from_millis(100);

/// Moves `slot` to `at` if that is sooner (or it was unset).
fn soonest(slot: &mut Option<Instant>, at: Instant) {
    *slot = Some(slot.map_or(at, |current| current.min(at)));
}

/// Brings the dispatcher's view of the enabled subscriptions up to date: drops (and
/// releases) what is held for subscriptions no longer enabled, and sends what is held for
/// the others with their current URL, payload mode and secrets. Every fan-out batch
/// reports the targets it read; when nothing changed (the usual case) this does nothing,
/// so the delivery loop does not rewrite every held delivery once per batch.
async fn apply_targets(
    db: &Db,
    config: &EngineConfig,
    lanes: &mut Lanes,
    enabled: &mut Vec<SubscriptionId>,
    known: &mut Vec<fanout::Target>,
    targets: Vec<fanout::Target>,
) {
    if *known == targets {
        return;
    }
    known.clone_from(&targets);
    let ids: Vec<SubscriptionId> = targets.iter().map(|t| t.id.clone()).collect();
    let dropped = lanes.retain_enabled(&ids);
    release_or_warn(db, config, &dropped).await;
    for target in targets {
        lanes.set_ordered(&target.id, target.ordered != 0);
        lanes.refresh(&target.id, |delivery| {
            delivery.url.clone_from(&target.url);
            delivery.payload_mode.clone_from(&target.payload_mode);
            delivery.secret_enc.clone_from(&target.secret_enc);
            delivery
                .previous_secret_enc
                .clone_from(&target.previous_secret_enc);
            delivery.previous_secret_until = target.previous_secret_until;
        });
    }
    if *enabled != ids {
        let mut ids = ids;
        // Keep the rotation's place for subscriptions that stay.
        ids.sort_by_key(|id| enabled.iter().position(|e| e == id).unwrap_or(usize::MAX));
        *enabled = ids;
    }
}

/// Hourly upkeep: the payload retention purge.
async fn maintain(db: Db, retention_days: i64, clock: Clock, mut stop: watch::Receiver<bool>) {
    loop {
        match crate::outbound::retention::purge_at(&db, retention_days, clock.now_ms()).await {
            Ok(purged) if purged.payloads + purged.response_bodies > 0 => {
                tracing::info!(
                    payloads = purged.payloads,
                    response_bodies = purged.response_bodies,
                    "cleared expired webhook payloads"
                );
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "webhook payload retention failed; will retry")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
