//! Records attempt outcomes in batches: one transaction writes many attempts, delivery
//! states and subscription failure counters, so the single SQLite writer is not taken
//! once per delivery. Auto-pause happens here, with a conditional UPDATE that only one
//! writer can win, so a subscription is paused exactly once however many failures race.

use super::EngineConfig;
use super::claim::Claimed;
use crate::db::{Db, Tx};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::store::{self, DeliveryStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What one HTTP attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// Why there was no HTTP answer, when there was none.
    pub failure: Option<super::send::FailureKind>,
    pub retry_after: Option<Duration>,
    pub attempted_at: i64,
    pub duration_ms: i64,
}

#[derive(Debug)]
pub struct Outcome {
    pub delivery: Claimed,
    pub attempt: Attempt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// 410 Gone: the receiver asks us to stop; the subscription is disabled.
    Gone,
    Failed,
}

impl Attempt {
    /// The endpoint took it (2xx).
    pub fn delivered(&self) -> bool {
        self.verdict() == Verdict::Delivered
    }

    fn verdict(&self) -> Verdict {
        match self.status_code {
            Some(code) if (200..300).contains(&code) => Verdict::Delivered,
            Some(410) => Verdict::Gone,
            _ => Verdict::Failed,
        }
    }
}

const BATCH: usize = 256;
/// At most one recording transaction starts per interval: under load outcomes pile up
/// into bigger batches instead of taking the single SQLite writer away from API writes
/// more often. Recording is bookkeeping: a few milliseconds later changes nothing a
/// receiver sees.
const RECORD_INTERVAL: Duration = Duration::from_millis(10);

/// Runs until every sender has dropped its end of the channel. `news` tells the
/// dispatcher which subscriptions a batch disabled (it drops what it holds for them),
/// when the retries it scheduled come due, and, when the dispatcher raised
/// `wake_after_write`, that a batch was written.
pub async fn run(
    db: Db,
    config: EngineConfig,
    mut outcomes: mpsc::Receiver<Outcome>,
    news: mpsc::UnboundedSender<super::Recorded>,
    wake_after_write: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while outcomes.recv_many(&mut batch, BATCH).await > 0 {
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        loop {
            match write(&db, &config, &batch).await {
                Ok(written) => {
                    if !written.paused.is_empty() {
                        let _ = news.send(super::Recorded::Paused);
                    }
                    if let Some(due) = written.next_retry {
                        let _ = news.send(super::Recorded::RetryAt(due));
                    }
                    if wake_after_write.swap(false, Ordering::SeqCst) {
                        let _ = news.send(super::Recorded::Written);
                    }
                    break;
                }
                Err(err) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %err, "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(err) => {
                    // The deliveries stay leased until their lease ends and are then sent
                    // again (same webhook-id): at least once, never lost.
                    tracing::error!(error = %err, count = batch.len(), "could not record delivery outcomes");
                    break;
                }
            }
        }
        batch.clear();
        tokio::time::sleep_until(started + RECORD_INTERVAL).await;
    }
}

/// What recording a batch changed that the dispatcher must know.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Subscriptions the batch disabled.
    pub paused: Vec<SubscriptionId>,
    /// The earliest retry it scheduled.
    pub next_retry: Option<i64>,
}

/// Records a batch in one transaction.
pub(super) async fn write(
    db: &Db,
    config: &EngineConfig,
    batch: &[Outcome],
) -> Result<Written, sqlx::Error> {
    let mut next_retry: Option<i64> = None;
    let mut tx = db.begin().await?;
    // A subscription deleted while its delivery was in flight took the delivery row with
    // it: that outcome has nothing left to record.
    let ids: Vec<&DeliveryId> = batch.iter().map(|o| &o.delivery.delivery_id).collect();
    let existing = store::existing_deliveries(&mut tx, &ids).await?;
    let batch: Vec<&Outcome> = batch
        .iter()
        .filter(|o| existing.contains(&o.delivery.delivery_id))
        .collect();
    let attempts: Vec<store::NewAttempt> = batch.iter().copied().map(new_attempt).collect();
    store::insert_attempts(&mut tx, &attempts).await?;
    // Per subscription, in order: failures since the last success, and whether one succeeded.
    let mut counters: HashMap<&SubscriptionId, (i64, bool)> = HashMap::new();
    let mut gone = Vec::new();
    let mut delivered: HashMap<u16, Vec<&DeliveryId>> = HashMap::new();
    for &outcome in &batch {
        let verdict = outcome.attempt.verdict();
        let counter = counters
            .entry(&outcome.delivery.subscription_id)
            .or_default();
        match verdict {
            Verdict::Delivered => {
                *counter = (0, true);
                let code = outcome.attempt.status_code.unwrap_or(200);
                delivered
                    .entry(code)
                    .or_default()
                    .push(&outcome.delivery.delivery_id);
            }
            Verdict::Failed | Verdict::Gone => {
                counter.0 += 1;
                if let Some(due) = update_failed_delivery(&mut tx, config, outcome, verdict).await?
                {
                    next_retry = Some(next_retry.map_or(due, |t: i64| t.min(due)));
                }
            }
        }
        if verdict == Verdict::Gone {
            gone.push(&outcome.delivery.subscription_id);
        }
    }
    let now = config.clock.now_ms();
    for (code, ids) in delivered {
        store::mark_delivered(&mut tx, &ids, code, now).await?;
    }
    let mut paused = Vec::new();
    // Subscription rows are locked in id order, as `emit` locks them: no deadlock.
    let mut counters: Vec<_> = counters.into_iter().collect();
    counters.sort_by(|a, b| a.0.cmp(b.0));
    for (subscription, (failures, succeeded)) in counters {
        store::update_counters(&mut tx, subscription, failures, succeeded, now).await?;
        if failures > 0 {
            let reason = format!("{} consecutive failed deliveries", config.autopause_after);
            if pause(
                &mut tx,
                subscription,
                &reason,
                Some(config.autopause_after),
                now,
            )
            .await?
            {
                paused.push(subscription);
            }
        }
    }
    for subscription in gone {
        if pause(
            &mut tx,
            subscription,
            "the endpoint answered 410 Gone",
            None,
            now,
        )
        .await?
        {
            paused.push(subscription);
        }
    }
    tx.commit().await?;
    for subscription in &paused {
        tracing::warn!(subscription = %subscription, "webhook subscription disabled automatically");
        metrics::counter!("ehrs_subscriptions_paused_total").increment(1);
    }
    for outcome in batch {
        observe(outcome);
    }
    Ok(Written {
        paused: paused.into_iter().cloned().collect(),
        next_retry,
    })
}

