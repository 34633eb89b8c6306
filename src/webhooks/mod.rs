//! Outbound webhooks. Clinical code knows one call: [`emit`]`(&mut tx, Event::new(..))`,
//! made inside the write's transaction. Tables, HTTP client, signing, retries and the
//! backend choice stay private to this module.

pub mod admin;
pub mod audit;
pub mod backend;
pub mod delivery;
pub mod embedded;
pub mod events;
pub mod inbound;
mod outbox;
pub mod retention;

pub use events::{Event, EventType};
pub use outbox::emit;
pub(crate) use outbox::{insert_message, queue_delivery};
pub mod signing;
pub mod ssrf;
pub mod subscriptions;

pub use delivery::DeliveryEngine;

use crate::app::AppState;
use axum::Router;

/// The webhook routes: administration and inbound receivers.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(admin::router())
        .merge(inbound::router())
}

/// The backend chosen by `WEBHOOK_BACKEND`.
pub fn backend_for(
    settings: &crate::config::Settings,
    db: &crate::db::Db,
    secrets: &crate::crypto::SecretBox,
    lookup: &std::sync::Arc<dyn ssrf::Lookup>,
) -> anyhow::Result<std::sync::Arc<dyn backend::WebhookBackend>> {
    match settings.webhook_backend.as_str() {
        "embedded" => {
            let config = delivery::EngineConfig::from_settings(settings);
            let policy = ssrf::Policy {
                allow_insecure: settings.webhooks_allow_insecure,
            };
            let sender = delivery::HttpSender::from_parts(
                policy,
                lookup.clone(),
                secrets.clone(),
                config.timeout,
            );
            Ok(std::sync::Arc::new(embedded::EmbeddedBackend::new(
                db.clone(),
                secrets.clone(),
                sender,
                config,
            )))
        }
        "svix" => anyhow::bail!("WEBHOOK_BACKEND=svix is not built yet; use embedded"),
        other => anyhow::bail!("WEBHOOK_BACKEND must be 'embedded' or 'svix', not '{other}'"),
    }
}
