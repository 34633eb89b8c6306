//! Integration tests of the `patients` domain.
