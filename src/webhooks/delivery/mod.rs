//! The embedded delivery engine.
//!
//! One dispatcher task per process claims due deliveries (a lease in `locked_until`, so a
//! crashed process's claims come back; `FOR UPDATE SKIP LOCKED` on PostgreSQL so several
//! processes share the work), and runs each one as its own task: sign, POST, classify.
//! Outcomes go to a recorder task that writes attempts, statuses, retries and failure
//! counters in batches. Concurrency is bounded globally and per subscription, and the
//! claim itself takes at most a subscription's free slots, so a stalled endpoint only
//! ever holds its own slots, never the others'.
//!
//! The dispatcher wakes the moment a transaction that emitted an event commits
//! ([`crate::db::Tx::commit`]), when a slot frees, when the next retry is due, and in any
//! case once a second (other processes' events on a shared PostgreSQL).

mod claim;
mod record;
mod send;

pub use claim::json_rows;
pub use record::Attempt;
pub use send::{Envelope, HttpSender, OutboxMessage, guarded_client};

use crate::app::AppState;
use crate::config::RetrySchedule;
use crate::db::{Db, now_ms};
use crate::ids::SubscriptionId;
use record::Outcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

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
}

impl EngineConfig {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        EngineConfig {
            schedule: settings.webhook_retry_schedule.clone(),
            timeout: settings.webhook_timeout,
            autopause_after: settings.webhook_autopause_after.max(1),
            global_concurrency: settings.webhook_concurrency.max(1),
            endpoint_concurrency: settings.webhook_endpoint_concurrency.max(1),
            poll_interval: Duration::from_secs(1),
            instance: format!("ehrs-{}", ulid::Ulid::generate().to_string().to_lowercase()),
        }
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
    Ok(attempt)
}

/// A running engine; [`DeliveryEngine::stop`] shuts it down gracefully.
pub struct DeliveryEngine {
    stop: watch::Sender<bool>,
    dispatcher: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
}

/// Slots in use, globally and per subscription.
#[derive(Default)]
struct InFlight {
    total: usize,
    per_subscription: HashMap<SubscriptionId, usize>,
}

impl DeliveryEngine {
    pub fn start(state: &AppState) -> DeliveryEngine {
        let config = EngineConfig::from_settings(&state.settings);
        let sender = HttpSender::new(state, config.timeout);
        let (stop, stop_rx) = watch::channel(false);
        let dispatcher = if state.db.lock_workers() {
            tokio::spawn(dispatch(state.db.clone(), config, sender, stop_rx.clone()))
        } else {
            tracing::error!(
                "another ehrs process is delivering webhooks for this SQLite database; this one will not \
                 (run one process per SQLite file, or use PostgreSQL for several)"
            );
            tokio::spawn(async {})
        };
        let maintenance = tokio::spawn(maintain(
            state.db.clone(),
            state.settings.webhook_retention_days,
            stop_rx,
        ));
        DeliveryEngine {
            stop,
            dispatcher,
            maintenance,
        }
    }

    /// Stops claiming, lets in-flight deliveries finish (up to the attempt timeout plus a
    /// little), records their outcomes, and releases what was not finished so it is due
    /// again at the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.dispatcher.await;
        let _ = self.maintenance.await;
    }
}

