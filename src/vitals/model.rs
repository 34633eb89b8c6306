use crate::ids::{CampId, PatientId, UserId, VitalsId};
use crate::patients::BookNo;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

/// One set of measurements taken for a patient (a patient has many, one per visit or
/// station), as the API returns it and as `vitals.recorded` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Vitals {
    pub id: VitalsId,
    pub patient_id: PatientId,
    pub book_no: BookNo,
    /// The camp where they were taken, when given.
    pub camp_id: Option<CampId>,
    /// Blood pressure, `systolic/diastolic` in mmHg.
    #[schema(example = "120/80")]
    pub bp: Option<String>,
    /// Beats per minute.
    pub pulse: Option<i64>,
    /// Degrees Celsius.
    pub temperature: Option<f64>,
    /// Kilograms.
    pub weight: Option<f64>,
    /// Centimetres.
    pub height: Option<f64>,
    /// Oxygen saturation, percent.
    pub spo2: Option<i64>,
    /// mg/dL.
    pub blood_sugar: Option<f64>,
    /// Free text; lab results received from partners are appended here.
    pub extra_note: Option<String>,
    /// The user who recorded them.
    pub recorded_by: UserId,
    pub created_at: Timestamp,
    /// Changes when a note is appended.
    pub updated_at: Timestamp,
}

pub const MAX_NOTE: usize = 2000;

/// Keeps a note within [`MAX_NOTE`] characters. Past it the end is cut and `marker` is
/// put in its place, to say where the whole text is. Why cut rather than refuse: what
/// comes first (earlier notes, the start of the new text) stays in front of the
/// clinician, and a note over the limit would make every later edit of the record fail
/// the API's own check.
pub fn fit_note(note: String, marker: &str) -> String {
    if note.chars().count() <= MAX_NOTE {
        return note;
    }
    let keep = MAX_NOTE.saturating_sub(marker.chars().count());
    let mut cut: String = note.chars().take(keep).collect();
    cut.push_str(marker);
    cut
}

/// Body of `PUT /patients/vitals/{book_no}`: at least one measurement; every field is
/// optional and checked against a physiologically plausible range.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VitalsInput {
    #[schema(
        example = "camp_01jdq3v8m2x7c9k4t6w0y5z1ab",
        pattern = r"^camp_[0-9A-Za-z]{26}$"
    )]
    pub camp_id: Option<String>,
    /// `systolic/diastolic`: systolic 50–300, diastolic 20–200, systolic above diastolic.
    #[schema(example = "120/80", pattern = r"^[0-9]{2,3}/[0-9]{2,3}$")]
    pub bp: Option<String>,
    /// 20–250 beats per minute.
    #[schema(minimum = 20, maximum = 250)]
    pub pulse: Option<i64>,
    /// 25–45 °C.
    #[schema(minimum = 25, maximum = 45)]
    pub temperature: Option<f64>,
    /// 0.5–400 kg.
    #[schema(minimum = 0.5, maximum = 400)]
    pub weight: Option<f64>,
    /// 20–250 cm.
    #[schema(minimum = 20, maximum = 250)]
    pub height: Option<f64>,
    /// 50–100 %.
    #[schema(minimum = 50, maximum = 100)]
    pub spo2: Option<i64>,
    /// 10–1000 mg/dL.
    #[schema(minimum = 10, maximum = 1000)]
    pub blood_sugar: Option<f64>,
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    pub extra_note: Option<String>,
}

impl Validate for VitalsInput {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Some(bp) = &self.bp {
            check_bp(&mut errors, bp);
        }
        if let Some(pulse) = self.pulse {
            errors.range("pulse", pulse, 20, 250);
        }
        if let Some(temperature) = self.temperature {
            errors.range("temperature", temperature, 25.0, 45.0);
        }
        if let Some(weight) = self.weight {
            errors.range("weight", weight, 0.5, 400.0);
        }
        if let Some(height) = self.height {
            errors.range("height", height, 20.0, 250.0);
        }
        if let Some(spo2) = self.spo2 {
            errors.range("spo2", spo2, 50, 100);
        }
        if let Some(sugar) = self.blood_sugar {
            errors.range("blood_sugar", sugar, 10.0, 1000.0);
        }
        errors.optional_text("extra_note", self.extra_note.as_deref(), MAX_NOTE);
        let measured = self.bp.is_some()
            || self.pulse.is_some()
            || self.temperature.is_some()
            || self.weight.is_some()
            || self.height.is_some()
            || self.spo2.is_some()
            || self.blood_sugar.is_some();
        errors.check(
            measured,
            "bp",
            "is required when no other measurement is given (at least one of bp, pulse, temperature, weight, height, spo2 or blood_sugar)",
        );
        errors.finish()
    }
}

impl VitalsInput {
    /// The blood pressure as stored: `systolic/diastolic` without spaces (call after
    /// [`Validate::validate`]).
    pub fn normalized_bp(&self) -> Option<String> {
        let (systolic, diastolic) = parse_bp(self.bp.as_deref()?)?;
        Some(format!("{systolic}/{diastolic}"))
    }
}

/// `"120/80"` (spaces around the numbers tolerated) as two whole numbers.
fn parse_bp(raw: &str) -> Option<(i64, i64)> {
    let (systolic, diastolic) = raw.split_once('/')?;
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(systolic)?, number(diastolic)?))
}

fn check_bp(errors: &mut FieldErrors, raw: &str) {
    match parse_bp(raw) {
        None => errors.add("bp", "must look like 120/80 (systolic/diastolic, in mmHg)"),
        Some((systolic, diastolic)) => {
            let ok = (50..=300).contains(&systolic)
                && (20..=200).contains(&diastolic)
                && systolic > diastolic;
            errors.check(
                ok,
                "bp",
                "must be a systolic of 50–300 over a lower diastolic of 20–200 (mmHg)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(raw: &str) -> Result<(), FieldErrors> {
        VitalsInput {
            bp: Some(raw.into()),
            ..Default::default()
        }
        .validate()
    }

    #[test]
    fn blood_pressure_is_checked_and_normalized() {
        assert!(bp("120/80").is_ok());
        assert!(bp(" 90 / 60 ").is_ok());
        for bad in [
            "120",
            "120/",
            "/80",
            "120/80/60",
            "12a/80",
            "80/120",
            "301/80",
            "120/19",
            "-120/80",
            "1200/80",
            "120.5/80",
        ] {
            assert!(bp(bad).is_err(), "{bad} should be refused");
        }
        let input = VitalsInput {
            bp: Some(" 90 / 60 ".into()),
            ..Default::default()
        };
        assert_eq!(input.normalized_bp().as_deref(), Some("90/60"));
    }

    #[test]
    fn a_note_alone_is_not_a_measurement() {
        let input = VitalsInput {
            extra_note: Some("feels fine".into()),
            ..Default::default()
        };
        assert!(input.validate().is_err());
    }
}
