//! Integration tests of the `queue` domain.
