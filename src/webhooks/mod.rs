//! Outbound webhooks. Clinical code knows one call: [`emit`]`(&mut tx, Event::new(..))`,
//! made inside the write's transaction. Tables, HTTP client, signing, retries and the
//! backend choice stay private to this module.

pub mod events;
pub mod inbound;
mod outbox;

pub use events::{Event, EventType};
pub use outbox::emit;
