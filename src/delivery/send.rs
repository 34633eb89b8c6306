//! One delivery attempt: render the envelope, sign it, POST it through the SSRF-guarded
//! client, and report what happened. No database access here.

use crate::crypto::SecretBox;
use crate::outbound::backend::KEPT_RESPONSE_BYTES;
use crate::outbound::fhir::FhirSettings;
use crate::outbound::outcome::{FailureKind, Outcome};
use crate::outbound::payload::{self, OutboxMessage};
use crate::outbound::signing;
use crate::outbound::ssrf::{self, GuardedResolver, Policy};
use crate::outbound::store::Claimed;
use crate::time::Clock;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one HTTP attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// What the answer (or its absence) means, and so what follows.
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub attempted_at: i64,
    pub duration_ms: i64,
}

/// A delivery that was sent, with its attempt: what the recorder writes.
#[derive(Debug)]
pub struct Sent {
    pub delivery: Claimed,
    pub attempt: Attempt,
}

/// The JSON body of `delivery`, in its subscription's payload mode.
pub fn body(delivery: &Claimed, fhir: &FhirSettings) -> Result<String, serde_json::Error> {
    let message = OutboxMessage {
        message_id: delivery.message_id.as_str(),
        event_id: &delivery.event_id,
        event_type: &delivery.event_type,
        created_at: delivery.created_at,
        payload: delivery.payload.as_deref(),
        ids: &delivery.ids,
    };
    payload::render(
        &message,
        delivery.payload_mode,
        Some(delivery.sequence),
        fhir,
    )
}

/// Sends deliveries. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    /// The client's whole-request deadline, named in the message of an attempt that hit it.
    timeout: Duration,
    secrets: SecretBox,
    policy: Arc<Policy>,
    lookup: Arc<dyn ssrf::Lookup>,
    /// Stamps attempts and decides whether a rotated-out secret still signs. The
    /// signature's own timestamp stays on the system clock: the receiver checks it
    /// against its wall clock.
    clock: Clock,
    /// What `fhir` payloads are rendered with.
    fhir: Arc<FhirSettings>,
}

impl HttpSender {
    pub fn from_parts(
        policy: Policy,
        lookup: Arc<dyn ssrf::Lookup>,
        secrets: SecretBox,
        timeout: Duration,
        clock: Clock,
        fhir: FhirSettings,
    ) -> HttpSender {
        let policy = Arc::new(policy);
        HttpSender {
            client: guarded_client(policy.clone(), lookup.clone(), timeout),
            timeout,
            secrets,
            policy,
            lookup,
            clock,
            fhir: Arc::new(fhir),
        }
    }

    pub async fn deliver(&self, delivery: Claimed) -> Sent {
        let started = Instant::now();
        let attempted_at = self.clock.now_ms();
        let attempt = match self.post(&delivery).await {
            Ok((status, retry_after, body)) => Attempt {
                outcome: Outcome::of_answer(status),
                status_code: Some(status),
                response_body: Some(body),
                error: None,
                retry_after,
                attempted_at,
                duration_ms: started.elapsed().as_millis() as i64,
            },
            Err((kind, error)) => Attempt {
                outcome: Outcome::NoAnswer(kind),
                status_code: None,
                response_body: None,
                error: Some(error),
                retry_after: None,
                attempted_at,
                duration_ms: started.elapsed().as_millis() as i64,
            },
        };
        Sent { delivery, attempt }
    }

