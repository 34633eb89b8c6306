//! Router assembly: every room's routes, the documentation routes, the portal, and the
//! layers around them. Each route is registered once with its OpenAPI operation, so the
//! router and the document ([`document`]) are both taken from [`routes`] and cannot
//! drift.
//!
//! The top of the module graph, with `application` and `main`: it imports every room,
//! and no room imports it.

mod middleware;

pub use crate::http::MAX_BODY_BYTES;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::LazyLock;
use tower_http::trace::TraceLayer;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Every documented route, each registered once with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(crate::auth::router())
        .merge(crate::camps::router())
        .merge(crate::patients::router())
        .merge(crate::vitals::router())
        .merge(crate::doctors::router())
        .merge(crate::consultations::router())
        .merge(crate::queue::router())
        .merge(crate::medicines::router())
        .merge(crate::prescriptions::router())
        .merge(crate::outbound::router())
        .merge(crate::inbound::router())
        .merge(crate::svix::router())
        .merge(crate::access::router())
        .routes(routes!(crate::health::health))
        .routes(routes!(crate::metrics::render))
        .merge(crate::openapi::router(|| DOCUMENT.clone()))
}

/// The whole OpenAPI document: the routes' operations, the shared error answers, the
/// cross-field rules, and the top-level `webhooks` object.
pub fn document() -> utoipa::openapi::OpenApi {
    crate::openapi::complete(routes().into_openapi())
}

/// The document as pretty JSON, as served and as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json =
        serde_json::to_string_pretty(&document()).expect("the OpenAPI document serialises to JSON");
    json.push('\n');
    json
}

/// Built once: the document does not change while the server runs.
static DOCUMENT: LazyLock<bytes::Bytes> = LazyLock::new(|| document_json().into());

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (router, document) = routes().split_for_parts();
    let known_query = std::sync::Arc::new(middleware::KnownQuery::from_document(&document));
    let idempotent = std::sync::Arc::new(middleware::IdempotentRoutes::from_document(&document));
    let guarded = state.clone();
    router
        // After routing (the route as declared is known) and for the API routes only.
        .route_layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            crate::access::record,
        ))
        // The portal is pages, not API: it is not in the document.
        .merge(crate::portal::router())
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                middleware::idempotent_writes(guarded.clone(), idempotent.clone(), request, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                middleware::refuse_unknown_query(known_query.clone(), request, next)
            },
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(middleware::read_request_body))
        .layer(axum::middleware::from_fn(middleware::refuse_invalid_utf8))
        .layer(axum::middleware::from_fn(middleware::count_requests))
        .layer(axum::middleware::from_fn(middleware::finish_answers))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // Method and path only: query strings and headers may carry tokens or patient data.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

#[cfg(test)]
mod document_tests;
