use crate::error::ApiError;
use crate::ids::{CampId, PatientId, RegistrationId, UserId};
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};
use sqlx::any::{Any, AnyTypeInfo};
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

/// A patient's camp book number: the human identifier written on the patient's book and
/// used in URLs. 1 to 32 ASCII letters, digits, `-` or `_`, exactly as sent (no
/// surrounding whitespace). Case is kept as given and matters (`B-1` and `b-1` are two
/// books).
///
/// No `/`: with one, `/patients/SL/registrations` could be the registrations of `SL` or
/// the patient `SL/registrations`. A book number stored with a `/` before this rule (or
/// with surrounding whitespace, then trimmed) can still be read and changed by its
/// percent-encoded path (`PUNE%2F7`); new and renamed ones must follow the rule.
///
/// `vitals` is reserved: `/patients/vitals/{book_no}` would shadow that patient's routes.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(try_from = "String")]
#[sqlx(transparent)]
#[schema(value_type = String, example = "PUNE-0042", pattern = r"^[A-Za-z0-9_-]{1,32}$", min_length = 1, max_length = 32)]
pub struct BookNo(String);

impl BookNo {
    pub const MAX_LEN: usize = 32;
    /// The rule as a JSON-schema pattern (the OpenAPI document carries it).
    pub const PATTERN: &'static str = r"^[A-Za-z0-9_-]{1,32}$";
    /// What a valid book number looks like, for error messages.
    pub const RULE: &'static str =
        "must be 1 to 32 letters, digits, '-' or '_' (and not the reserved word 'vitals')";

    /// The book number in `raw`, or `None` when it breaks [`BookNo::RULE`].
    pub fn parse(raw: &str) -> Option<BookNo> {
        Self::parse_with(raw, b"-_")
    }

    fn parse_with(raw: &str, punctuation: &[u8]) -> Option<BookNo> {
        let ok = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b))
            && !raw.eq_ignore_ascii_case("vitals");
        ok.then(|| BookNo(raw.to_string()))
    }

    /// A book number that may name an existing patient: a `/` is still read, for books
    /// numbered before the rule excluded it. `None`: it can name no patient.
    pub fn parse_existing(raw: &str) -> Option<BookNo> {
        BookNo::parse_with(raw, b"-_/")
    }

    /// The book number in a path segment; a malformed one names no patient, so 404.
    pub fn from_path(raw: &str) -> Result<BookNo, ApiError> {
        BookNo::parse_existing(raw).ok_or_else(|| BookNo::not_found(raw))
    }

    /// 404 for a book number that names no patient, called a book number (it is what
    /// the camp's staff wrote down, not an id of ours).
    pub fn not_found(book_no: impl std::fmt::Display) -> ApiError {
        ApiError::not_found_by("patient", crate::error::Key::BookNo, book_no)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BookNo {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        BookNo::parse(&raw).ok_or_else(|| format!("book_no {}", BookNo::RULE))
    }
}

impl std::fmt::Display for BookNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A patient's sex as recorded at the camp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
    Other,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Sex> {
        [Sex::Male, Sex::Female, Sex::Other]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

impl Type<Any> for Sex {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Sex {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let raw = <String as Decode<Any>>::decode(value)?;
        Sex::parse(&raw).ok_or_else(|| format!("unknown sex '{raw}'").into())
    }
}

/// A patient, as the API returns it and as `patient.*` events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Patient {
    pub id: PatientId,
    pub book_no: BookNo,
    pub name: String,
    pub sex: Sex,
    /// Age in years (as told, often an estimate); absent when only the birth date is known.
    pub age: Option<i64>,
    #[schema(format = Date, example = "1980-04-12")]
    pub birth_date: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub const MAX_NAME: usize = 200;
pub const MAX_PHONE: usize = 32;
pub const MAX_ADDRESS: usize = 500;
pub const MAX_AGE: i64 = 130;

/// Body of `POST /patients`. A patient needs an age, a birth date, or both (both are
/// stored as given; they are not cross-checked, since camp ages are often estimates).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPatient {
    #[schema(example = "PUNE-0042", pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub book_no: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    pub sex: Sex,
    /// Give age or birth_date (or both).
    #[schema(minimum = 0, maximum = 130)]
    pub age: Option<i64>,
    /// Not in the future, less than 131 years ago.
    #[schema(format = Date, example = "1980-04-12", pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub birth_date: Option<String>,
    #[schema(max_length = 32, pattern = r"^[0-9 +-]*[0-9][0-9 +-]*$")]
    pub phone: Option<String>,
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub address: Option<String>,
}

impl NewPatient {
    /// Checks every field at once; on success returns the validated book number.
    pub fn check(&self) -> Result<BookNo, FieldErrors> {
        let mut errors = FieldErrors::new();
        let book_no = BookNo::parse(&self.book_no);
        errors.check(book_no.is_some(), "book_no", BookNo::RULE);
        errors.text("name", &self.name, MAX_NAME);
        check_details(
            &mut errors,
            self.age,
            self.birth_date.as_deref(),
            self.phone.as_deref(),
            self.address.as_deref(),
        );
        errors.check(
            self.age.is_some() || self.birth_date.is_some(),
            "age",
            "is required when birth_date is not given",
        );
        errors.finish()?;
        book_no.ok_or_else(|| FieldErrors::single("book_no", BookNo::RULE))
    }
}

impl Validate for NewPatient {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        self.check().map(|_| ())
    }
}

