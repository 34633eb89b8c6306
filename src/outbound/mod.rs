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

pub use admin::router;

use crate::db::Db;
use std::sync::Arc;
use std::time::Duration;

/// What the webhook administration routes need, taken from the application's state with
/// `FromRef`: the backend, the database (the audit trail), and what decides whether a
/// target URL is allowed.
#[derive(Clone)]
pub struct Webhooks {
    pub backend: Arc<dyn backend::WebhookBackend>,
    pub db: Db,
    /// What the SSRF guard allows under the current settings.
    pub policy: ssrf::Policy,
    /// Name resolution for webhook targets (replaceable in tests).
    pub lookup: Arc<dyn ssrf::Lookup>,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap: Duration,
}
