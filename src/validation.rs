//! Field-level validation that reports every problem of a request at once.

use serde::Serialize;

/// The earliest date the API accepts (birth dates, camp days): a year 0000 or -0001 is a
/// typing slip, not a record.
pub const MIN_DATE: &str = "1900-01-01";
/// The latest date the API accepts.
pub const MAX_DATE: &str = "2200-12-31";
/// The JSON-schema pattern of a `YYYY-MM-DD` date inside that range's years (the day is
/// checked by the handler).
pub const DATE_PATTERN: &str =
    r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";

/// A date written exactly `YYYY-MM-DD` (four-digit year, two-digit month and day).
fn parse_date(value: &str) -> Option<chrono::NaiveDate> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
}

#[derive(Debug, Default, Serialize)]
pub struct FieldErrors {
    fields: Vec<FieldError>,
}

#[derive(Debug, Serialize)]
struct FieldError {
    field: String,
    reason: String,
    /// For a closed set of words: the ones accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed: Option<Vec<String>>,
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
            allowed: None,
        });
    }

    /// A value outside a closed set of words, with the words that are accepted.
    pub fn add_allowed(&mut self, field: &str, reason: impl Into<String>, allowed: Vec<String>) {
        self.fields.push(FieldError {
            field: field.to_string(),
            reason: reason.into(),
            allowed: Some(allowed),
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

    /// Requires a calendar date `YYYY-MM-DD` from [`MIN_DATE`] to [`MAX_DATE`].
    pub fn date(&mut self, field: &str, value: &str) -> Option<chrono::NaiveDate> {
        match parse_date(value) {
            Some(date) if (MIN_DATE..=MAX_DATE).contains(&value) => Some(date),
            Some(_) => {
                self.add(field, format!("must be from {MIN_DATE} to {MAX_DATE}"));
                None
            }
            None => {
                self.add(field, "must be a date in the form YYYY-MM-DD");
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every problem in one line: `field reason; field reason`.
    pub fn summary(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("{} {}", f.field, f.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `Ok(())` when nothing was reported, else these errors (which the error module turns
    /// into the 422 answer listing every field).
    pub fn finish(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Request types check themselves before any write.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldErrors>;
}
