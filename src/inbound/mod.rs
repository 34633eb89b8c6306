//! Inbound webhooks: partner systems (lab, pharmacy) push signed events in.
//!
//! Owns the `inbound_sources` and `inbound_events` tables, the receiver
//! (`POST /webhooks/inbound/{source_id}`, see [`receiver`] for its contract and the order
//! of its checks), the admin routes, and the job handlers of the two actions
//! ([`actions`]). Accepted events become durable jobs (`crate::jobs`); the clinical
//! writes they make emit no outbound events (see [`actions`]).

pub mod actions;
pub mod model;
pub mod receiver;
pub mod repo;
pub(crate) mod routes;

pub use actions::register_jobs;
pub use model::{Action, InboundEventView, InboundReceipt, InboundSource, InboundSourceWithSecret};
pub use receiver::sign;
pub use routes::router;
