//! The demo's webhook receiver: an HTTP server on 127.0.0.1 that verifies each delivery's
//! Standard Webhooks signature with the functions of `crate::outbound::signing`, as an
//! integrator's receiver would, and hands it to the walk.

use crate::outbound::signing;
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// Signatures older or newer than this are refused (the Standard Webhooks default).
const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// One webhook as the receiver got it.
pub struct Delivery {
    pub event_type: String,
    pub sequence: String,
    pub verified: bool,
    pub at: Instant,
}

pub type Deliveries = mpsc::UnboundedReceiver<Delivery>;

/// A receiver on 127.0.0.1 that verifies each webhook with the subscription's key (set once
/// the subscription exists) and passes it on.
pub async fn start_receiver() -> anyhow::Result<(String, Arc<OnceLock<Vec<u8>>>, Deliveries)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks", listener.local_addr()?);
    let key: Arc<OnceLock<Vec<u8>>> = Arc::default();
    let (sender, deliveries) = mpsc::unbounded_channel();
    let handler_key = key.clone();
    let handler = move |headers: HeaderMap, body: Bytes| {
        let at = Instant::now();
        let verified = handler_key
            .get()
            .is_some_and(|key| verify(key, &headers, &body));
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = sender.send(Delivery {
            event_type: json["type"].as_str().unwrap_or("?").to_string(),
            sequence: json["sequence"].to_string(),
            verified,
            at,
        });
        std::future::ready("ok")
    };
    let router = axum::Router::new().route("/webhooks", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((url, key, deliveries))
}

/// Standard Webhooks verification with our own signing functions: a fresh timestamp and one
/// `v1,` signature (of possibly several, during a rotation) equal to ours.
fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
        return false;
    }
    let expected = signing::sign(key, id, timestamp, body);
    signatures
        .split(' ')
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn verifies_our_signatures_and_refuses_tampering_and_stale_timestamps() {
        let key = signing::secret_key(&signing::generate_secret()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"type":"camp.created"}"#;
        let good = signing::signature_header(&[vec![9; 32], key.clone()], "msg_1", now, body);
        assert!(verify(&key, &headers("msg_1", now, &good), body));
        assert!(!verify(&key, &headers("msg_2", now, &good), body));
        assert!(!verify(&key, &headers("msg_1", now, &good), b"{}"));
        let stale = now - 3600;
        let old = signing::sign(&key, "msg_1", stale, body);
        assert!(!verify(&key, &headers("msg_1", stale, &old), body));
        assert!(!verify(&key, &HeaderMap::new(), body));
    }
}
