//! `camp.*` as the camp's `Location`: `active`, and `inactive` once the camp is deleted.

use super::{fhir_id, meta};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct CampData {
    id: String,
    name: String,
    location: String,
    start_date: String,
    end_date: String,
    updated_at: String,
}

pub(super) fn camp(data: &CampData, active: bool) -> Value {
    json!({
        "resourceType": "Location",
        "id": fhir_id(&data.id),
        "meta": meta(&data.updated_at),
        "status": if active { "active" } else { "inactive" },
        "name": data.name,
        "description": format!("Medical camp, {} to {}", data.start_date, data.end_date),
        "mode": "instance",
        "address": { "text": data.location },
    })
}
