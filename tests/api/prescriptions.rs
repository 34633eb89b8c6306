//! Integration tests of the `prescriptions` domain.
