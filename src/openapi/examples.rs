//! Example payloads for the `webhooks` object, shaped as the API returns each resource.

use serde_json::{Value, json};

pub fn camp() -> Value {
    json!({
        "id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "name": "Free eye camp",
        "location": "Ward 12 school, Pune", "start_date": "2026-11-28",
        "end_date": "2026-11-29", "attended_count": 120,
        "created_at": "2026-11-01T09:00:00.000Z", "updated_at": "2026-11-28T10:15:02.123Z"
    })
}

pub fn queue_entry() -> Value {
    json!({
        "id": "que_01jdq3v8m2x7c9k4t6w0y5z1ab", "consultation_id": "cons_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "doctor_id": "doc_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "patient_id": "pat_01jdq3v8m2x7c9k4t6w0y5z1ab", "book_no": "B-1024",
        "patient_name": "Asha Patil", "status": "in_consultation", "priority": "normal",
        "created_at": "2026-11-28T09:40:00.000Z", "updated_at": "2026-11-28T10:15:02.123Z"
    })
}

pub fn consultation() -> Value {
    json!({
        "id": "cons_01jdq3v8m2x7c9k4t6w0y5z1ab", "patient_id": "pat_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "book_no": "B-1024", "doctor_id": "doc_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "complaint": "Blurred vision",
        "diagnosis": "Cataract, left eye", "notes": "Refer for surgery", "status": "in_progress",
        "created_at": "2026-11-28T09:40:00.000Z", "updated_at": "2026-11-28T10:15:02.123Z",
        "queue_entry": queue_entry()
    })
}

pub fn prescription() -> Value {
    json!({
        "id": "rx_01jdq3v8m2x7c9k4t6w0y5z1ab", "consultation_id": "cons_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "book_no": "B-1024", "medicine_id": "med_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "dosage": "1 tablet", "frequency": "twice a day", "days": 5, "quantity": 10,
        "dispatch_status": "given", "replaced_by_medicine_id": null,
        "created_at": "2026-11-28T10:20:00.000Z", "updated_at": "2026-11-28T10:45:00.000Z"
    })
}

pub fn patient() -> Value {
    json!({
        "id": "pat_01jdq3v8m2x7c9k4t6w0y5z1ab", "book_no": "B-1024", "name": "Asha Patil",
        "sex": "female", "age": 54, "birth_date": null, "phone": "+91 98200 00000",
        "address": "Ward 12, Pune", "created_at": "2026-11-28T09:02:11.000Z",
        "updated_at": "2026-11-28T09:02:11.000Z"
    })
}

pub fn registration() -> Value {
    json!({
        "id": "reg_01jdq3v8m2x7c9k4t6w0y5z1ab", "patient_id": "pat_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "book_no": "B-1024", "camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "registered_by": "usr_01jdq3v8m2x7c9k4t6w0y5z1ab", "created_at": "2026-11-28T09:03:40.000Z"
    })
}

pub fn vitals() -> Value {
    json!({
        "id": "vit_01jdq3v8m2x7c9k4t6w0y5z1ab", "patient_id": "pat_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "book_no": "B-1024", "camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "bp": "130/85",
        "pulse": 78, "temperature": 36.9, "weight": 61.5, "height": null, "spo2": 98,
        "blood_sugar": null, "extra_note": null, "recorded_by": "usr_01jdq3v8m2x7c9k4t6w0y5z1ab",
        "created_at": "2026-11-28T09:10:02.000Z", "updated_at": "2026-11-28T09:10:02.000Z"
    })
}
