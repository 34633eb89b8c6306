//! Medicines: CRUD, filters, uniqueness, deletion of prescribed medicines, roles.

use crate::support::care::*;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

fn med_body(name: &str, stock: i64) -> Value {
    json!({"name": name, "form": "tablet", "strength": "500 mg", "stock_quantity": stock})
}

db_test!(async fn medicine_lifecycle_emits_nothing(app) {
    let created = app
        .post(Role::Pharmacist, "/api/v1/medicines/", &json!({"name": " Paracetamol ", "form": "tablet", "strength": "500 mg", "stock_quantity": 100}))
        .await
        .expect(201);
    let path = format!("/api/v1/medicines/{}", id(&created));
    assert!(id(&created).starts_with("med_"));
    assert_eq!(created["name"], "Paracetamol");
    assert_eq!(created["stock_quantity"], 100);

    assert_eq!(app.get(Role::Volunteer, &path).await.expect(200), created);

    let changed = json!({"name": "Paracetamol", "form": "tablet", "strength": "650 mg", "stock_quantity": 80});
    let updated = app.put(Role::Pharmacist, &format!("{path}/"), &changed).await.expect(200);
    assert_eq!(updated["strength"], "650 mg");
    assert_eq!(updated["stock_quantity"], 80);
    assert_eq!(updated["id"], created["id"]);

    app.delete(Role::Pharmacist, &path).await.expect(204);
    assert_eq!(app.get(Role::Admin, &path).await.status, 404);
    assert_eq!(app.delete(Role::Admin, &path).await.status, 404);
    assert_eq!(app.count_rows("medicines").await, 0);
    assert!(app.emitted_event_types().await.is_empty());
});

db_test!(async fn list_filters_by_name_and_stock(app) {
    create_medicine(&app, "Paracetamol", 10).await;
    create_medicine(&app, "Amoxicillin", 0).await;
    create_medicine(&app, "Cetirizine", 5).await;

    let all = app.get(Role::Nurse, "/api/v1/medicines").await.expect(200);
    assert_eq!(all["total"], 3);
    let names: Vec<&str> = all["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Amoxicillin", "Cetirizine", "Paracetamol"]);

    let cet = app.get(Role::Nurse, "/api/v1/medicines?q=CETI").await.expect(200);
    assert_eq!(cet["total"], 1);
    assert_eq!(cet["items"][0]["name"], "Cetirizine");
    assert_eq!(app.get(Role::Nurse, "/api/v1/medicines?q=%25").await.expect(200)["total"], 0);

    assert_eq!(app.get(Role::Nurse, "/api/v1/medicines?in_stock=true").await.expect(200)["total"], 2);
    let empty = app.get(Role::Nurse, "/api/v1/medicines?in_stock=false").await.expect(200);
    assert_eq!(empty["total"], 1);
    assert_eq!(empty["items"][0]["name"], "Amoxicillin");
    assert_eq!(app.get(Role::Nurse, "/api/v1/medicines?in_stock=true&q=para").await.expect(200)["total"], 1);

    let page = app.get(Role::Nurse, "/api/v1/medicines?limit=1&offset=1").await.expect(200);
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "Cetirizine");

    assert_eq!(app.get(Role::Nurse, "/api/v1/medicines?in_stock=maybe").await.status, 422);
    assert_eq!(app.get(Role::Nurse, "/api/v1/medicines?limit=201").await.status, 422);
});

