//! Records attempt outcomes in batches: one transaction writes many attempts, delivery
//! states and subscription failure streaks, so the single SQLite writer is not taken
//! once per delivery. What each attempt leads to (retry, exhausted, pause) is read off
//! its [`Outcome`]; streaks and the auto-pause go through the mechanism both backends
//! share (`outbound::health`), which pauses a subscription exactly once however many
//! failures race.

use super::EngineConfig;
use super::send::Sent;
use crate::db::{Db, Tx};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::health::{self, Ledger, Streak};
use crate::outbound::outcome::Outcome;
use crate::outbound::store::{self, DeliveryStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the recorder tells the dispatcher.
pub(super) enum Recorded {
    /// It disabled subscriptions: drop what is held for them.
    Paused,
    /// It scheduled a retry due at this time (Unix ms).
    RetryAt(i64),
    /// It wrote a batch after the dispatcher asked (`wake_after_write`): leases of
    /// finished sends are gone, so an ordered lane waiting behind its own last send can
    /// claim on.
    Written,
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
    mut outcomes: mpsc::Receiver<Sent>,
    news: mpsc::UnboundedSender<Recorded>,
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
                        let _ = news.send(Recorded::Paused);
                    }
                    if let Some(due) = written.next_retry {
                        let _ = news.send(Recorded::RetryAt(due));
                    }
                    if wake_after_write.swap(false, Ordering::SeqCst) {
                        let _ = news.send(Recorded::Written);
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
    batch: &[Sent],
) -> Result<Written, sqlx::Error> {
    let mut next_retry: Option<i64> = None;
    let mut tx = db.begin().await?;
    // A subscription deleted while its delivery was in flight took the delivery row with
    // it: that outcome has nothing left to record.
    let ids: Vec<&DeliveryId> = batch.iter().map(|o| &o.delivery.delivery_id).collect();
    let existing = store::existing_deliveries(&mut tx, &ids).await?;
    let batch: Vec<&Sent> = batch
        .iter()
        .filter(|o| existing.contains(&o.delivery.delivery_id))
        .collect();
    let attempts: Vec<store::NewAttempt> = batch.iter().copied().map(new_attempt).collect();
    store::insert_attempts(&mut tx, &attempts).await?;
    let mut streaks: HashMap<&SubscriptionId, Streak> = HashMap::new();
    let mut gone = Vec::new();
    let mut delivered: HashMap<u16, Vec<&DeliveryId>> = HashMap::new();
    for &sent in &batch {
        let outcome = sent.attempt.outcome;
        let subscription = &sent.delivery.subscription_id;
        streaks.entry(subscription).or_default().add(outcome);
        if outcome.delivered() {
            let code = sent.attempt.status_code.unwrap_or(200);
            delivered
                .entry(code)
                .or_default()
                .push(&sent.delivery.delivery_id);
        } else if let Some(due) = update_failed_delivery(&mut tx, config, sent).await? {
            next_retry = Some(next_retry.map_or(due, |t: i64| t.min(due)));
        }
        if outcome.pauses_at_once() {
            gone.push(subscription);
        }
    }
    let now = config.clock.now_ms();
    for (code, ids) in delivered {
        store::mark_delivered(&mut tx, &ids, code, now).await?;
    }
    let mut paused = Vec::new();
    // Subscription rows are locked in id order, as the fan-out updates them: no deadlock.
    let mut streaks: Vec<_> = streaks.into_iter().collect();
    streaks.sort_by(|a, b| a.0.cmp(b.0));
    for (subscription, streak) in streaks {
        health::record(&mut tx, Ledger::Subscriptions, subscription, streak, now).await?;
        if streak.failures > 0 {
            let reason = format!("{} consecutive failed deliveries", config.autopause_after);
            let threshold = Some(config.autopause_after);
            if health::pause_once(
                &mut tx,
                Ledger::Subscriptions,
                subscription,
                &reason,
                threshold,
                now,
            )
            .await?
            .is_some()
            {
                paused.push((subscription, reason));
            }
        }
    }
    for subscription in gone {
        let reason = "the endpoint answered 410 Gone";
        if health::pause_once(
            &mut tx,
            Ledger::Subscriptions,
            subscription,
            reason,
            None,
            now,
        )
        .await?
        .is_some()
        {
            paused.push((subscription, reason.to_string()));
        }
    }
    tx.commit().await?;
    for (subscription, reason) in &paused {
        health::paused(subscription, reason);
    }
    for sent in batch {
        observe(sent);
    }
    Ok(Written {
        paused: paused.into_iter().map(|(s, _)| s.clone()).collect(),
        next_retry,
    })
}

fn new_attempt(sent: &Sent) -> store::NewAttempt<'_> {
    let attempt = &sent.attempt;
    store::NewAttempt {
        delivery_id: &sent.delivery.delivery_id,
        message_id: &sent.delivery.message_id,
        subscription_id: &sent.delivery.subscription_id,
        attempted_at: attempt.attempted_at,
        status_code: attempt.status_code,
        response_body: attempt.response_body.as_deref(),
        duration_ms: attempt.duration_ms,
        error: attempt.error.as_deref(),
        failure_class: attempt.outcome.failure_class(),
    }
}

/// Records a failed attempt; returns when the retry is due, if one is scheduled.
async fn update_failed_delivery(
    tx: &mut Tx,
    config: &EngineConfig,
    sent: &Sent,
) -> Result<Option<i64>, sqlx::Error> {
    let attempt = &sent.attempt;
    let attempt_number = sent.delivery.attempts + 1;
    // A failed delivery with a retry ahead stays pending (claimable when due). One that
    // failed because the uplink was down waits for the dispatcher to claim it when the
    // link returns; its place in the schedule is unchanged, and it is due from its
    // message's time, so that claims (by due time, then sequence) take it before the
    // later sequences that waited untried.
    let retry = attempt
        .outcome
        .retries()
        .then(|| retry_delay(config, attempt_number, attempt.retry_after))
        .flatten();
    let waits = attempt.outcome.waits_for_uplink();
    let (status, next_attempt_at) = match retry {
        _ if waits => (
            DeliveryStatus::Pending,
            sent.delivery.created_at.millis().min(attempt.attempted_at),
        ),
        Some(delay) => (
            DeliveryStatus::Pending,
            attempt.attempted_at + delay.as_millis() as i64,
        ),
        None => (DeliveryStatus::Exhausted, attempt.attempted_at),
    };
    let error = match (&attempt.error, attempt.status_code) {
        (Some(error), _) => Some(error.clone()),
        (None, Some(code)) => Some(format!("HTTP {code}")),
        (None, None) => None,
    };
    let failure = store::Failure {
        delivery_id: &sent.delivery.delivery_id,
        status,
        next_attempt_at,
        last_status: attempt.status_code,
        last_error: error,
        consumed: !waits,
    };
    store::mark_failed(tx, failure, config.clock.now_ms()).await?;
    Ok((status == DeliveryStatus::Pending && !waits).then_some(next_attempt_at))
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

fn observe(sent: &Sent) {
    let outcome = sent.attempt.outcome;
    metrics::counter!("ehrs_delivery_attempts_total", "outcome" => outcome.label()).increment(1);
    metrics::histogram!("ehrs_delivery_attempt_seconds")
        .record(sent.attempt.duration_ms as f64 / 1000.0);
    if outcome == Outcome::Delivered {
        let end_to_end = (sent.attempt.attempted_at + sent.attempt.duration_ms
            - sent.delivery.created_at.millis())
        .max(0);
        metrics::histogram!("ehrs_delivery_latency_seconds").record(end_to_end as f64 / 1000.0);
    }
}
