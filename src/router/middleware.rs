//! The layers around every route: body limits, reading bodies to their end, UTF-8 paths,
//! request counting, the JSON answers' closing newline and the security headers. Each is
//! a plain `axum::middleware::from_fn` function.

use crate::error::ApiError;
use crate::http::MAX_BODY_BYTES;

/// Past this a declared-oversized body is not read to its end: the connection is simply closed.
const OVERSIZED_DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// Refuses a body whose declared length is over [`MAX_BODY_BYTES`] before any handler runs,
/// and reads the body to its end first. Why: a server that answers while the client is
/// still sending, then closes, makes the kernel reset the connection, and the client sees
/// "connection reset" instead of our 413. (Chunked bodies with no declared length are
/// still cut off by the extractors' limit.)
pub(super) async fn refuse_oversized_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&length| length > MAX_BODY_BYTES as u64) else {
        return next.run(request).await;
    };
    let mut refusal = ApiError::payload_too_large(MAX_BODY_BYTES);
    refusal.details["declared_bytes"] = declared.into();
    if declared <= OVERSIZED_DRAIN_BYTES {
        let mut body = request.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    }
    let mut response = refusal.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Reads every request body to its end before the route runs, whether the route reads it
/// or not (a `GET` sent with a body, say). Why: a body left unread on a keep-alive
/// connection makes the server close it with data still in the kernel's buffer, and the
/// kernel then resets the connection, cutting off the answer the client is reading.
/// The body is then handed to the route from memory; the size limit is the same.
pub(super) async fn read_whole_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let request = axum::extract::Request::from_parts(parts.clone(), body);
    match bytes::Bytes::from_request(request, &()).await {
        Ok(bytes) => {
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(request).await
        }
        Err(rejection) => {
            let mut response =
                crate::http::body_rejection(rejection, MAX_BODY_BYTES).into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// Ends every JSON answer with a newline, as a text file ends: answers printed one after
/// another (`curl`, a shell script) then stay on lines of their own.
pub(super) async fn end_json_with_newline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return response;
    }
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
    parts.headers.remove(header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(text))
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

/// Security headers on every answer, whatever route or fallback produced it: no MIME
/// sniffing, no referrer, never framed, and `Cache-Control: no-store` (answers carry
/// patient data and tokens; camp laptops are shared). A handler may set its own
/// `Cache-Control` or `Content-Security-Policy`; the rest are always set.
pub(super) async fn security_headers(
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
