//! Prometheus metrics at `GET /metrics`: requests, events emitted, delivery attempts by
//! outcome, delivery latency, queue depth.
//!
//! The `metrics` facade keeps one recorder per process (its design, not ours); it is
//! installed once and its handle kept in `AppState`.

use crate::auth::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::IpAddr;
use std::sync::OnceLock;

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency_buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// Prometheus text exposition. The counts (patients registered, failed logins, …) are the
/// camp's business: with `EHRS_METRICS_TOKEN` set only a scraper holding it may read them,
/// and without one only a client on this machine.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String),
        (status = 401, description = "No valid metrics token (or, with none configured, a client not on this machine)", body = crate::error::ErrorBody)))]
pub async fn render(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    may_read(state.settings.metrics_token.as_deref(), client, &headers)?;
    if let Ok(depth) = state.webhooks.backend.queue_depth().await {
        metrics::gauge!("ehrs_delivery_queue_depth").set(depth as f64);
    }
    if let Some(uplink) = state.webhooks.backend.uplink() {
        let since = uplink
            .down_since
            .map_or(0.0, |at| at.millis() as f64 / 1000.0);
        metrics::gauge!("ehrs_uplink_down").set(f64::from(u8::from(since > 0.0)));
        metrics::gauge!("ehrs_uplink_down_since_seconds").set(since);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

/// The metrics token, compared in constant time; without one, loopback clients only.
fn may_read(token: Option<&str>, client: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let allowed = match token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))),
        None => client.to_canonical().is_loopback(),
    };
    if allowed {
        return Ok(());
    }
    let message = match token {
        Some(_) => "send the metrics token: Authorization: Bearer <EHRS_METRICS_TOKEN>",
        None => {
            "metrics are served to this machine only; set EHRS_METRICS_TOKEN to let a scraper elsewhere read them"
        }
    };
    Err(ApiError::unauthorized(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_only_this_machine_reads_the_metrics() {
        let none = HeaderMap::new();
        for ok in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(may_read(None, ok.parse().unwrap(), &none).is_ok(), "{ok}");
        }
        for refused in ["192.168.1.5", "10.0.0.2", "fe80::1"] {
            assert!(
                may_read(None, refused.parse().unwrap(), &none).is_err(),
                "{refused}"
            );
        }
        // With a token, the address does not matter: the token does.
        assert!(may_read(Some("t0ken"), "127.0.0.1".parse().unwrap(), &none).is_err());
    }
}
