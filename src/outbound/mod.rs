//! Outbound webhooks. Clinical code knows one call: [`emit`]`(&mut tx, Event::new(..))`,
//! made inside the write's transaction. Tables, HTTP client, signing, retries and the
//! backend choice stay private to this module.

pub mod admin;
pub mod audit;
pub mod backend;
pub mod events;
pub mod outbox;
pub mod retention;
pub mod store;

pub use events::{Event, EventType};
pub use outbox::emit;
pub(crate) use outbox::{insert_message, queue_delivery};
pub mod signing;
pub mod ssrf;
pub mod subscriptions;

use crate::app::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The webhook routes: administration and inbound receivers.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(admin::router())
        .merge(crate::inbound::router())
        .merge(crate::svix::ops::router())
}

/// The configured backend, and the Svix backend itself when that is the one (its
/// workers and the operational-webhook route need more than the trait).
pub struct Backends {
    pub webhooks: std::sync::Arc<dyn backend::WebhookBackend>,
    pub svix: Option<std::sync::Arc<crate::svix::SvixBackend>>,
}

/// The backend chosen by `WEBHOOK_BACKEND`.
pub fn backend_for(
    settings: &crate::config::Settings,
    db: &crate::db::Db,
    secrets: &crate::crypto::SecretBox,
    lookup: &std::sync::Arc<dyn ssrf::Lookup>,
) -> anyhow::Result<Backends> {
    match settings.webhook_backend.as_str() {
        "embedded" => {
            let config = crate::delivery::EngineConfig::from_settings(settings);
            let policy = ssrf::Policy {
                allow_insecure: settings.webhooks_allow_insecure,
            };
            let sender = crate::delivery::HttpSender::from_parts(
                policy,
                lookup.clone(),
                secrets.clone(),
                config.timeout,
                config.clock.clone(),
            );
            Ok(Backends {
                webhooks: std::sync::Arc::new(crate::delivery::EmbeddedBackend::new(
                    db.clone(),
                    secrets.clone(),
                    sender,
                    config,
                )),
                svix: None,
            })
        }
        "svix" => {
            let svix = std::sync::Arc::new(crate::svix::SvixBackend::from_settings(settings, db)?);
            Ok(Backends {
                webhooks: svix.clone(),
                svix: Some(svix),
            })
        }
        other => anyhow::bail!("WEBHOOK_BACKEND must be 'embedded' or 'svix', not '{other}'"),
    }
}
