//! Inbound webhooks: sources, the verified receiver (every row of SPEC §6's table), the
//! two actions end to end, admin visibility, and the durable job queue underneath.

mod actions;
mod jobs;
mod receiver;
mod sources;
