//! Outbound webhooks, whoever delivers them. Clinical code knows one call:
//! [`emit`]`(&mut tx, Event::new(..))`, made inside the write's transaction.
//!
//! This room owns the event catalogue ([`events`]), the outbox ([`outbox`]) and the SQL
//! on the `webhook_*` tables ([`store`]); the payload modes and their rendering
//! ([`payload`]); signing and the SSRF policy; what an attempt's outcome means
//! ([`outcome`]) and subscription health ([`health`]), both shared by the two backends;
//! the backend trait ([`backend`]); and the administration API, served through that
//! trait ([`admin`], [`audit`]), with the partners' catch-up feed ([`feed`]). It must not import a backend (`delivery`, `svix`) nor
//! anything above it (the application state, the router): the routes take their
//! [`Webhooks`] sub-state through `FromRef`.

pub(crate) mod admin;
pub(crate) mod audit;
pub mod backend;
pub mod events;
pub mod feed;
pub mod fhir;
pub(crate) mod health;
pub(crate) mod outbox;
pub(crate) mod outcome;
pub(crate) mod payload;
pub(crate) mod retention;
pub(crate) mod store;

pub use events::{Event, EventType};
pub use outbox::emit;
pub(crate) use outbox::{insert_message, queue_delivery};
pub use payload::PayloadMode;
pub mod signing;
pub mod ssrf;
pub mod subscriptions;

pub(crate) use admin::router;

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
    /// Subscriptions the server keeps at most (`EHRS_WEBHOOK_MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: i64,
}
