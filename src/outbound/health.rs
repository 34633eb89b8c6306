//! Subscription health, once for both backends: the run of consecutive failed deliveries,
//! the auto-pause it triggers (exactly once however many failures race, with its audit
//! entry), and the reset when an administrator enables the subscription again.
//!
//! The rules are the same whoever delivers; only where the counters live differs (the
//! [`Ledger`]): the embedded engine keeps them on `webhook_subscriptions`, where a pause
//! disables the subscription; the Svix backend on `svix_endpoint_health`, beside
//! endpoints that live in Svix (it then disables the endpoint there). Each step's two
//! statements sit side by side below. Nothing here decides *when* to pause: the callers
//! pass the threshold (`EHRS_WEBHOOK_AUTOPAUSE_AFTER`) and the reason.

use super::audit;
use super::outcome::Outcome;
use crate::db::Tx;
use crate::ids::{AuditId, SubscriptionId};

/// Where a backend keeps its subscriptions' health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// `webhook_subscriptions` (the embedded engine): a pause sets `enabled = 0`.
    Subscriptions,
    /// `svix_endpoint_health` (the Svix backend): a pause sets `auto_paused = 1`; the
    /// caller disables the endpoint in Svix. The caller makes sure the row exists.
    SvixEndpoints,
}

/// What a run of attempts, in order, did to one subscription's streak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    /// Failures after the last success (all of them when none succeeded).
    pub failures: i64,
    /// Whether one of the attempts succeeded.
    pub succeeded: bool,
}

impl Streak {
    /// Adds one attempt's outcome (an attempt made while the uplink was down changes
    /// nothing: it was not the endpoint's failure).
    pub fn add(&mut self, outcome: Outcome) {
        if outcome.delivered() {
            *self = Streak {
                failures: 0,
                succeeded: true,
            };
        } else if outcome.is_failure() {
            self.failures += 1;
        }
    }
}

