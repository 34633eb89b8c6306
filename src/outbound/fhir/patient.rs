//! `patient.registered` and `patient.updated` as a `Patient`.

use super::{FhirSettings, UCUM, fhir_id, meta};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The extension that carries an age in years when no birth date is known: the age as
/// recorded, never turned into an invented date.
pub const AGE_EXTENSION: &str = "urn:ehrs:fhir:StructureDefinition:patient-age";

#[derive(Deserialize)]
pub(super) struct PatientData {
    id: String,
    book_no: String,
    name: String,
    sex: String,
    age: Option<i64>,
    birth_date: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    updated_at: String,
}

pub(super) fn patient(data: &PatientData, settings: &FhirSettings) -> Value {
    let mut patient = Map::new();
    patient.insert("resourceType".into(), json!("Patient"));
    patient.insert("id".into(), json!(fhir_id(&data.id)));
    patient.insert("meta".into(), meta(&data.updated_at));
    if data.birth_date.is_none()
        && let Some(age) = data.age
    {
        patient.insert(
            "extension".into(),
            json!([{
                "url": AGE_EXTENSION,
                "valueAge": { "value": age, "unit": "years", "system": UCUM, "code": "a" }
            }]),
        );
    }
    patient.insert(
        "identifier".into(),
        json!([{ "use": "usual", "system": settings.book_no_system, "value": data.book_no }]),
    );
    patient.insert("name".into(), json!([{ "text": data.name }]));
    if let Some(phone) = &data.phone {
        patient.insert(
            "telecom".into(),
            json!([{ "system": "phone", "value": phone }]),
        );
    }
    patient.insert("gender".into(), json!(gender(&data.sex)));
    if let Some(birth_date) = &data.birth_date {
        patient.insert("birthDate".into(), json!(birth_date));
    }
    if let Some(address) = &data.address {
        patient.insert("address".into(), json!([{ "text": address }]));
    }
    Value::Object(patient)
}

/// FHIR's administrative gender of our `sex`.
fn gender(sex: &str) -> &'static str {
    match sex {
        "male" => "male",
        "female" => "female",
        "other" => "other",
        _ => "unknown",
    }
}
