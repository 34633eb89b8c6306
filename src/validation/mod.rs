//! Field-level validation that reports every problem of a request at once.

use serde::Serialize;

pub mod words;
pub use words::Problem;

/// The earliest date the API accepts (birth dates, camp days): a year 0000 or -0001 is a
/// typing slip, not a record.
pub const MIN_DATE: &str = "1900-01-01";
/// The latest date the API accepts.
pub const MAX_DATE: &str = "2200-12-31";
/// The JSON-schema pattern of a `YYYY-MM-DD` date inside that range's years (the day is
/// checked by the handler).
pub const DATE_PATTERN: &str =
    r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";

/// How a text meant as a date reads.
enum DateText {
    Date(chrono::NaiveDate),
    /// Not written `YYYY-MM-DD` (four-digit year, two-digit month and day).
    Malformed,
    /// Written `YYYY-MM-DD`, but no such day exists (`2026-02-30`, month 13).
    NoSuchDay,
}

fn parse_date(value: &str) -> DateText {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return DateText::Malformed;
    }
    match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) => DateText::Date(date),
        Err(_) => DateText::NoSuchDay,
    }
}

/// Whether a text field may hold line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Many,
}

/// The bidirectional formatting characters (embeddings, overrides, isolates and marks'
/// cousins) that reorder what a reader sees without being seen themselves.
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[derive(Debug, Default, Serialize)]
pub struct FieldErrors {
    fields: Vec<FieldError>,
}

#[derive(Debug, Serialize)]
struct FieldError {
    field: String,
    reason: String,
    /// The JSON type the field takes, when the value given was of another type.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'static str>,
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
        self.add_problem(
            field,
            Problem {
                reason: reason.into(),
                expected: None,
                allowed: None,
            },
        );
    }

    /// A value outside a closed set of words, with the words that are accepted.
    pub fn add_allowed(&mut self, field: &str, allowed: Vec<String>) {
        self.add_problem(field, Problem::one_of(allowed));
    }

    /// A value that failed to deserialise, explained by [`words::explain`].
    pub fn add_problem(&mut self, field: &str, problem: Problem) {
        self.fields.push(FieldError {
            field: field.to_string(),
            reason: problem.reason,
            expected: problem.expected,
            allowed: problem.allowed,
        });
    }

    /// Adds an error when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, reason: impl Into<String>) {
        if !ok {
            self.add(field, reason);
        }
    }

    /// Requires a non-blank line of at most `max` characters, with no control character
    /// (a line break included) and no invisible direction control: what is stored goes on
    /// to partners in webhooks and onto screens, where such characters forge lines or
    /// reverse text.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else {
            self.printable(field, value, Lines::One);
        }
    }

    /// Free text (notes, descriptions, results): optional, at most `max` characters; line
    /// breaks and tabs are allowed, other control characters are not.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        let Some(value) = value else { return };
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else {
            self.printable(field, value, Lines::Many);
        }
    }

    /// Like [`FieldErrors::optional_text`] for a value that is required and not blank.
    pub fn multiline_text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else {
            self.optional_text(field, Some(value), max);
        }
    }

    fn printable(&mut self, field: &str, value: &str, lines: Lines) {
        let allowed = |c: char| lines == Lines::Many && matches!(c, '\n' | '\t');
        let found = value
            .chars()
            .enumerate()
            .find(|&(_, c)| (c.is_control() && !allowed(c)) || is_direction_control(c));
        if let Some((at, c)) = found {
            let what = if c.is_control() {
                "control characters"
            } else {
                "invisible direction controls"
            };
            let reason = format!(
                "must not contain {what} (U+{:04X} at character {})",
                c as u32,
                at + 1
            );
            self.add(field, reason);
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
            DateText::Date(date) if (MIN_DATE..=MAX_DATE).contains(&value) => Some(date),
            DateText::Date(_) => {
                self.add(field, format!("must be from {MIN_DATE} to {MAX_DATE}"));
                None
            }
            DateText::Malformed => {
                self.add(field, "must be a date in the form YYYY-MM-DD");
                None
            }
            DateText::NoSuchDay => {
                self.add(
                    field,
                    format!("must be a day that exists: {value} is not in the calendar"),
                );
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

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`, with
/// `#[serde(default, deserialize_with = "crate::validation::present")]`).
pub fn present<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
