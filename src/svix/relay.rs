//! The relay: outbox → Svix. The outbox stays the source of truth: a message is marked
//! relayed only after Svix accepted it, so a crash or an unreachable Svix loses nothing.
//! Each message is created with the event id as Svix `eventId` and as idempotency key, so
//! sending it again (after a crash between Svix's answer and our mark, or from a second
//! process) never makes a second Svix message.
//!
//! Payload modes ride on Svix channels: every event goes out on channel `full`; when some
//! enabled endpoint takes `id_only` (or `fhir`) payloads of its event type, that copy goes
//! out on channel `id_only` (or `fhir`) too, with event id `<evt>.id_only` (or
//! `<evt>.fhir`). Each EHRS endpoint listens on exactly one. (Svix sends a message with
//! channels to every endpoint that has none as well: see
//! `endpoints::refresh_payload_modes`.)

use super::SvixBackend;
use super::endpoints::channel;
use crate::db::now_ms;
use crate::outbound::payload::{self, OutboxMessage, PayloadMode};
use crate::outbound::store;
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};
use svix::api::MessageCreateOptions;
use svix::models::MessageIn;

/// Messages read per round.
const BATCH: i64 = 200;
/// Messages in flight to Svix at once.
const CONCURRENCY: usize = 8;
/// How often the relay looks for work it was not woken for (another process's commits).
const POLL: Duration = Duration::from_secs(1);
/// How often the `id_only` flag is re-read from Svix (endpoints made elsewhere).
const PAYLOAD_MODE_REFRESH: Duration = Duration::from_secs(60);

