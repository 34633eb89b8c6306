//! The OpenAPI 3.1 document (`GET /openapi.json`, `ehrs openapi`) and the Swagger UI page
//! that renders it (`GET /docs`).
//!
//! Operations come from the handlers' `#[utoipa::path]` attributes, collected by the
//! routers themselves (`utoipa_axum::routes!` registers a handler and its operation in
//! one call; the router module assembles them and builds the document), so the router and
//! the document cannot drift; this module adds the title, tags and security scheme
//! ([`base`]) and the rest of the contract ([`complete`]). The top-level `webhooks`
//! object, one entry per outbound event type, is built in [`webhooks`]. The Swagger UI files are compiled into the binary (utoipa-swagger-ui's
//! `vendored` feature takes them from a crates.io crate, never from the network), so the
//! page works at a camp with no internet.

pub mod contract;
mod examples;
pub mod standalone;
pub mod webhooks;

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::{Arc, LazyLock};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document31;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "EHRS",
        description = "Electronic health records for free medical camps, with first-class webhooks. \
            Every clinical write is published as a signed webhook: see the `webhooks` section \
            for each event type's envelope, payload and signature headers.",
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
        (name = "audit", description = "Who saw or changed which patient's record (admin only)."),
        (name = "events", description = "Outbound webhooks: what EHRS POSTs to subscribers (see `webhooks`)."),
        (name = "operations", description = "Health, metrics and this documentation."),
    )
)]
struct ApiDoc;

/// The `bearer` scheme every protected route names: the JWT from `POST /auth/login`; and
/// `feed_token`, which the catch-up feed takes too.
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
        let mut feed = Http::new(HttpAuthScheme::Bearer);
        feed.bearer_format = Some("ehrs_feed_…".to_string());
        feed.description = Some(
            "A subscription's feed token (`feed_token` of its creation or secret rotation, or \
             computed from its secret), as `Authorization: Bearer ehrs_feed_…`: reads that \
             subscription's catch-up feed and nothing else."
                .to_string(),
        );
        components.add_security_scheme("feed_token", SecurityScheme::Http(feed));
    }
}

/// What the routers' operations are merged into: title, tags, error schema and the
/// bearer scheme.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Completes the routes' document: the shared error answers, the cross-field rules, and
/// the `webhooks` object, set last because utoipa's `merge` drops it.
pub fn complete(mut doc: Document31) -> Document31 {
    contract::declare_shared_errors(&mut doc);
    // Before the cross-field rules, which wrap some bodies in `allOf`.
    contract::declare_text_rules(&mut doc);
    contract::declare_cross_field_rules(&mut doc);
    contract::declare_item_rules(&mut doc);
    webhooks::declare(&mut doc);
    doc
}

/// The served document as JSON, given to [`router`] by the router module (this module
/// cannot build it: it would need every route). A function, so the document is built at
/// its first request, not whenever a router is: building it allocates a few megabytes
/// for a moment.
#[derive(Clone, Copy)]
struct Document(fn() -> bytes::Bytes);

/// Routes: `/openapi.json` (serving what `document` returns) and `/docs`. Public: the
/// document describes the API, it holds no data.
pub fn router<S: Clone + Send + Sync + 'static>(
    document: fn() -> bytes::Bytes,
) -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        // Only this route needs it: no other request carries the extension.
        .route_layer(Extension(Document(document)))
        .routes(routes!(docs_index))
        // Swagger UI's own files: not part of the API.
        .route("/docs/{*file}", get(docs_asset))
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(Extension(document): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], (document.0)()).into_response()
}

/// Swagger UI's settings: where the document is; the token is not kept in the browser
/// (camp laptops are shared); and no validator badge, which would make the browser send
/// the document's address to validator.swagger.io (a camp's LAN address, and a request
/// to the internet a camp may not have).
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .persist_authorization(false)
            .validator_url("none")
            .display_request_duration(true),
    )
});

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "Swagger UI over this document, served from the binary (works offline)", content_type = "text/html")))]
async fn docs_index() -> Response {
    // Swagger UI's page links its files relatively (`./swagger-ui.css`). Paths lose their
    // trailing slash before routing (see `crate::server`), so the page is at `/docs`, not
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
