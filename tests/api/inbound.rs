//! Integration tests of inbound webhooks.