db_test!(async fn duplicates_and_bad_input_are_refused(app) {
    let first = create_medicine(&app, "Paracetamol", 10).await;
    let again = app.post(Role::Admin, "/api/v1/medicines", &med_body("Paracetamol", 3)).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "medicine_exists");
    assert_eq!(app.post(Role::Admin, "/api/v1/medicines", &med_body("  Paracetamol", 3)).await.error_code(), "medicine_exists");

    let mut stronger = med_body("Paracetamol", 3);
    stronger["strength"] = json!("650 mg");
    let second = app.post(Role::Admin, "/api/v1/medicines", &stronger).await.expect(201);
    let clash = app.put(Role::Admin, &format!("/api/v1/medicines/{}", id(&second)), &med_body("Paracetamol", 3)).await;
    assert_eq!(clash.status, 409);
    assert_eq!(clash.error_code(), "medicine_exists");

    let invalid = app.post(Role::Admin, "/api/v1/medicines", &json!({"name": " ", "form": "tablet", "strength": "", "stock_quantity": -1})).await;
    assert_eq!(invalid.status, 422);
    assert_eq!(invalid.error_code(), "validation_failed");
    let fields: Vec<&str> = invalid.body["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "strength", "stock_quantity"]);
    let negative = app.put(Role::Admin, &format!("/api/v1/medicines/{}", id(&first)), &med_body("Paracetamol", -5)).await;
    assert_eq!(negative.status, 422);
    let missing = app.post(Role::Admin, "/api/v1/medicines", &json!({"name": "X", "strength": "1 mg", "stock_quantity": 1})).await;
    assert_eq!(missing.status, 422);
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("form"));
    let mut unknown = med_body("Y", 1);
    unknown["colour"] = json!("red");
    assert_eq!(app.post(Role::Admin, "/api/v1/medicines", &unknown).await.status, 422);
    let malformed = app.send_raw(Method::POST, Role::Admin, "/api/v1/medicines", "application/json", b"{\"name\"".to_vec()).await;
    assert_eq!(malformed.status, 400);

    for path in ["/api/v1/medicines/med_1", "/api/v1/medicines/med_01jdq3v8m2x7c9k4t6w0y5z1ab", "/api/v1/medicines/camp_01jdq3v8m2x7c9k4t6w0y5z1ab"] {
        assert_eq!(app.get(Role::Admin, path).await.status, 404);
        assert_eq!(app.put(Role::Admin, path, &med_body("Z", 1)).await.status, 404);
        assert_eq!(app.delete(Role::Admin, path).await.status, 404);
    }
    assert_eq!(app.count_rows("medicines").await, 2);
    assert_eq!(stock_of(&app, &id(&first)).await, 10);
    assert!(app.emitted_event_types().await.is_empty());
});

db_test!(async fn a_prescribed_medicine_cannot_be_deleted(app) {
    let consultation = open_consultation(&app, "B-1").await;
    let prescribed = create_medicine(&app, "Paracetamol", 10).await;
    let replacement = create_medicine(&app, "Crocin", 10).await;
    let rx = prescribe(&app, &id(&consultation), &id(&prescribed), 2).await;

    let refused = app.delete(Role::Admin, &format!("/api/v1/medicines/{}", id(&prescribed))).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.error_code(), "medicine_in_use");

    dispatch(&app, &id(&rx), &json!({"replaced_by_medicine_id": id(&replacement)})).await.expect(200);
    let refused = app.delete(Role::Pharmacist, &format!("/api/v1/medicines/{}", id(&replacement))).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.error_code(), "medicine_in_use");
    assert_eq!(app.count_rows("medicines").await, 2);
});

db_test!(async fn medicine_writes_by_role(app) {
    const ALLOWED: &[Role] = &[Role::Admin, Role::Pharmacist];
    let app = &app;
    check_roles(app, ALLOWED, 201, |role| async move {
        Write::new(Method::POST, "/api/v1/medicines", med_body(&format!("Medicine {role:?}"), 1))
    })
    .await;

    let medicine = create_medicine(app, "Paracetamol", 10).await;
    let path = &format!("/api/v1/medicines/{}", id(&medicine));
    check_roles(app, ALLOWED, 200, |_| async move { Write::new(Method::PUT, path, med_body("Paracetamol", 20)) }).await;

    check_roles(app, ALLOWED, 204, |role| async move {
        let doomed = create_medicine(app, &format!("Doomed {role:?}"), 1).await;
        Write::delete(format!("/api/v1/medicines/{}", id(&doomed)))
    })
    .await;
});
