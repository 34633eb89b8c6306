//! The OpenAPI 3.1 document (`GET /openapi.json`, `ehrs openapi`) and the Swagger UI page
//! that renders it (`GET /docs`).
//!
//! Routes come from the handlers' `#[utoipa::path]` attributes, listed once below; the
//! top-level `webhooks` object, one entry per outbound event type, is built in
//! [`webhooks`]. The Swagger UI files are compiled into the binary (utoipa-swagger-ui's
//! `vendored` feature takes them from a crates.io crate, never from the network), so the
//! page works at a camp with no internet.

pub mod webhooks;

use crate::app::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::{Arc, LazyLock};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "EHRS",
        description = "Electronic health records for free medical camps, with first-class webhooks. \
            Every clinical write is published as a signed webhook: see the `webhooks` section \
            for each event type's envelope, payload and signature headers.",
    ),
    paths(
        // auth and users
        crate::auth::routes::login,
        crate::auth::routes::logout,
        crate::auth::routes::me,
        crate::auth::routes::list_users,
        crate::auth::routes::create_user,
        crate::auth::routes::get_user,
        crate::auth::routes::update_user,
        // medical camps
        crate::camps::routes::list_camps,
        crate::camps::routes::create_camp,
        crate::camps::routes::get_camp,
        crate::camps::routes::update_camp,
        crate::camps::routes::delete_camp,
        crate::camps::routes::update_attendance,
        // patients, registrations, vitals, doctors
        crate::patients::routes::list_patients,
        crate::patients::routes::create_patient,
        crate::patients::routes::get_patient,
        crate::patients::routes::update_patient,
        crate::patients::registrations::register,
        crate::patients::registrations::list_for_patient,
        crate::patients::registrations::list_for_camp,
        crate::vitals::routes::record_vitals,
        crate::vitals::routes::list_vitals,
        crate::vitals::routes::get_vitals,
        crate::doctors::routes::list_doctors,
        crate::doctors::routes::create_doctor,
        crate::doctors::routes::get_doctor,
        crate::doctors::routes::update_doctor,
        crate::doctors::routes::delete_doctor,
        // consultations and queue
        crate::consultations::routes::assign_doctor,
        crate::consultations::routes::list_consultations,
        crate::consultations::routes::get_consultation,
        crate::consultations::routes::update_consultation,
        crate::queue::routes::list_queue,
        crate::queue::routes::get_entry,
        crate::queue::routes::update_status,
        crate::queue::routes::update_priority,
        // medicines and prescriptions
        crate::medicines::routes::list_medicines,
        crate::medicines::routes::create_medicine,
        crate::medicines::routes::get_medicine,
        crate::medicines::routes::update_medicine,
        crate::medicines::routes::delete_medicine,
        crate::prescriptions::routes::add_prescription,
        crate::prescriptions::routes::list_for_consultation,
        crate::prescriptions::routes::get_prescription,
        crate::prescriptions::routes::list_prescriptions,
        crate::prescriptions::routes::update_prescription,
        // outbound webhook administration
        crate::webhooks::admin::list_subscriptions,
        crate::webhooks::admin::create_subscription,
        crate::webhooks::admin::get_subscription,
        crate::webhooks::admin::update_subscription,
        crate::webhooks::admin::delete_subscription,
        crate::webhooks::admin::toggle_subscription,
        crate::webhooks::admin::test_subscription,
        crate::webhooks::admin::rotate_secret,
        crate::webhooks::admin::failure_stats,
        crate::webhooks::admin::recover,
        crate::webhooks::admin::list_logs,
        crate::webhooks::admin::list_attempts,
        crate::webhooks::admin::retry_message,
        crate::webhooks::admin::list_audit,
        // inbound webhooks
        crate::webhooks::inbound::receiver::receive,
        crate::webhooks::svix_backend::ops::receive,
        crate::webhooks::inbound::routes::list_sources,
        crate::webhooks::inbound::routes::create_source,
        crate::webhooks::inbound::routes::get_source,
        crate::webhooks::inbound::routes::update_source,
        crate::webhooks::inbound::routes::delete_source,
        crate::webhooks::inbound::routes::rotate_secret,
        crate::webhooks::inbound::routes::list_events,
        crate::webhooks::inbound::routes::get_event,
        crate::webhooks::inbound::routes::retry_event,
        // operations and this documentation
        crate::health::health,
        crate::metrics::render,
        openapi_json,
        docs_index,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Log in (`POST /auth/login`) and read the current user."),
        (name = "users", description = "User accounts and roles (admin only)."),
        (name = "camps", description = "Medical camps."),
        (name = "patients", description = "Patients and their camp registrations."),
        (name = "vitals", description = "Vitals recorded for a patient."),
        (name = "doctors", description = "Doctors."),
        (name = "consultations", description = "Doctor assignment and consultations."),
        (name = "queue", description = "The consultation queue of a camp."),
        (name = "medicines", description = "Medicines and their stock."),
        (name = "prescriptions", description = "Prescriptions and dispensing."),
        (name = "webhooks", description = "Outbound webhook subscriptions, delivery logs and audit (admin only)."),
        (name = "inbound webhooks", description = "Signed events pushed in by partner systems."),
        (name = "events", description = "Outbound webhooks: what EHRS POSTs to subscribers (see `webhooks`)."),
        (name = "operations", description = "Health, metrics and this documentation."),
    )
)]
struct ApiDoc;

/// The `bearer` scheme every protected route names: the JWT from `POST /auth/login`.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_string());
        http.description = Some(
            "The `access_token` of `POST /api/v1/auth/login`, as `Authorization: Bearer <token>`."
                .to_string(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The whole document. The `webhooks` object is set last: utoipa's `merge` drops it.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    webhooks::declare(&mut doc);
    doc
}

/// The document as pretty JSON, as served and as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json =
        serde_json::to_string_pretty(&document()).expect("the OpenAPI document serialises to JSON");
    json.push('\n');
    json
}

/// Built once: the document does not change while the server runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

/// Routes: `/openapi.json` and `/docs`. Public: the document describes the API, it
/// holds no data.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_index))
        .route("/docs/{*file}", get(docs_asset))
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// Swagger UI's settings: where the document is, and keep the token across reloads.
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .persist_authorization(true)
            .display_request_duration(true),
    )
});

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "Swagger UI over this document, served from the binary (works offline)", content_type = "text/html")))]
async fn docs_index() -> Response {
    // Swagger UI's page links its files relatively (`./swagger-ui.css`). Paths lose their
    // trailing slash before routing (see `app::serve`), so the page is at `/docs`, not
    // `/docs/`: a <base> makes those links resolve under `/docs/`.
    match swagger_file("index.html") {
        Ok((content_type, bytes)) => {
            let html = String::from_utf8_lossy(&bytes).replacen(
                "<head>",
                "<head>\n    <base href=\"/docs/\">",
                1,
            );
            ([(header::CONTENT_TYPE, content_type)], html).into_response()
        }
        Err(status) => status.into_response(),
    }
}

async fn docs_asset(Path(file): Path<String>) -> Response {
    match swagger_file(&file) {
        Ok((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(status) => status.into_response(),
    }
}

/// One Swagger UI file from the binary, with its content type.
fn swagger_file(file: &str) -> Result<(String, Vec<u8>), StatusCode> {
    match utoipa_swagger_ui::serve(file, SWAGGER_CONFIG.clone()) {
        Ok(Some(found)) => Ok((found.content_type, found.bytes.into_owned())),
        Ok(None) => Err(StatusCode::NOT_FOUND),
        Err(error) => {
            tracing::error!(%error, "cannot render a Swagger UI file");
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests;
