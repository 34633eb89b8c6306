//! Outbound webhooks. Clinical code knows one call: [`emit`]`(&mut tx, Event::new(..))`,
//! made inside the write's transaction. Tables, HTTP client, signing, retries and the
//! backend choice stay private to this module.

pub mod admin;
pub mod delivery;
pub mod events;
pub mod inbound;
mod outbox;

pub use events::{Event, EventType};
pub use outbox::emit;
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
