//! The layers around every route: request bodies read to their end (and limited), UTF-8
//! paths, request counting, and each answer's finishing touches (the JSON newline, the
//! security headers). Each is a plain `axum::middleware::from_fn` function.

use crate::error::ApiError;
use crate::http::MAX_BODY_BYTES;

/// Past this a declared-oversized body is not read to its end: the connection is simply closed.
const OVERSIZED_DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// Reads every request body to its end before the route runs, whether the route reads it
/// or not, and refuses one over [`MAX_BODY_BYTES`] (413). Why read it all:
/// - a body left unread on a keep-alive connection (a `GET` sent with one, say) makes the
///   server close the connection with data still in the kernel's buffer, and the kernel
///   then resets it, cutting off the answer the client is reading;
/// - the same for a declared-oversized body: answering while the client still sends, then
///   closing, shows the client "connection reset" instead of our 413. So up to
///   [`OVERSIZED_DRAIN_BYTES`] of it is read and dropped first; past that the connection
///   is simply closed.
///
/// The route then reads the body from memory.
pub(super) async fn read_request_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&length| length > MAX_BODY_BYTES as u64) {
        let mut refusal = ApiError::payload_too_large(MAX_BODY_BYTES);
        refusal.details["declared_bytes"] = declared.into();
        if declared <= OVERSIZED_DRAIN_BYTES {
            let drain = request.into_body().collect();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        }
        return closing(refusal);
    }
    let (parts, body) = request.into_parts();
    match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            closing(ApiError::payload_too_large(MAX_BODY_BYTES))
        }
        Err(err) if let Some(limit) = deadline_of(err.as_ref()).map(|d| d.0.as_secs()) => closing(
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive in full within {limit} s"),
            )
            .with_details(serde_json::json!({ "limit_seconds": limit })),
        ),
        Err(err) => ApiError::bad_request(
            "unreadable_body",
            format!("the request body could not be read to its end: {err}"),
        )
        .into_response(),
    }
}

/// The server's body deadline, if that is what ended the body (`server::BodyDeadline`,
/// wrapped by axum's and the limit's errors).
fn deadline_of<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::server::BodyDeadline> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(deadline) = err.downcast_ref::<crate::server::BodyDeadline>() {
            return Some(deadline);
        }
        cause = err.source();
    }
    None
}

/// The answer, with the connection closed after it (the rest of the body is not read).
fn closing(error: ApiError) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Counts requests by method, route and status. Labels stay bounded whatever clients
/// send: a method outside the standard ones is `OTHER`, and the route is the matched
/// template (`/api/v1/patients/{book_no}`, never the id itself) or `unmatched`.
pub(super) async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics::counter!("ehrs_http_requests_total", "method" => method, "route" => route, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

/// A path or query whose percent-escapes do not decode to UTF-8 names nothing: a JSON 400
/// before routing (axum's own rejection is plain text, and a query would be read lossily).
pub(super) async fn refuse_invalid_utf8(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use percent_encoding::percent_decode_str;
    let uri = request.uri();
    if percent_decode_str(uri.path()).decode_utf8().is_err() {
        return ApiError::bad_request(
            "invalid_path",
            "the path is not valid UTF-8 once percent-decoded",
        )
        .into_response();
    }
    let bad_query = uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| percent_decode_str(pair).decode_utf8().is_err())
    });
    if bad_query {
        return ApiError::bad_request(
            "invalid_query",
            "the query string is not valid UTF-8 once percent-decoded",
        )
        .into_response();
    }
    next.run(request).await
}

/// The Content-Security-Policy of API answers (JSON and text: nothing to load or frame).
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The policy of pages (`/docs`, and any other HTML page that sets none of its own): only
/// this server's own files, no inline script, never framed. Swagger UI needs inline styles
/// and `data:` images.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Every answer's finishing touches, whatever route or fallback produced it: a JSON answer
/// ends with a newline ([`end_with_newline`]), and the security headers: no MIME
/// sniffing, no referrer, never framed, and `Cache-Control: no-store` (answers carry
/// patient data and tokens; camp laptops are shared). A handler may set its own
/// `Cache-Control` or `Content-Security-Policy`; the rest are always set.
pub(super) async fn finish_answers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        response = end_with_newline(response).await;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(if is_html {
            PAGE_CSP
        } else {
            API_CSP
        }));
    response
}

/// A JSON answer with a newline at its end, as a text file ends: answers printed one after
/// another (`curl`, a shell script) then stay on lines of their own.
async fn end_with_newline(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (mut parts, body) = response.into_parts();
    // JSON answers are built in memory, so reading one back cannot fail.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => return ApiError::internal(anyhow::Error::new(err)).into_response(),
    };
    if bytes.ends_with(b"\n") {
        return axum::response::Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut text = Vec::with_capacity(bytes.len() + 1);
    text.extend_from_slice(&bytes);
    text.push(b'\n');
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(text))
}

