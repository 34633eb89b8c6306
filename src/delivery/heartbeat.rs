//! Heartbeats: a subscription with a `heartbeat_interval` that received nothing for that
//! long gets a signed `webhook.heartbeat` carrying its last sequence number, so a
//! receiver can tell a quiet camp from lost deliveries.
//!
//! A heartbeat is an ordinary delivery of a message that is not fanned out (like
//! `webhook.test`): it takes the subscription's next sequence number, is signed, retried
//! and counted toward auto-pause like any other. None is queued while the subscription
//! has a delivery pending (traffic, or an earlier heartbeat still being retried), and at
//! most one per interval is queued even when the receiver never answers
//! (`last_heartbeat_at`). The claim is one conditional UPDATE, so engines sharing a
//! PostgreSQL database queue each heartbeat once.

use crate::db::Db;
use crate::outbound::events::{Event, EventType, WebhookHeartbeatData};
use crate::outbound::outbox::REQUEUE_SIGNAL;
use crate::outbound::store::subscriptions as store;
use crate::outbound::subscriptions::show_interval;
use crate::time::{Clock, Timestamp};
use std::time::Duration;
use tokio::sync::watch;

/// How often the engine looks for subscriptions due a heartbeat: the shortest interval
/// allowed is one second.
const TICK: Duration = Duration::from_secs(1);

/// Queues due heartbeats every [`TICK`] and whenever a test moves `clock`, until `stop`.
pub async fn run(db: Db, clock: Clock, mut stop: watch::Receiver<bool>) {
    let mut clock_moved = clock.watch();
    loop {
        if let Err(err) = send_due(&db, clock.now()).await {
            tracing::warn!(error = %err, "queueing webhook heartbeats failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = clock_moved.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Queues a heartbeat for every subscription due one at `now`; returns how many.
pub async fn send_due(db: &Db, now: Timestamp) -> Result<usize, sqlx::Error> {
    let mut queued = 0;
    for due in store::due_heartbeats(db, now).await? {
        let mut tx = db.begin().await?;
        let Some(last_sequence) = store::claim_heartbeat(&mut tx, &due, now).await? else {
            tx.rollback().await?;
            continue;
        };
        let event = Event::new(
            EventType::WebhookHeartbeat,
            &WebhookHeartbeatData {
                subscription_id: due.id.clone(),
                last_sequence,
                heartbeat_interval: show_interval(due.interval_ms),
            },
        );
        let message = crate::outbound::insert_message(&mut tx, &event, now, false).await?;
        crate::outbound::queue_delivery(&mut tx, &message, &due.id, now, None).await?;
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        queued += 1;
    }
    Ok(queued)
}
