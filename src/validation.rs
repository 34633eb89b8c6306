//! Field-level validation that reports every problem of a request at once.

use crate::error::ApiError;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Default, Serialize)]
pub struct FieldErrors {
    fields: Vec<FieldError>,
}

#[derive(Debug, Serialize)]
struct FieldError {
    field: String,
    reason: String,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &str, reason: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, reason);
        errors
    }

    pub fn add(&mut self, field: &str, reason: impl Into<String>) {
        self.fields.push(FieldError {
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// Adds an error when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, reason: impl Into<String>) {
        if !ok {
            self.add(field, reason);
        }
    }

    /// Requires a non-blank string of at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// Like [`FieldErrors::text`] for an optional value: absent is fine.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value
            && value.chars().count() > max
        {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// Requires a number inside `min..=max`.
    pub fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    /// Requires a calendar date `YYYY-MM-DD`.
    pub fn date(&mut self, field: &str, value: &str) -> Option<chrono::NaiveDate> {
        match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => {
                self.add(field, "must be a date in the form YYYY-MM-DD");
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn into_error(self) -> ApiError {
        let summary = self
            .fields
            .iter()
            .map(|f| format!("{} {}", f.field, f.reason))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::unprocessable("validation_failed", format!("invalid request: {summary}"))
            .with_details(json!({ "fields": self.fields }))
    }

    /// `Ok(())` when nothing was reported, else the 422 error listing every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

/// Request types check themselves before any write.
pub trait Validate {
    fn validate(&self) -> Result<(), ApiError>;
}