/// Applies `streak` at time `at`: a success starts the count again from the failures that
/// followed it; failures alone add to it.
pub async fn record(
    tx: &mut Tx,
    ledger: Ledger,
    subscription: &SubscriptionId,
    streak: Streak,
    at: i64,
) -> Result<(), sqlx::Error> {
    let sql = match (ledger, streak.succeeded) {
        // A healthy subscription whose row already says so (no streak, a success within
        // the last second) is left alone: rewriting it on every batch took the row lock
        // the fan-out needs for `last_sequence`, so on PostgreSQL the two waited for each
        // other's commit (fsync) batch after batch. `last_success_at` is therefore exact
        // to within a second.
        (Ledger::Subscriptions, true) => {
            "UPDATE webhook_subscriptions SET consecutive_failures = $2, last_success_at = $3, \
             last_failure_at = CASE WHEN $2 > 0 THEN $3 ELSE last_failure_at END \
             WHERE id = $1 AND NOT ($2 = 0 AND consecutive_failures = 0 AND last_success_at IS NOT NULL \
                                    AND last_success_at > $3 - 1000)"
        }
        (Ledger::Subscriptions, false) => {
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + $2, \
             last_failure_at = $3 WHERE id = $1"
        }
        (Ledger::SvixEndpoints, true) => {
            "UPDATE svix_endpoint_health SET consecutive_failures = $2, last_success_at = $3, \
             last_failure_at = CASE WHEN $2 > 0 THEN $3 ELSE last_failure_at END, updated_at = $3 \
             WHERE subscription_id = $1"
        }
        (Ledger::SvixEndpoints, false) => {
            "UPDATE svix_endpoint_health SET consecutive_failures = consecutive_failures + $2, \
             last_failure_at = $3, updated_at = $3 WHERE subscription_id = $1"
        }
    };
    sqlx::query(sql)
        .bind(subscription)
        .bind(streak.failures)
        .bind(at)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Pauses `subscription` when its streak has reached `threshold` (with `None`, at once)
/// and it is not paused yet, and writes the `subscription.auto_paused` audit entry (by
/// `system`, with the reason) in the same transaction. Exactly once however many
/// failures race: the update is conditional, so only one writer changes the row. Returns
/// the audit entry of the pause this call made, if it made one.
pub async fn pause_once(
    tx: &mut Tx,
    ledger: Ledger,
    subscription: &SubscriptionId,
    reason: &str,
    threshold: Option<i64>,
    now: i64,
) -> Result<Option<AuditId>, sqlx::Error> {
    let sql = match ledger {
        Ledger::Subscriptions => {
            "UPDATE webhook_subscriptions SET enabled = 0, paused_reason = $2, paused_at = $3, updated_at = $3 \
             WHERE id = $1 AND enabled = 1 AND consecutive_failures >= $4"
        }
        Ledger::SvixEndpoints => {
            "UPDATE svix_endpoint_health SET auto_paused = 1, paused_reason = $2, paused_at = $3, \
             disabled_at = COALESCE(disabled_at, $3), updated_at = $3 \
             WHERE subscription_id = $1 AND auto_paused = 0 AND consecutive_failures >= $4"
        }
    };
    let changed = sqlx::query(sql)
        .bind(subscription)
        .bind(reason)
        .bind(now)
        .bind(threshold.unwrap_or(0))
        .execute(tx.conn())
        .await?
        .rows_affected();
    if changed != 1 {
        return Ok(None);
    }
    let details = serde_json::json!({ "reason": reason });
    let entry = audit::record(
        tx,
        None,
        "system",
        "subscription.auto_paused",
        Some(subscription),
        &details,
    )
    .await?;
    Ok(Some(entry))
}

/// Takes back a pause this backend could not carry out (Svix unreachable): the flag, the
/// reason and the audit entry `pause_once` wrote, so the pause can be made again later.
pub async fn undo_pause(
    tx: &mut Tx,
    ledger: Ledger,
    subscription: &SubscriptionId,
    entry: &AuditId,
) -> Result<(), sqlx::Error> {
    let sql = match ledger {
        Ledger::Subscriptions => {
            "UPDATE webhook_subscriptions SET enabled = 1, paused_reason = NULL, paused_at = NULL \
             WHERE id = $1"
        }
        Ledger::SvixEndpoints => {
            "UPDATE svix_endpoint_health SET auto_paused = 0, paused_reason = NULL, paused_at = NULL \
             WHERE subscription_id = $1"
        }
    };
    sqlx::query(sql)
        .bind(subscription)
        .execute(tx.conn())
        .await?;
    audit::remove(tx, entry).await
}

/// Forgets the streak and the pause: an administrator enabled the subscription again.
pub async fn reset(
    tx: &mut Tx,
    ledger: Ledger,
    subscription: &SubscriptionId,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = match ledger {
        Ledger::Subscriptions => {
            "UPDATE webhook_subscriptions SET consecutive_failures = 0, paused_reason = NULL, \
             paused_at = NULL, updated_at = $2 WHERE id = $1"
        }
        Ledger::SvixEndpoints => {
            "UPDATE svix_endpoint_health SET consecutive_failures = 0, auto_paused = 0, \
             paused_reason = NULL, paused_at = NULL, disabled_at = NULL, updated_at = $2 \
             WHERE subscription_id = $1"
        }
    };
    sqlx::query(sql)
        .bind(subscription)
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Logs and counts a pause once it has taken effect.
pub fn paused(subscription: &SubscriptionId, reason: &str) {
    tracing::warn!(subscription = %subscription, reason, "webhook subscription paused automatically");
    metrics::counter!("ehrs_subscriptions_paused_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::outcome::FailureKind;

    #[test]
    fn a_streak_counts_the_failures_after_the_last_success() {
        let mut streak = Streak::default();
        for outcome in [
            Outcome::Rejected,
            Outcome::of_answer(200),
            Outcome::NoAnswer(FailureKind::Timeout),
            Outcome::Gone,
        ] {
            streak.add(outcome);
        }
        assert_eq!(
            streak,
            Streak {
                failures: 2,
                succeeded: true
            }
        );
        let mut failing = Streak::default();
        failing.add(Outcome::Rejected);
        assert_eq!(
            failing,
            Streak {
                failures: 1,
                succeeded: false
            }
        );
    }
}