fn new_attempt(outcome: &Outcome) -> store::NewAttempt<'_> {
    let attempt = &outcome.attempt;
    store::NewAttempt {
        delivery_id: &outcome.delivery.delivery_id,
        message_id: &outcome.delivery.message_id,
        subscription_id: &outcome.delivery.subscription_id,
        attempted_at: attempt.attempted_at,
        status_code: attempt.status_code,
        response_body: attempt.response_body.as_deref(),
        duration_ms: attempt.duration_ms,
        error: attempt.error.as_deref(),
    }
}

/// Records a failed attempt; returns when the retry is due, if one is scheduled.
async fn update_failed_delivery(
    tx: &mut Tx,
    config: &EngineConfig,
    outcome: &Outcome,
    verdict: Verdict,
) -> Result<Option<i64>, sqlx::Error> {
    let attempt = &outcome.attempt;
    let attempt_number = outcome.delivery.attempts + 1;
    // A failed delivery with a retry ahead stays pending (claimable when due).
    let (status, next_attempt_at) = match verdict {
        Verdict::Failed => match retry_delay(config, attempt_number, attempt.retry_after) {
            Some(delay) => (
                DeliveryStatus::Pending,
                attempt.attempted_at + delay.as_millis() as i64,
            ),
            None => (DeliveryStatus::Exhausted, attempt.attempted_at),
        },
        Verdict::Gone | Verdict::Delivered => (DeliveryStatus::Exhausted, attempt.attempted_at),
    };
    let error = match (&attempt.error, attempt.status_code) {
        (Some(error), _) => Some(error.clone()),
        (None, Some(code)) => Some(format!("HTTP {code}")),
        (None, None) => None,
    };
    let failure = store::Failure {
        delivery_id: &outcome.delivery.delivery_id,
        status,
        next_attempt_at,
        last_status: attempt.status_code,
        last_error: error,
    };
    store::mark_failed(tx, failure, config.clock.now_ms()).await?;
    Ok((status == DeliveryStatus::Pending).then_some(next_attempt_at))
}

/// The wait before the next attempt after attempt number `attempt_number` failed, or
/// `None` when the schedule is exhausted. A receiver's `Retry-After` (429/503) wins over
/// the schedule; the schedule gets ±10 % jitter so retries of many messages spread out.
fn retry_delay(
    config: &EngineConfig,
    attempt_number: i64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let scheduled = config.schedule.delay(attempt_number as usize)?;
    if let Some(asked) = retry_after {
        return Some(asked);
    }
    let jitter = rand::random_range(0.9..1.1);
    Some(scheduled.mul_f64(jitter))
}

/// Disables an enabled subscription when its failure streak reached `threshold` (or
/// unconditionally with `None`). True only for the one writer that made the change.
async fn pause(
    tx: &mut Tx,
    subscription: &SubscriptionId,
    reason: &str,
    threshold: Option<i64>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let changed = store::pause(tx, subscription, reason, threshold, now).await?;
    if changed {
        let details = serde_json::json!({ "reason": reason });
        crate::outbound::audit::record(
            tx,
            None,
            "system",
            "subscription.auto_paused",
            Some(subscription),
            &details,
        )
        .await?;
    }
    Ok(changed)
}

fn observe(outcome: &Outcome) {
    let verdict = match outcome.attempt.verdict() {
        Verdict::Delivered => "delivered",
        Verdict::Gone => "gone",
        Verdict::Failed => "failed",
    };
    metrics::counter!("ehrs_delivery_attempts_total", "outcome" => verdict).increment(1);
    metrics::histogram!("ehrs_delivery_attempt_seconds")
        .record(outcome.attempt.duration_ms as f64 / 1000.0);
    if verdict == "delivered" {
        let end_to_end = (outcome.attempt.attempted_at + outcome.attempt.duration_ms
            - outcome.delivery.created_at.millis())
        .max(0);
        metrics::histogram!("ehrs_delivery_latency_seconds").record(end_to_end as f64 / 1000.0);
    }
}
