-- Whose failure each failed attempt was: 'network' (the name did not resolve, the network
-- or host was unreachable, no connection in time) or 'endpoint' (refused, TLS, an HTTP
-- error status, no answer once connected); NULL for a delivered attempt and for attempts
-- recorded before this column existed. See outbound/outcome.rs.
ALTER TABLE webhook_attempts ADD COLUMN failure_class TEXT;
