//! The answers to a request head the server cannot read. hyper writes these itself, before
//! any route sees the request, as a bare status with an empty body; every other error of
//! this server carries the JSON error body, so [`replace`] puts one in (the socket layer,
//! `io::ClientIo`, calls it on what hyper writes).

/// hyper's limit on a request target (path and query), in bytes.
pub const MAX_TARGET_BYTES: usize = 65_534;
/// hyper's limits on a request head: its read buffer, and the number of headers.
pub const MAX_HEAD_BYTES: usize = 8_192 + 4_096 * 100;
pub const MAX_HEADERS: usize = 100;

/// Our answer in place of `written`, if `written` is one of hyper's bodiless answers to a
/// head it could not read (status 400, 414 or 431 with `content-length: 0`); `None` for
/// anything else, which passes untouched. No route of ours answers those statuses without
/// a body, so nothing else matches.
pub(super) fn replace(written: &[u8]) -> Option<Vec<u8>> {
    let status = written.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (status_line, code, message, details) = match status {
        b"400" => (
            "400 Bad Request",
            "malformed_request",
            "the request is not HTTP/1.1 this server can read: check its method, target, version and headers".to_string(),
            serde_json::json!({}),
        ),
        b"414" => (
            "414 URI Too Long",
            "uri_too_long",
            format!("the request target (path and query) is longer than the {MAX_TARGET_BYTES} bytes this server reads"),
            serde_json::json!({ "limit_bytes": MAX_TARGET_BYTES }),
        ),
        b"431" => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            format!("the request head is larger than this server reads: at most {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} headers"),
            serde_json::json!({ "limit_bytes": MAX_HEAD_BYTES, "limit_headers": MAX_HEADERS }),
        ),
        _ => return None,
    };
    let head_end = find(written, b"\r\n\r\n")?;
    let head = written[..head_end + 2].to_ascii_lowercase();
    if written.len() != head_end + 4 || find(&head, b"\r\ncontent-length: 0\r\n").is_none() {
        return None;
    }
    metrics::counter!("ehrs_http_unreadable_heads_total", "status" => &status_line[..3])
        .increment(1);
    let body = serde_json::json!({"error": {"code": code, "message": message, "details": details}});
    Some(super::raw_answer(status_line, &[], &body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_s_bodiless_answers_get_the_json_body() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 03:34:36 GMT\r\n\r\n";
        let ours = String::from_utf8(replace(hyper).unwrap()).unwrap();
        assert!(ours.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(ours.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large");
    }

    #[test]
    fn other_answers_pass_untouched() {
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replace(with_body).is_none());
        let head_of_a_route_answer = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 120\r\n\r\n";
        assert!(replace(head_of_a_route_answer).is_none());
        assert!(replace(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replace(b"HTTP/1.1 4").is_none());
    }
}
