//! Integration tests of the `medicines` domain.
