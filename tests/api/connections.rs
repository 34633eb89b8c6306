//! The server's connection limits (issue 23, findings 1, 2 and 9), seen from outside: a
//! real `ehrs serve` with short settings, and real sockets that drip, stall or pile up.

use crate::auth_process::serve;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn address_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `server` from the loopback address `from` (127.0.0.1, 127.0.0.2, …).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Everything the server sends until it closes the connection (or 20 s pass).
async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// The body of `GET url`, on a connection of its own.
async fn fetch(url: &str) -> Vec<u8> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client.get(url).send().await.unwrap();
    answer.bytes().await.unwrap().to_vec()
}

/// The value of one sample line of `/metrics` (0 when absent).
async fn metric(base: &str, sample: &str) -> f64 {
    let text = String::from_utf8(fetch(&format!("{base}/metrics")).await).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn connections_over_a_cap_are_answered_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EHRS_HTTP_MAX_CONNECTIONS", "3"),
        ("EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "2"),
    ];
    let (_server, base) = serve(dir.path(), &env, None).await;
    let server = address_of(&base);
    // The start-up check's connection is closed; let the server see it go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let request = b"GET /health HTTP/1.1\r\nHost: camp\r\n\r\n";
    let refused = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).to_string();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("\r\nretry-after: 5\r\n"), "{text}");
        let body: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections", "{text}");
        body["error"]["details"]["setting"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut held = vec![
        connect_from("127.0.0.1", server).await,
        connect_from("127.0.0.1", server).await,
    ];
    let mut third = connect_from("127.0.0.1", server).await;
    third.write_all(request).await.unwrap();
    let (answer, closed) = read_to_close(&mut third).await;
    assert!(closed);
    assert_eq!(refused(&answer), "EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS");
    // Another address has places of its own, up to the overall cap.
    held.push(connect_from("127.0.0.2", server).await);
    let mut fourth = connect_from("127.0.0.2", server).await;
    fourth.write_all(request).await.unwrap();
    let (answer, _) = read_to_close(&mut fourth).await;
    assert_eq!(refused(&answer), "EHRS_HTTP_MAX_CONNECTIONS");
    // A held connection is served as usual, and a place given back is taken again.
    held[0].write_all(request).await.unwrap();
    let mut head = [0u8; 15];
    held[0].read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    drop(held);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    crate::support::eventually("the places are given back", || async {
        let answer = client.get(format!("{base}/health")).send().await;
        answer.is_ok_and(|answer| answer.status() == 200)
    })
    .await;
    drop(client);
    let refused_by =
        |limit: &str| format!("ehrs_http_connections_refused_total{{limit=\"{limit}\"}}");
    assert_eq!(metric(&base, &refused_by("per_address")).await, 1.0);
    assert_eq!(metric(&base, &refused_by("overall")).await, 1.0);
    assert!(metric(&base, "ehrs_http_connections_open").await >= 1.0);
}

#[tokio::test]
async fn silent_dripping_and_unread_connections_are_cut_at_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EHRS_HTTP_HEADER_TIMEOUT", "1s"),
        ("EHRS_HTTP_BODY_TIMEOUT", "2s"),
        ("EHRS_HTTP_WRITE_TIMEOUT", "2s"),
    ];
    let (_server, base) = serve(dir.path(), &env, None).await;
    let server = address_of(&base);

    // Silent: closed once the head has not come within 1 s.
    let mut silent = connect_from("127.0.0.1", server).await;
    let (answer, closed) = read_to_close(&mut silent).await;
    assert!(
        closed && answer.is_empty(),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Dripping a body: 408 at 2 s from the head, whatever the drip.
    let mut dripping = connect_from("127.0.0.1", server).await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: camp\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    dripping.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _ = dripping.write_all(b" ").await;
    }
    let (answer, closed) = read_to_close(&mut dripping).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(closed && answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    // Never reading: eight answers of the 1.5 MB Swagger UI bundle, asked at once, do not
    // fit in the sockets' buffers; the connection is closed 2 s after the first byte.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server).await.unwrap();
    let asked = "GET /docs/swagger-ui-bundle.js HTTP/1.1\r\nHost: camp\r\n\r\n".repeat(8);
    stalled.write_all(asked.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (answer, closed) = read_to_close(&mut stalled).await;
    assert!(closed, "the server closed the connection");
    let bundle = fetch(&format!("{base}/docs/swagger-ui-bundle.js"))
        .await
        .len();
    assert!(
        answer.len() < 8 * bundle,
        "{} of {} bytes",
        answer.len(),
        8 * bundle
    );

    let timeouts = |phase: &str| format!("ehrs_http_timeouts_total{{phase=\"{phase}\"}}");
    assert!(metric(&base, &timeouts("header_read")).await >= 1.0);
    assert!(metric(&base, &timeouts("body_read")).await >= 1.0);
    assert!(metric(&base, &timeouts("answer_write")).await >= 1.0);
}
