//! Start-up registration: the application and every event type, with the JSON schema of
//! its envelope (the schemas the OpenAPI document declares). Retried with backoff while
//! Svix cannot be reached; the API works meanwhile and events wait in the outbox.

use super::SvixBackend;
use std::sync::Arc;
use std::time::Duration;
use svix::models::{ApplicationIn, EventTypeUpsertIn};

/// Registers once: get-or-create the application (by uid), then create or update every
/// event type.
pub async fn register(backend: &SvixBackend) -> Result<(), svix::error::Error> {
    let mut app = ApplicationIn::new("EHRS".to_string());
    app.uid = Some(backend.app.clone());
    backend
        .client
        .application()
        .get_or_create(app, None)
        .await?;
    for (event, schema) in crate::openapi::standalone::envelope_schemas() {
        let mut upsert = EventTypeUpsertIn::new(event.description().to_string());
        upsert.schemas = Some(serde_json::json!({ "1": schema }));
        upsert.archived = Some(false);
        backend
            .client
            .event_type()
            .upsert(event.as_str().to_string(), upsert)
            .await?;
    }
    super::endpoints::refresh_payload_modes(backend).await?;
    Ok(())
}

/// Tries [`register`] until it succeeds (1 s, doubling to 1 min between tries) or the
/// server stops.
pub async fn run_until_registered(
    backend: Arc<SvixBackend>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match register(&backend).await {
            Ok(()) => {
                {
                    let mut status = backend.status();
                    status.registered = true;
                    status.last_error = None;
                }
                backend.registered_signal.notify_waiters();
                tracing::info!(app = %backend.app, "registered the application and event types with Svix");
                return;
            }
            Err(err) => {
                backend.note_failure(&err);
                tracing::warn!(error = %super::describe(&err), retry_in = ?delay, "Svix registration failed; the API keeps working and events wait in the outbox");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}