/// Runs until `stopped`: waits for registration, then relays whatever is unrelayed,
/// backing off (1 s doubling to 1 min, or Svix's `Retry-After`) while Svix fails.
pub async fn run(backend: Arc<SvixBackend>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let committed = backend
        .db
        .commit_signal(crate::outbound::outbox::OUTBOX_SIGNAL);
    let mut backoff = Duration::ZERO;
    let mut modes_read = Instant::now();
    loop {
        if *stopped.borrow() {
            return;
        }
        let wait = if !backend.is_registered() {
            // Registration wakes us; nothing may go to Svix before the event types exist.
            let registered = backend.registered_signal.notified();
            tokio::select! {
                _ = registered => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => return,
            }
            continue;
        } else {
            if modes_read.elapsed() > PAYLOAD_MODE_REFRESH {
                modes_read = Instant::now();
                if let Err(err) = super::endpoints::refresh_payload_modes(&backend).await {
                    tracing::warn!(error = %super::describe(&err), "cannot read Svix endpoints' payload modes");
                }
            }
            match relay_batch(&backend).await {
                Ok(0) => {
                    backoff = Duration::ZERO;
                    POLL
                }
                Ok(_) => {
                    backoff = Duration::ZERO;
                    continue;
                }
                Err(RelayError::Database(err)) => {
                    tracing::error!(error = %err, "relay cannot read or mark the outbox");
                    POLL
                }
                Err(RelayError::Svix(err)) if is_refusal(&err) => {
                    // Svix is up but refuses one message (a 4xx other than 408/409/429):
                    // the others went through; that one is tried again each round, and
                    // /health shows why. No backoff: it must not hold the rest up.
                    tracing::error!(error = %super::describe(&err), "Svix refused an outbox message; it stays in the outbox and is tried again");
                    backend.note_failure(&err);
                    backoff = Duration::ZERO;
                    POLL
                }
                Err(RelayError::Svix(err)) => {
                    backoff = next_backoff(backoff);
                    let wait = retry_after(&err).unwrap_or(backoff);
                    tracing::warn!(error = %super::describe(&err), retry_in = ?wait, "Svix did not take the outbox; events wait there and are sent again");
                    backend.note_failure(&err);
                    wait
                }
            }
        };
        // A commit wakes an idle relay at once, but not one that is backing off.
        let woken = committed.notified();
        tokio::select! {
            _ = woken, if backoff.is_zero() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn next_backoff(previous: Duration) -> Duration {
    if previous.is_zero() {
        Duration::from_secs(1)
    } else {
        (previous * 2).min(Duration::from_secs(60))
    }
}

/// Svix's 429 carries no parsed `Retry-After` in the client; a rate-limited relay waits
/// at least 1 s, as the header would say.
fn retry_after(err: &svix::error::Error) -> Option<Duration> {
    (super::svix_status(err).map(|s| s.as_u16()) == Some(429)).then(|| Duration::from_secs(1))
}

/// A 4xx that sending again will not change (Svix is up and says no to this message).
fn is_refusal(err: &svix::error::Error) -> bool {
    super::svix_status(err)
        .is_some_and(|s| s.is_client_error() && ![408, 409, 429].contains(&s.as_u16()))
}

enum RelayError {
    Database(sqlx::Error),
    Svix(svix::error::Error),
}

impl From<sqlx::Error> for RelayError {
    fn from(err: sqlx::Error) -> Self {
        RelayError::Database(err)
    }
}

/// Relays one batch, oldest first. Returns how many messages were marked relayed; an
/// error after some succeeded still marks those.
async fn relay_batch(backend: &SvixBackend) -> Result<usize, RelayError> {
    let messages = store::unrelayed_messages(&backend.db, BATCH).await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let mut outcomes = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(CONCURRENCY) {
        let sends = chunk.iter().map(|message| {
            let modes = backend.modes_for(&message.event_type);
            send(backend, message, modes)
        });
        let results = futures_util::future::join_all(sends).await;
        // Svix down or throttling: stop here rather than knock on every message.
        let unavailable = results
            .iter()
            .any(|r| r.as_ref().is_err_and(|err| !is_refusal(err)));
        outcomes.extend(chunk.iter().map(|m| m.id.clone()).zip(results));
        if unavailable {
            break;
        }
    }
    let mut relayed = Vec::new();
    let mut failure = None;
    for (id, outcome) in outcomes {
        match outcome {
            Ok(()) => relayed.push(id),
            // Keep the error that says Svix is unavailable over a single refusal.
            Err(err) => {
                if failure.as_ref().is_none_or(is_refusal) {
                    failure = Some(err);
                }
            }
        }
    }
    mark_relayed(backend, &relayed).await?;
    if !relayed.is_empty() {
        metrics::counter!("ehrs_svix_relayed_total").increment(relayed.len() as u64);
    }
    match failure {
        Some(err) => Err(RelayError::Svix(err)),
        None => {
            backend.note_success();
            Ok(relayed.len())
        }
    }
}

/// Creates the message in Svix in each of `modes`, each on its channel.
async fn send(
    backend: &SvixBackend,
    message: &store::OutboxRow,
    modes: Vec<PayloadMode>,
) -> Result<(), svix::error::Error> {
    let outbox = OutboxMessage {
        message_id: &message.id,
        event_id: &message.event_id,
        event_type: &message.event_type,
        created_at: message.created_at,
        payload: message.payload.as_deref(),
        ids: &message.ids,
    };
    for mode in modes {
        // A payload cleared by retention (a message unrelayed for that long) goes out
        // with identifiers only rather than never.
        let body = payload::render(&outbox, mode, None, &backend.fhir)
            .or_else(|_| payload::render(&outbox, PayloadMode::IdOnly, None, &backend.fhir))
            .map_err(|err| svix::error::Error::Generic(err.to_string()))?;
        let payload: serde_json::Value = serde_json::from_str(&body)
            .map_err(|err| svix::error::Error::Generic(err.to_string()))?;
        let event_id = match mode {
            PayloadMode::Full => message.event_id.clone(),
            PayloadMode::IdOnly | PayloadMode::Fhir => {
                format!("{}.{}", message.event_id, channel(mode))
            }
        };
        let mut input = MessageIn::new(message.event_type.clone(), payload);
        input.event_id = Some(event_id.clone());
        input.channels = Some([channel(mode).to_string()].into());
        let options = MessageCreateOptions {
            idempotency_key: Some(event_id),
            with_content: Some(false),
        };
        match backend
            .client
            .message()
            .create(backend.app.clone(), input, Some(options))
            .await
        {
            Ok(_) => {}
            // Svix already holds a message with this event id (the idempotency key had
            // expired): it was relayed before.
            Err(err) if super::svix_status(&err).map(|s| s.as_u16()) == Some(409) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn mark_relayed(backend: &SvixBackend, ids: &[String]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = backend.db.begin().await?;
    store::mark_relayed(&mut tx, ids, Timestamp(now_ms())).await?;
    tx.commit().await
}