/// The query parameters each documented operation takes, read from the OpenAPI document,
/// so what is refused and what is documented cannot drift.
pub(super) struct KnownQuery {
    /// Route template (`/api/v1/patients/{book_no}`), then method, then parameter names.
    by_route: std::collections::HashMap<String, Vec<(axum::http::Method, Vec<String>)>>,
}

/// A documented path's operations, each with its method.
fn operations(
    item: &utoipa::openapi::PathItem,
) -> [(
    axum::http::Method,
    &Option<utoipa::openapi::path::Operation>,
); 7] {
    use axum::http::Method;
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::PATCH, &item.patch),
        (Method::HEAD, &item.head),
        (Method::OPTIONS, &item.options),
    ]
}

impl KnownQuery {
    pub(super) fn from_document(document: &utoipa::openapi::OpenApi) -> Self {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::ParameterIn;
        let mut by_route = std::collections::HashMap::new();
        for (path, item) in &document.paths.paths {
            let methods = operations(item)
                .into_iter()
                .filter_map(|(method, operation)| {
                    let parameters = operation.as_ref()?.parameters.iter().flatten();
                    let names = item
                        .parameters
                        .iter()
                        .flatten()
                        .chain(parameters)
                        .filter_map(|parameter| match parameter {
                            RefOr::T(p) if p.parameter_in == ParameterIn::Query => {
                                Some(p.name.clone())
                            }
                            _ => None,
                        })
                        .collect();
                    Some((method, names))
                })
                .collect();
            by_route.insert(path.clone(), methods);
        }
        KnownQuery { by_route }
    }

    /// The parameters `method` on `route` takes; `None` for what the document does not
    /// describe (the portal's files, the fallback).
    fn of(&self, route: &str, method: &axum::http::Method) -> Option<&[String]> {
        let methods = self.by_route.get(route)?;
        let (_, names) = methods.iter().find(|(m, _)| m == method)?;
        Some(names)
    }
}

/// A query parameter a documented route does not take is refused (422, each one named,
/// with the parameters the route does take), as an unknown body field is: a misspelt
/// filter (`?stauts=failed`) silently ignored would answer with every record instead.
/// Routes the document does not describe (the portal's files) ignore their query string.
pub(super) async fn refuse_unknown_query(
    known: std::sync::Arc<KnownQuery>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(query) = request.uri().query().filter(|query| !query.is_empty()) else {
        return next.run(request).await;
    };
    let taken = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|route| known.of(route.as_str(), request.method()));
    let Some(taken) = taken else {
        return next.run(request).await;
    };
    let mut errors = crate::validation::FieldErrors::new();
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        if name.is_empty() || taken.iter().any(|known| *known == name) {
            continue;
        }
        let reason = if taken.is_empty() {
            "is not a parameter of this route, which takes none".to_string()
        } else {
            format!(
                "is not a parameter of this route (known: {})",
                taken.join(", ")
            )
        };
        errors.add(&name, reason);
    }
    match errors.finish() {
        Ok(()) => next.run(request).await,
        Err(errors) => ApiError::from(errors).into_response(),
    }
}

/// The routes that take an `Idempotency-Key`: the document's signed-in writes (the same
/// rule by which the document declares the header, `openapi::contract`).
pub(super) struct IdempotentRoutes(std::collections::HashSet<(String, axum::http::Method)>);

impl IdempotentRoutes {
    pub(super) fn from_document(document: &utoipa::openapi::OpenApi) -> Self {
        use axum::http::Method;
        let mut routes = std::collections::HashSet::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in operations(item) {
                let read = [Method::GET, Method::HEAD, Method::OPTIONS].contains(&method);
                if !read
                    && operation
                        .as_ref()
                        .is_some_and(crate::openapi::contract::is_signed_in)
                {
                    routes.insert((path.clone(), method));
                }
            }
        }
        IdempotentRoutes(routes)
    }

    fn guard(&self, request: &axum::extract::Request) -> bool {
        let Some(route) = request.extensions().get::<axum::extract::MatchedPath>() else {
            return false;
        };
        self.0
            .contains(&(route.as_str().to_string(), request.method().clone()))
    }
}

/// A signed-in write with an `Idempotency-Key` runs once per key (see `idempotency`).
/// Without the header, or on other routes, the request passes untouched.
pub(super) async fn idempotent_writes(
    state: crate::state::AppState,
    routes: std::sync::Arc<IdempotentRoutes>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    // The header first: a request without one (nearly all) costs one header lookup.
    if !request.headers().contains_key(crate::idempotency::HEADER) || !routes.guard(&request) {
        return next.run(request).await;
    }
    let key = match crate::idempotency::guard::key_of(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(refusal) => return refusal.into_response(),
    };
    let (mut parts, body) = request.into_parts();
    let user = match crate::auth::CurrentUser::from_request_parts(&mut parts, &state).await {
        Ok(user) => user,
        Err(refusal) => return refusal.into_response(),
    };
    let request = axum::extract::Request::from_parts(parts, body);
    state.idempotency.run(user.id, key, request, next).await
}