async fn dispatch(
    db: Db,
    config: EngineConfig,
    sender: HttpSender,
    mut stop: watch::Receiver<bool>,
) {
    let committed = db.committed_signal();
    let freed = Arc::new(Notify::new());
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    let endpoint_slots: Arc<Mutex<HashMap<SubscriptionId, Arc<Semaphore>>>> = Arc::default();
    let (outcomes, outcomes_rx) = mpsc::channel::<Outcome>(4096);
    let recorder = tokio::spawn(record::run(db.clone(), config.clone(), outcomes_rx));
    let mut tasks = JoinSet::new();
    let mut rotation = 0usize;

    loop {
        if *stop.borrow() {
            break;
        }
        let wants = match plan(&db, &in_flight, &config, &mut rotation).await {
            Ok(wants) => wants,
            Err(err) => {
                tracing::warn!(error = %err, "reading subscriptions failed; will retry");
                Vec::new()
            }
        };
        let requested: usize = wants.iter().map(|(_, n)| n).sum();
        let mut more_waiting = false;
        if requested > 0 {
            match claim::claim(&db, &config, &wants).await {
                Ok(batch) => {
                    more_waiting = batch.len() == requested;
                    for delivery in batch {
                        let slot = endpoint_slot(
                            &endpoint_slots,
                            &delivery.subscription_id,
                            config.endpoint_concurrency,
                        );
                        take_slot(&in_flight, &delivery.subscription_id);
                        let sender = sender.clone();
                        let outcomes = outcomes.clone();
                        let in_flight = in_flight.clone();
                        let freed = freed.clone();
                        tasks.spawn(async move {
                            let subscription = delivery.subscription_id.clone();
                            let _permit = slot.acquire_owned().await;
                            let outcome = sender.deliver(delivery).await;
                            let _ = outcomes.send(outcome).await;
                            release_slot(&in_flight, &subscription);
                            freed.notify_one();
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "claiming deliveries failed; will retry");
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        if more_waiting {
            continue;
        }
        let wait = next_wake(&db, &config).await;
        tokio::select! {
            _ = committed.notified() => {}
            _ = freed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
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
    if let Err(err) = claim::release_unfinished(&db, &config.instance).await {
        tracing::warn!(error = %err, "could not release unfinished claims; they come back when their lease ends");
    }
}

/// Hourly upkeep: the payload retention purge.
async fn maintain(db: Db, retention_days: i64, mut stop: watch::Receiver<bool>) {
    loop {
        match crate::webhooks::retention::purge(&db, retention_days).await {
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

/// What to claim now: for each enabled subscription with free slots, how many (within
/// the global slots left). The starting subscription rotates so none is always last.
async fn plan(
    db: &Db,
    in_flight: &Mutex<InFlight>,
    config: &EngineConfig,
    rotation: &mut usize,
) -> Result<Vec<(SubscriptionId, usize)>, sqlx::Error> {
    let mut subscriptions = claim::enabled_subscriptions(db).await?;
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    *rotation = rotation.wrapping_add(1);
    let start = *rotation % subscriptions.len();
    subscriptions.rotate_left(start);
    let in_flight = in_flight.lock().unwrap();
    let mut free = config.global_concurrency.saturating_sub(in_flight.total);
    let mut wants = Vec::new();
    for subscription in subscriptions {
        if free == 0 {
            break;
        }
        let busy = in_flight
            .per_subscription
            .get(&subscription)
            .copied()
            .unwrap_or(0);
        let take = config.endpoint_concurrency.saturating_sub(busy).min(free);
        if take > 0 {
            free -= take;
            wants.push((subscription, take));
        }
    }
    Ok(wants)
}

fn take_slot(in_flight: &Mutex<InFlight>, subscription: &SubscriptionId) {
    let mut in_flight = in_flight.lock().unwrap();
    in_flight.total += 1;
    *in_flight
        .per_subscription
        .entry(subscription.clone())
        .or_default() += 1;
}

fn release_slot(in_flight: &Mutex<InFlight>, subscription: &SubscriptionId) {
    let mut in_flight = in_flight.lock().unwrap();
    in_flight.total = in_flight.total.saturating_sub(1);
    if let Some(n) = in_flight.per_subscription.get_mut(subscription) {
        *n -= 1;
        if *n == 0 {
            in_flight.per_subscription.remove(subscription);
        }
    }
}

fn endpoint_slot(
    slots: &Mutex<HashMap<SubscriptionId, Arc<Semaphore>>>,
    subscription: &SubscriptionId,
    size: usize,
) -> Arc<Semaphore> {
    slots
        .lock()
        .unwrap()
        .entry(subscription.clone())
        .or_insert_with(|| Arc::new(Semaphore::new(size)))
        .clone()
}

/// How long to sleep: until the next retry is due, at most the poll interval. (New
/// events and freed slots wake the dispatcher earlier.)
async fn next_wake(db: &Db, config: &EngineConfig) -> Duration {
    match claim::next_due(db).await {
        Ok(Some(due)) => {
            let wait = due.saturating_sub(now_ms()).max(1) as u64;
            Duration::from_millis(wait).min(config.poll_interval)
        }
        _ => config.poll_interval,
    }
}
