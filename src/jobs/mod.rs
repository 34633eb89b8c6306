//! (to be built) Durable background jobs in the `jobs` table.
