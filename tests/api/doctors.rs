//! Integration tests of the `doctors` domain.
