//! The one surface the integration tests (and benchmarks) use beyond the HTTP API: ways
//! to do by hand what the application otherwise does by itself, so a test can run it at
//! the moment it chooses (a second delivery engine racing the first, due jobs now, a
//! message written straight to the outbox). Not for production code: nothing in `src`
//! outside this file calls it.

use crate::config::Settings;
use crate::db::Tx;
use crate::ids::{DeliveryId, MessageId, SubscriptionId};
use crate::jobs::JobContext;
use crate::outbound::Event;
use crate::state::AppState;
use crate::tasks::Tasks;
use crate::time::Timestamp;

pub use crate::delivery::guarded_client;
pub use crate::outbound::store::FANOUT_LOCK;
pub use crate::vitals::repo::append_note_to_latest;

/// Starts one more embedded delivery engine on `state`'s database, configured by
/// `settings` (a second "process"); stop it with [`Tasks::stop`].
pub fn start_delivery_engine(state: &AppState, settings: &Settings) -> Tasks {
    let backend = crate::delivery::EmbeddedBackend::from_settings(
        settings,
        &state.db,
        &state.secrets,
        state.webhooks.lookup.clone(),
    );
    let mut tasks = Tasks::new();
    std::sync::Arc::new(backend).start_engine(&mut tasks);
    tasks
}

/// Runs every job due now with the application's handlers, until none is left; returns
/// how many attempts were made.
pub async fn run_due_jobs(state: &AppState) -> anyhow::Result<usize> {
    crate::jobs::run_jobs_due_by(
        &job_context(state),
        &crate::application::job_registry(),
        Timestamp::now(),
    )
    .await
}

/// What job handlers get, on `state`'s database.
pub fn job_context(state: &AppState) -> JobContext {
    JobContext {
        db: state.db.clone(),
    }
}

/// Writes `event`'s outbox message already handed off (no fan-out), as the admin test
/// route does before it queues its one delivery.
pub async fn insert_handed_off_message(
    tx: &mut Tx,
    event: &Event,
    now: Timestamp,
) -> Result<MessageId, sqlx::Error> {
    crate::outbound::insert_message(tx, event, now, false).await
}

/// Queues `message` for `subscription` with its next sequence number; with `hold_until`
/// the delivery starts leased (`inline`), as the admin test route's does.
pub async fn queue_delivery(
    tx: &mut Tx,
    message: &MessageId,
    subscription: &SubscriptionId,
    due: Timestamp,
    hold_until: Option<i64>,
) -> Result<DeliveryId, sqlx::Error> {
    crate::outbound::queue_delivery(tx, message, subscription, due, hold_until).await
}

/// Writes a subscription into the embedded backend's table whatever backend runs (a row
/// left from before a switch to Svix), sealing `secret` with `state`'s key.
pub async fn insert_embedded_subscription(
    state: &AppState,
    input: &crate::outbound::subscriptions::NewSubscription,
    secret: &str,
) -> Result<crate::outbound::subscriptions::Subscription, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let subscription =
        crate::outbound::store::subscriptions::insert(&mut tx, input, secret, &state.secrets)
            .await?;
    tx.commit().await?;
    Ok(subscription)
}

/// Clears expired webhook payloads now (what the hourly retention does), with `days` as
/// `EHRS_WEBHOOK_RETENTION_DAYS`.
pub async fn purge_webhook_payloads(
    state: &AppState,
    days: i64,
) -> Result<crate::outbound::retention::Purged, sqlx::Error> {
    crate::outbound::retention::purge(&state.db, days).await
}
