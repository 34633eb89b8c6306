//! Integration tests of the `consultations` domain.
