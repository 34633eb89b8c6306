//! Inbound webhooks: partner systems (lab, pharmacy) push signed events in.
//!
//! Owns the `inbound_sources` and `inbound_events` tables, the receiver
//! (`POST /webhooks/inbound/{source_id}`, see [`receiver`] for its contract and the order
//! of its checks), the admin routes, and the job handlers of the two actions
//! ([`actions`]). Accepted events become durable jobs (`crate::jobs`); the clinical
//! writes they make emit no outbound events (see [`actions`]).

pub(crate) mod actions;
pub(crate) mod model;
pub(crate) mod receiver;
pub(crate) mod repo;
pub(crate) mod routes;

pub(crate) use actions::register_jobs;
pub use receiver::sign;
pub(crate) use routes::router;
