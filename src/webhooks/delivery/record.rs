//! Records attempt outcomes in batches: one transaction writes many attempts, delivery
//! states and subscription failure counters, so the single SQLite writer is not taken
//! once per delivery. Auto-pause happens here, with a conditional UPDATE that only one
//! writer can win, so a subscription is paused exactly once however many failures race.

use super::EngineConfig;
use super::claim::Claimed;
use crate::db::{Db, Tx};
use crate::ids::{AttemptId, DeliveryId, SubscriptionId};
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
    let existing = existing_deliveries(&mut tx, batch).await?;
    let batch: Vec<&Outcome> = batch
        .iter()
        .filter(|o| existing.contains(&o.delivery.delivery_id))
        .collect();
    insert_attempts(&mut tx, &batch).await?;
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
    let now = crate::db::now_ms();
    for (code, ids) in delivered {
        mark_delivered(&mut tx, &ids, code, now).await?;
    }
    let mut paused = Vec::new();
    // Subscription rows are locked in id order, as `emit` locks them: no deadlock.
    let mut counters: Vec<_> = counters.into_iter().collect();
    counters.sort_by(|a, b| a.0.cmp(b.0));
    for (subscription, (failures, succeeded)) in counters {
        update_counters(&mut tx, subscription, failures, succeeded, now).await?;
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

async fn existing_deliveries(
    tx: &mut Tx,
    batch: &[Outcome],
) -> Result<std::collections::HashSet<DeliveryId>, sqlx::Error> {
    let ids: Vec<&DeliveryId> = batch.iter().map(|o| &o.delivery.delivery_id).collect();
    let sql = format!(
        "SELECT id FROM webhook_deliveries WHERE id IN ({})",
        super::claim::json_rows(tx.backend(), "$1")
    );
    let found: Vec<DeliveryId> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(tx.conn())
        .await?;
    Ok(found.into_iter().collect())
}

/// Rows per multi-row INSERT: few statements per batch, and few distinct SQL texts for
/// the prepared-statement cache.
const INSERT_CHUNK: usize = 64;

async fn insert_attempts(tx: &mut Tx, batch: &[&Outcome]) -> Result<(), sqlx::Error> {
    for chunk in batch.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 9;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhook_attempts (id, delivery_id, message_id, subscription_id, attempted_at, status_code, \
             response_body, duration_ms, error) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &outcome in chunk {
            let attempt = &outcome.attempt;
            query = query
                .bind(AttemptId::generate())
                .bind(&outcome.delivery.delivery_id)
                .bind(&outcome.delivery.message_id)
                .bind(&outcome.delivery.subscription_id)
                .bind(attempt.attempted_at)
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.response_body.as_deref())
                .bind(attempt.duration_ms)
                .bind(attempt.error.as_deref());
        }
        query.execute(tx.conn()).await?;
    }
    Ok(())
}

/// One UPDATE for all deliveries of a batch that succeeded with the same status code.
async fn mark_delivered(
    tx: &mut Tx,
    ids: &[&DeliveryId],
    code: u16,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, locked_until = NULL, \
         locked_by = NULL, last_status = $2, last_error = NULL, updated_at = $3 WHERE id IN ({})",
        super::claim::json_rows(tx.backend(), "$1")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(code))
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
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
    // A failed delivery with a retry ahead stays 'pending' (claimable when due).
    let (status, next_attempt_at) = match verdict {
        Verdict::Failed => match retry_delay(config, attempt_number, attempt.retry_after) {
            Some(delay) => ("pending", attempt.attempted_at + delay.as_millis() as i64),
            None => ("exhausted", attempt.attempted_at),
        },
        Verdict::Gone | Verdict::Delivered => ("exhausted", attempt.attempted_at),
    };
    let error = match (&attempt.error, attempt.status_code) {
        (Some(error), _) => Some(error.clone()),
        (None, Some(code)) => Some(format!("HTTP {code}")),
        (None, None) => None,
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3, \
         locked_until = NULL, locked_by = NULL, last_status = $4, last_error = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(&outcome.delivery.delivery_id)
    .bind(status)
    .bind(next_attempt_at)
    .bind(attempt.status_code.map(i64::from))
    .bind(error)
    .bind(crate::db::now_ms())
    .execute(tx.conn())
    .await?;
    Ok((status == "pending").then_some(next_attempt_at))
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

async fn update_counters(
    tx: &mut Tx,
    subscription: &SubscriptionId,
    failures: i64,
    succeeded: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    let query = if succeeded {
        // Failures after the batch's last success are the new streak. A healthy
        // subscription whose row already says so (no streak, a success within the last
        // second) is left alone: rewriting it on every batch took the row lock the
        // fan-out needs for `last_sequence`, so on PostgreSQL the two waited for each
        // other's commit (fsync) batch after batch. `last_success_at` is therefore exact
        // to within a second.
        sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = $2, last_success_at = $3, \
             last_failure_at = CASE WHEN $2 > 0 THEN $3 ELSE last_failure_at END \
             WHERE id = $1 AND NOT ($2 = 0 AND consecutive_failures = 0 AND last_success_at IS NOT NULL \
                                    AND last_success_at > $3 - 1000)",
        )
    } else {
        sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + $2, \
             last_failure_at = $3 WHERE id = $1",
        )
    };
    query
        .bind(subscription)
        .bind(failures)
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
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
    let changed = sqlx::query(
        "UPDATE webhook_subscriptions SET enabled = 0, paused_reason = $2, paused_at = $3, updated_at = $3 \
         WHERE id = $1 AND enabled = 1 AND consecutive_failures >= $4",
    )
    .bind(subscription)
    .bind(reason)
    .bind(now)
    .bind(threshold.unwrap_or(0))
    .execute(tx.conn())
    .await?
    .rows_affected();
    if changed == 1 {
        let details = serde_json::json!({ "reason": reason });
        crate::webhooks::audit::record(
            tx,
            None,
            "system",
            "subscription.auto_paused",
            Some(subscription),
            &details,
        )
        .await?;
    }
    Ok(changed == 1)
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
