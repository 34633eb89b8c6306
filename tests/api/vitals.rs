//! Integration tests of the `vitals` domain.