    /// Whether a TCP connection reaches the host of `url` (an allowed address of it)
    /// within the connect timeout; a refused connection counts, the host was reached.
    /// The uplink's probe, while it is down.
    pub(super) async fn reaches(&self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        let addresses = ssrf::allowed_addresses(&url, &self.policy, self.lookup.as_ref()).await;
        let Some(address) = addresses.ok().and_then(|a| a.first().copied()) else {
            return false;
        };
        let connect = tokio::net::TcpStream::connect((address, port));
        match tokio::time::timeout(connect_timeout(self.timeout), connect).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => err.kind() == std::io::ErrorKind::ConnectionRefused,
            Err(_) => false,
        }
    }

    /// The keys that sign now: the current secret, and the previous one during rotation.
    fn signing_keys(&self, delivery: &Claimed) -> Result<Vec<Vec<u8>>, String> {
        signing::SealedSecrets {
            subscription: delivery.subscription_id.as_str(),
            current: &delivery.secret_enc,
            previous: delivery.previous_secret_enc.as_deref(),
            previous_until: delivery.previous_secret_until,
        }
        .live_keys(&self.secrets, self.clock.now_ms())
    }

    async fn post(
        &self,
        delivery: &Claimed,
    ) -> Result<(u16, Option<Duration>, String), (FailureKind, String)> {
        let refused = |e: String| (FailureKind::Refused, e);
        let url =
            reqwest::Url::parse(&delivery.url).map_err(|e| refused(format!("invalid URL: {e}")))?;
        ssrf::check_before_send(&url, &self.policy, self.lookup.as_ref())
            .await
            .map_err(|refusal| match refusal {
                ssrf::Refusal::Unresolvable(_) => (FailureKind::Unreachable, refusal.to_string()),
                _ => refused(refusal.to_string()),
            })?;
        let body = body(delivery, &self.fhir)
            .map_err(|e| refused(format!("cannot render the payload: {e}")))?;
        let keys = self.signing_keys(delivery).map_err(refused)?;
        let msg_id = delivery.message_id.as_str();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature_header(&keys, msg_id, timestamp, body.as_bytes());
        let timestamp = timestamp.to_string();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", &signature)
            .header("svix-id", msg_id)
            .header("svix-timestamp", &timestamp)
            .header("svix-signature", &signature)
            .header("ehrs-sequence", delivery.sequence.to_string())
            .header("ehrs-event-type", &delivery.event_type)
            .body(body)
            .send()
            .await
            .map_err(|err| describe_error(err, self.timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Ok((status, retry_after, read_truncated(response).await))
    }
}

/// The HTTP client for deliveries: guarded DNS, no proxy (a proxy would resolve names
/// itself, bypassing the guard), no redirects, bounded time.
pub fn guarded_client(
    policy: Arc<Policy>,
    lookup: Arc<dyn ssrf::Lookup>,
    timeout: Duration,
) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy, lookup }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout(timeout))
        .timeout(timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("ehrs-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the webhook HTTP client builds with static settings")
}

/// Reads at most [`KEPT_RESPONSE_BYTES`] of the body (a receiver may answer with a lot).
async fn read_truncated(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = KEPT_RESPONSE_BYTES - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= KEPT_RESPONSE_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// `Retry-After` as seconds or an HTTP date, capped at one day.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds = match value.trim().parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let date = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
            (date.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64
        }
    };
    Some(Duration::from_secs(seconds.min(86_400)))
}

/// Shorter than the whole request's deadline, so that no connection in time is told
/// apart from no answer in time (the first is the network's failure, the second the
/// endpoint's); at most 10 s.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout * 4 / 5).min(Duration::from_secs(10))
}

/// Whether a failed connection never reached the endpoint's host: its name did not
/// resolve, or the network or the host was unreachable (a refused or reset connection
/// did reach it).
fn never_reached(err: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(ssrf::Refusal::Unresolvable(_)) = cause.downcast_ref::<ssrf::Refusal>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable | ErrorKind::NetworkDown
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A transport error in a few words (no URL query strings or headers). A timeout reads
/// the same whichever deadline ran out (reqwest's causes differ: "operation timed out",
/// "deadline has elapsed"), and says how long was waited.
fn describe_error(err: reqwest::Error, timeout: Duration) -> (FailureKind, String) {
    if err.is_timeout() {
        let (waited, what) = if err.is_connect() {
            (connect_timeout(timeout), "no connection")
        } else {
            (timeout, "no answer")
        };
        let message = format!("timed out: {what} within {}", crate::time::seconds(waited));
        // No connection in time is the network's failure; no answer once connected,
        // the endpoint's.
        let kind = if err.is_connect() {
            FailureKind::Unreachable
        } else {
            FailureKind::Timeout
        };
        return (kind, message);
    }
    let (failure, kind) = if err.is_connect() && never_reached(&err) {
        (FailureKind::Unreachable, "network unreachable")
    } else if err.is_connect() {
        (FailureKind::Connect, "connection failed")
    } else if err.is_redirect() {
        (FailureKind::Refused, "redirect refused")
    } else {
        (FailureKind::Refused, "request failed")
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    let message = if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    };
    (failure, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("999999999"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