/// Body of `PATCH /patients/{book_no}`: any subset of the fields. An absent field is left
/// as it is; `null` clears an optional field (age, birth_date, phone, address) and is
/// refused for name and sex. The book number cannot be changed (an unknown field: 422).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientPatch {
    #[serde(default, deserialize_with = "crate::validation::present")]
    // May be left out, not cleared: `null` is refused, so the schema does not allow it.
    #[schema(value_type = String, required = false, min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Sex, required = false)]
    pub sex: Option<Option<Sex>>,
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 130)]
    pub age: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Option<String>, format = Date, pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub birth_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Option<String>, max_length = 32, pattern = r"^[0-9 +-]*[0-9][0-9 +-]*$")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = r"\S")]
    pub address: Option<Option<String>>,
}

impl Validate for PatientPatch {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        match &self.name {
            Some(Some(name)) => errors.text("name", name, MAX_NAME),
            Some(None) => errors.add("name", "must not be null"),
            None => {}
        }
        errors.check(!matches!(self.sex, Some(None)), "sex", "must not be null");
        check_details(
            &mut errors,
            self.age.flatten(),
            self.birth_date.clone().flatten().as_deref(),
            self.phone.clone().flatten().as_deref(),
            self.address.clone().flatten().as_deref(),
        );
        errors.finish()
    }
}

impl PatientPatch {
    /// `before` with this patch applied (ids and timestamps untouched), or a 422 when the
    /// result would have neither age nor birth date.
    pub fn apply(&self, before: &Patient) -> Result<Patient, ApiError> {
        let mut after = before.clone();
        if let Some(Some(name)) = &self.name {
            after.name.clone_from(name);
        }
        if let Some(Some(sex)) = self.sex {
            after.sex = sex;
        }
        if let Some(age) = self.age {
            after.age = age;
        }
        if let Some(birth_date) = &self.birth_date {
            after.birth_date.clone_from(birth_date);
        }
        if let Some(phone) = &self.phone {
            after.phone.clone_from(phone);
        }
        if let Some(address) = &self.address {
            after.address.clone_from(address);
        }
        if after.age.is_none() && after.birth_date.is_none() {
            return Err(ApiError::invalid_field(
                "age",
                "is required when birth_date is empty (a patient keeps an age, a birth_date or both)",
            ));
        }
        Ok(after)
    }
}

/// The optional fields shared by create and patch.
fn check_details(
    errors: &mut FieldErrors,
    age: Option<i64>,
    birth_date: Option<&str>,
    phone: Option<&str>,
    address: Option<&str>,
) {
    if let Some(age) = age {
        errors.range("age", age, 0, MAX_AGE);
    }
    if let Some(raw) = birth_date
        && let Some(date) = errors.date("birth_date", raw)
    {
        // "Today" in the easternmost time zone (UTC+14), so a baby born today anywhere
        // on earth is accepted.
        let today = (chrono::Utc::now() + chrono::Duration::hours(14)).date_naive();
        let oldest = today.checked_sub_months(chrono::Months::new(12 * (MAX_AGE as u32 + 1)));
        errors.check(date <= today, "birth_date", "must not be in the future");
        errors.check(
            oldest.is_none_or(|oldest| date > oldest),
            "birth_date",
            "must be less than 131 years ago",
        );
    }
    if let Some(phone) = phone {
        let ok = phone.chars().count() <= MAX_PHONE
            && phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-".contains(c))
            && phone.chars().any(|c| c.is_ascii_digit());
        errors.check(ok, "phone", "must be at most 32 digits, spaces, '+' or '-'");
    }
    if let Some(address) = address {
        errors.text("address", address, MAX_ADDRESS);
    }
}

/// Filters of `GET /patients`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatientFilter {
    /// Only patients whose name or book number contains this text (case-insensitive).
    pub q: Option<String>,
    /// Only patients registered at this camp.
    #[param(pattern = r"^camp_[0-9A-Za-z]{26}$")]
    pub camp_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// A patient's registration at a camp.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Registration {
    pub id: RegistrationId,
    pub patient_id: PatientId,
    pub book_no: BookNo,
    pub camp_id: CampId,
    /// The user who registered the patient.
    pub registered_by: UserId,
    pub created_at: Timestamp,
}

/// Body of `POST /patients/{book_no}/register`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    #[schema(
        example = "camp_01jdq3v8m2x7c9k4t6w0y5z1ab",
        pattern = r"^camp_[0-9A-Za-z]{26}$"
    )]
    pub camp_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_numbers_are_checked_as_sent() {
        assert_eq!(
            BookNo::parse("PUNE-2026_a").unwrap().as_str(),
            "PUNE-2026_a"
        );
        for bad in [
            "",
            "   ",
            " PUNE-1",
            "PUNE-1 ",
            "a b",
            "naïve",
            "x%2F",
            "PUNE/2026",
            "vitals",
            "VITALS",
            &"9".repeat(33),
        ] {
            assert!(BookNo::parse(bad).is_none(), "{bad:?} should be refused");
        }
        assert!(BookNo::parse(&"9".repeat(32)).is_some());
        assert!(serde_json::from_str::<BookNo>("\"a b\"").is_err());
        assert!(serde_json::from_str::<BookNo>("\"SL/registrations\"").is_err());
        // Books numbered under the old rule stay reachable by path.
        assert_eq!(BookNo::from_path("PUNE/7").unwrap().as_str(), "PUNE/7");
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let patch: PatientPatch = serde_json::from_str(r#"{"phone": null, "age": 4}"#).unwrap();
        assert_eq!(patch.phone, Some(None));
        assert_eq!(patch.age, Some(Some(4)));
        assert_eq!(patch.address, None);
    }
}
