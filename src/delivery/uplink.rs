//! Whether the camp's uplink is down, told apart from partners that are down.
//!
//! Every send reports here when it starts and how it ended. An attempt that ended in a
//! failure of the network (`FailureClass::Network`: the name did not resolve, the network
//! or host was unreachable, no connection within the connect timeout) is judged before
//! anything acts on it:
//!
//! - some endpoint answered after this attempt began: the network worked, so the failure
//!   is this endpoint's, as before;
//! - every endpoint tried lately, two hosts or more, failed this way since the last
//!   answer: the uplink is down (with `EHRS_UPLINK_PROBE` set, the probe must confirm);
//! - other endpoints are still being tried: wait, at most one attempt's timeout, for them
//!   to tell;
//! - this is the only endpoint tried: `EHRS_UPLINK_PROBE`, when set, decides. Without it
//!   nothing tells a down link from a down partner, and the failure stays the endpoint's.
//!
//! While the uplink is down, the attempts it fails are [`Outcome::UplinkDown`] (no retry
//! used, no step toward auto-pause), the dispatcher sends and claims nothing, and this
//! module's task probes every `EHRS_UPLINK_PROBE_INTERVAL`: the configured probe, or else
//! a TCP connection to the endpoints' own addresses in turn (a refused connection counts:
//! the host was reached). Any answer ends the outage. Each change is logged, written to
//! the audit trail, and shown by `/health`, `/metrics` and `GET /webhooks/status`.
//!
//! The state is per process: on PostgreSQL each instance judges its own link.

use super::send::{HttpSender, Sent};
use crate::config::UplinkProbe;
use crate::db::Db;
use crate::outbound::audit;
use crate::outbound::backend::UplinkStatus;
use crate::outbound::outcome::{FailureClass, FailureKind, Outcome};
use crate::outbound::store::Claimed;
use crate::time::{Clock, Timestamp};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Endpoints in flight, or tried within this window, are the ones "being tried".
const TRIED_WITHIN: Duration = Duration::from_secs(60);
/// Endpoints tried within this window are probed in turn while the uplink is down.
const PROBED_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// A configured probe's answer stands this long for the verdicts that ask for it.
const PROBE_FRESH: Duration = Duration::from_secs(5);

/// The uplink's state, shared by the engines of a process. Cheap to clone.
#[derive(Clone)]
pub struct Uplink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("down", &self.is_down())
            .finish()
    }
}

struct Shared {
    state: Mutex<Tracker>,
    /// `down` below, readable without a lock by the dispatcher on every round.
    is_down: AtomicBool,
    /// When the uplink went down (engine clock), or `None`.
    down: watch::Sender<Option<Timestamp>>,
    /// Bumped on every report: verdicts waiting for other endpoints watch it.
    reports: watch::Sender<u64>,
    outages: AtomicU64,
    probe: Option<UplinkProbe>,
    probe_interval: Duration,
    /// One attempt's deadline: the longest a verdict waits for other endpoints, and a
    /// probe's.
    timeout: Duration,
    clock: Clock,
    /// The configured probe's last answer (one probe at a time).
    probed: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Whether a probing task runs for this state (one per process, however many
    /// engines).
    task_started: AtomicBool,
}

#[derive(Default)]
struct Tracker {
    /// How many endpoints have `unreachable` set (most answers have none to clear).
    flagged: usize,
    /// When an endpoint last answered (any sign the network carried us to it).
    last_answer: Option<Instant>,
    /// By host.
    endpoints: HashMap<String, Endpoint>,
    last_probe: Option<(Timestamp, bool)>,
    /// The next endpoint the probe reaches for.
    next_probed: usize,
}

struct Endpoint {
    /// A URL at that host, for the probe's address and port.
    url: String,
    in_flight: u32,
    last_started: Instant,
    /// An attempt begun after the last answer failed for the network's sake.
    unreachable: bool,
}

/// When an attempt began, to report its end.
struct Started {
    at: Instant,
}

/// What an attempt that failed for the network's sake was.
enum Verdict {
    /// The endpoint's failure: the network worked meanwhile, or nothing tells otherwise.
    Endpoint,
    /// The uplink is down.
    Outage,
    /// Other endpoints are being tried: wait for them.
    Wait,
    /// Only the configured probe can tell.
    AskProbe,
}

/// How an attempt ended, as far as the uplink is concerned.
#[derive(PartialEq)]
enum Ended {
    /// The network carried us to the endpoint (an HTTP answer, a refused connection, a
    /// TLS failure, a timeout once connected).
    Answered,
    Unreachable,
    /// Refused before sending (SSRF guard, bad URL): says nothing about the network.
    Neither,
}

impl Uplink {
    pub fn new(
        probe: Option<UplinkProbe>,
        probe_interval: Duration,
        timeout: Duration,
        clock: Clock,
    ) -> Uplink {
        Uplink {
            shared: Arc::new(Shared {
                state: Mutex::new(Tracker::default()),
                is_down: AtomicBool::new(false),
                down: watch::Sender::new(None),
                reports: watch::Sender::new(0),
                outages: AtomicU64::new(0),
                probe,
                probe_interval,
                timeout,
                clock,
                probed: tokio::sync::Mutex::new(None),
                task_started: AtomicBool::new(false),
            }),
        }
    }

    pub fn is_down(&self) -> bool {
        self.shared.is_down.load(Ordering::Relaxed)
    }

    /// When the uplink went down, or `None` while it is up; changes are announced.
    pub fn watch(&self) -> watch::Receiver<Option<Timestamp>> {
        self.shared.down.subscribe()
    }

    /// When the uplink went down, or `None` while it is up.
    pub fn down_since(&self) -> Option<Timestamp> {
        *self.shared.down.borrow()
    }

    /// What the admin status route, `/health` and `/metrics` show.
    pub fn status(&self) -> UplinkStatus {
        let down_since = self.down_since();
        let last_probe = self.lock().last_probe;
        UplinkStatus {
            state: if down_since.is_some() { "down" } else { "up" },
            down_since,
            outages: self.shared.outages.load(Ordering::Relaxed),
            last_probe_at: last_probe.map(|(at, _)| at),
            last_probe_reached: last_probe.map(|(_, reached)| reached),
            probe: match &self.shared.probe {
                Some(probe) => probe.to_string(),
                None => "endpoints".to_string(),
            },
        }
    }

    /// Sends `delivery`, and judges a failure of the network against the uplink.
    pub(super) async fn send(&self, sender: &HttpSender, delivery: Claimed) -> Sent {
        let started = self.started(&delivery.url);
        let mut sent = sender.deliver(delivery).await;
        let host = host_of(&sent.delivery.url);
        sent.attempt.outcome = self.judge(host, started, sent.attempt.outcome).await;
        sent
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn started(&self, url: &str) -> Started {
        let host = host_of(url);
        let at = Instant::now();
        let mut state = self.lock();
        match state.endpoints.get_mut(host) {
            Some(endpoint) => {
                endpoint.in_flight += 1;
                endpoint.last_started = at;
            }
            None => {
                let endpoint = Endpoint {
                    url: url.to_string(),
                    in_flight: 1,
                    last_started: at,
                    unreachable: false,
                };
                state.endpoints.insert(host.to_string(), endpoint);
            }
        }
        Started { at }
    }

    async fn judge(&self, host: &str, started: Started, outcome: Outcome) -> Outcome {
        let ended = match outcome.failure_class() {
            _ if outcome == Outcome::NoAnswer(FailureKind::Refused) => Ended::Neither,
            Some(FailureClass::Network) => Ended::Unreachable,
            None | Some(FailureClass::Endpoint) => Ended::Answered,
        };
        let (mut verdict, reports) = self.report(host, &started, &ended);
        let Some(mut reports) = reports else {
            return outcome;
        };
        let deadline = Instant::now() + self.shared.timeout + Duration::from_secs(1);
        loop {
            match verdict {
                Verdict::Endpoint => return outcome,
                Verdict::Outage => return Outcome::UplinkDown,
                Verdict::AskProbe => {
                    let down = self.probe_confirms_down(started.at).await;
                    let state = self.lock();
                    // An endpoint may have answered while the probe ran.
                    let answered = state.last_answer.is_some_and(|at| at > started.at);
                    drop(state);
                    return if down && !answered {
                        self.declare_down();
                        Outcome::UplinkDown
                    } else {
                        outcome
                    };
                }
                Verdict::Wait => {
                    // Nothing told in time: judge it as before this module existed.
                    if tokio::time::timeout_at(deadline, reports.changed())
                        .await
                        .is_err()
                    {
                        return outcome;
                    }
                    verdict = self.evaluate(&mut self.lock(), &started);
                }
            }
        }
    }

    /// Records how an attempt ended. For a failure of the network, returns the first
    /// verdict, and the reports to watch while it waits (subscribed under the lock, so
    /// no later change is missed).
    fn report(
        &self,
        host: &str,
        started: &Started,
        ended: &Ended,
    ) -> (Verdict, Option<watch::Receiver<u64>>) {
        let mut state = self.lock();
        if let Some(endpoint) = state.endpoints.get_mut(host) {
            endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        }
        let (verdict, reports) = match ended {
            Ended::Answered => {
                self.answered(&mut state);
                (Verdict::Endpoint, None)
            }
            Ended::Neither => (Verdict::Endpoint, None),
            Ended::Unreachable => {
                let answered_since = state.last_answer.is_some_and(|at| at > started.at);
                if let Some(endpoint) = state.endpoints.get_mut(host)
                    && !answered_since
                    && !endpoint.unreachable
                {
                    endpoint.unreachable = true;
                    state.flagged += 1;
                }
                let reports = self.shared.reports.subscribe();
                (self.evaluate(&mut state, started), Some(reports))
            }
        };
        drop(state);
        // Only verdicts that wait listen; most sends find none.
        if self.shared.reports.receiver_count() > 0 {
            self.shared.reports.send_modify(|n| *n += 1);
        }
        (verdict, reports)
    }

    fn evaluate(&self, state: &mut Tracker, started: &Started) -> Verdict {
        if state.last_answer.is_some_and(|at| at > started.at) {
            return Verdict::Endpoint;
        }
        if self.is_down() {
            return Verdict::Outage;
        }
        // An endpoint that answered a moment ago and has more to receive is being tried
        // too: its next attempt tells whether the network still works.
        let since = Instant::now().checked_sub(TRIED_WITHIN);
        let tried = state
            .endpoints
            .values()
            .filter(|e| e.in_flight > 0 || since.is_none_or(|since| e.last_started >= since));
        let (count, unreachable) = tried.fold((0, 0), |(count, unreachable), e| {
            (count + 1, unreachable + usize::from(e.unreachable))
        });
        let probe = self.shared.probe.is_some();
        match (count, unreachable) {
            (2.., n) if n == count && probe => Verdict::AskProbe,
            (2.., n) if n == count => {
                self.declare_down();
                Verdict::Outage
            }
            (2.., _) => Verdict::Wait,
            _ if probe => Verdict::AskProbe,
            _ => Verdict::Endpoint,
        }
    }

    /// An endpoint answered: the network works.
    fn answered(&self, state: &mut Tracker) {
        state.last_answer = Some(Instant::now());
        if state.flagged > 0 {
            state.flagged = 0;
            for endpoint in state.endpoints.values_mut() {
                endpoint.unreachable = false;
            }
        }
        if self.shared.is_down.swap(false, Ordering::SeqCst) {
            self.shared.down.send_replace(None);
        }
    }

    fn declare_down(&self) {
        if !self.shared.is_down.swap(true, Ordering::SeqCst) {
            self.shared.outages.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ehrs_uplink_outages_total").increment(1);
            self.shared.down.send_replace(Some(self.shared.clock.now()));
        }
    }

    /// Asks the configured probe (or takes its answer of the last few seconds, if it came
    /// after `after`); true when it did not reach its target.
    async fn probe_confirms_down(&self, after: Instant) -> bool {
        let Some(probe) = &self.shared.probe else {
            return false;
        };
        let mut probed = self.shared.probed.lock().await;
        if let Some((at, reached)) = *probed
            && at >= after
            && at.elapsed() < PROBE_FRESH
        {
            return !reached;
        }
        let reached = reach_probe(probe, self.shared.timeout).await;
        *probed = Some((Instant::now(), reached));
        drop(probed);
        let mut state = self.lock();
        state.last_probe = Some((self.shared.clock.now(), reached));
        if reached {
            self.answered(&mut state);
        }
        !reached
    }

    /// One probe while the uplink is down: the configured one, or the next endpoint's
    /// address. Reaching it ends the outage.
    async fn probe_once(&self, sender: &HttpSender) {
        let reached = match &self.shared.probe {
            Some(probe) => reach_probe(probe, self.shared.timeout).await,
            None => match self.next_probed() {
                Some(url) => sender.reaches(&url).await,
                None => false,
            },
        };
        let mut state = self.lock();
        state.last_probe = Some((self.shared.clock.now(), reached));
        if reached {
            self.answered(&mut state);
        }
    }

    /// The URL of the next endpoint to probe, in turn among those tried lately (the
    /// others are forgotten: a deleted subscription's host is not probed for long).
    fn next_probed(&self) -> Option<String> {
        let mut state = self.lock();
        let now = Instant::now();
        let recent =
            |e: &Endpoint| e.in_flight > 0 || now.duration_since(e.last_started) < PROBED_WITHIN;
        state.endpoints.retain(|_, e| recent(e));
        let mut urls: Vec<(&String, &String)> = state
            .endpoints
            .iter()
            .map(|(host, e)| (host, &e.url))
            .collect();
        if urls.is_empty() {
            return None;
        }
        urls.sort();
        let url = urls[state.next_probed % urls.len()].1.clone();
        state.next_probed = state.next_probed.wrapping_add(1);
        Some(url)
    }
}

/// The host a stored endpoint URL names, read without parsing it whole (this runs for
/// every send): what lies between `://` and the next `/`, `?` or `#`, less the port.
/// Stored URLs are normalised and carry no credentials (`outbound::ssrf::check_url`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    }
}

/// Whether the configured probe reaches its target within `timeout`: any HTTP answer
/// for a URL, a TCP connection (or a refusal: the host was reached) for `host:port`.
async fn reach_probe(probe: &UplinkProbe, timeout: Duration) -> bool {
    match probe {
        UplinkProbe::Url(url) => {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build();
            match client {
                Ok(client) => client.head(url.as_str()).send().await.is_ok(),
                Err(_) => false,
            }
        }
        UplinkProbe::Address(address) => {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_)) => true,
                Ok(Err(err)) => err.kind() == std::io::ErrorKind::ConnectionRefused,
                Err(_) => false,
            }
        }
    }
}

/// Starts the probing task for `uplink` in `tasks`, once per process.
pub(super) fn start(
    tasks: &mut crate::tasks::Tasks,
    uplink: &Uplink,
    db: &Db,
    sender: &HttpSender,
) {
    if uplink.shared.task_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let (uplink, db, sender) = (uplink.clone(), db.clone(), sender.clone());
    tasks.spawn(move |stop| run(uplink, db, sender, stop));
}

/// Records each change of the uplink's state, and probes while it is down.
async fn run(uplink: Uplink, db: Db, sender: HttpSender, mut stop: watch::Receiver<bool>) {
    let mut down = uplink.watch();
    let mut recorded: Option<Timestamp> = None;
    while !*stop.borrow() {
        let now = *down.borrow_and_update();
        if recorded != now {
            if let Some(since) = recorded.take() {
                let restored_at = uplink.shared.clock.now();
                let details = json!({"down_since": since, "restored_at": restored_at});
                tracing::info!(%details, "the camp's uplink is back: waiting deliveries go out in sequence order");
                record_change(&db, "uplink.restored", details).await;
            }
            if let Some(since) = now {
                let details = json!({"since": since, "probe": uplink.status().probe});
                tracing::warn!(%details, "the camp's uplink is down: deliveries wait, and no retry or auto-pause counts until it returns");
                record_change(&db, "uplink.down", details).await;
            }
            recorded = now;
        }
        if recorded.is_some() {
            tokio::select! {
                _ = tokio::time::sleep(uplink.shared.probe_interval) => uplink.probe_once(&sender).await,
                _ = down.changed() => {}
                _ = stop.changed() => {}
            }
        } else {
            tokio::select! {
                _ = down.changed() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Writes a change of the uplink's state to the audit trail.
async fn record_change(db: &Db, action: &str, details: serde_json::Value) {
    let written = async {
        let mut tx = db.begin().await?;
        audit::record(&mut tx, None, "system", action, None, &details).await?;
        tx.commit().await
    };
    if let Err(err) = written.await {
        tracing::warn!(error = %err, action, "could not write the uplink's change to the audit trail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNREACHABLE: Outcome = Outcome::NoAnswer(FailureKind::Unreachable);

    fn uplink() -> Uplink {
        Uplink::new(
            None,
            Duration::from_secs(15),
            Duration::from_secs(1),
            Clock::system(),
        )
    }

    #[tokio::test]
    async fn every_host_tried_failing_at_the_network_level_is_an_outage() {
        let uplink = uplink();
        let lab = uplink.started("https://lab.example.org/hook");
        let pharmacy = uplink.started("https://pharmacy.example.org:8443/hook");
        // The lab's failure waits for the pharmacy, which then fails the same way.
        let lab_verdict = tokio::spawn({
            let uplink = uplink.clone();
            async move { uplink.judge("lab.example.org", lab, UNREACHABLE).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !lab_verdict.is_finished(),
            "one host of two says nothing yet"
        );
        let pharmacy_verdict = uplink
            .judge("pharmacy.example.org", pharmacy, UNREACHABLE)
            .await;
        assert_eq!(pharmacy_verdict, Outcome::UplinkDown);
        assert_eq!(lab_verdict.await.unwrap(), Outcome::UplinkDown);
        assert!(uplink.is_down() && uplink.status().state == "down");

        // Any answer ends the outage.
        let again = uplink.started("https://lab.example.org/hook");
        let answered = uplink
            .judge("lab.example.org", again, Outcome::of_answer(500))
            .await;
        assert_eq!(answered, Outcome::Rejected);
        assert!(!uplink.is_down());
        assert_eq!(uplink.status().outages, 1);
    }

    #[tokio::test]
    async fn a_host_unreachable_while_another_answers_is_that_host_s_failure() {
        let uplink = uplink();
        let lab = uplink.started("https://lab.example.org/hook");
        let pharmacy = uplink.started("https://pharmacy.example.org/hook");
        let answered = uplink
            .judge("pharmacy.example.org", pharmacy, Outcome::of_answer(204))
            .await;
        assert_eq!(answered, Outcome::Delivered);
        let lab_verdict = uplink.judge("lab.example.org", lab, UNREACHABLE).await;
        assert_eq!(lab_verdict, UNREACHABLE, "the network worked meanwhile");
        assert!(!uplink.is_down());
    }

    #[tokio::test]
    async fn one_host_alone_without_a_probe_stays_the_endpoint_s_failure() {
        let uplink = uplink();
        let lab = uplink.started("http://10.0.5.2:8080/hook");
        let verdict = uplink.judge("10.0.5.2", lab, UNREACHABLE).await;
        assert_eq!(verdict, UNREACHABLE);
        assert!(!uplink.is_down());
    }

    #[tokio::test]
    async fn a_refusal_before_sending_says_nothing_about_the_network() {
        let uplink = uplink();
        let lab = uplink.started("https://lab.example.org/hook");
        let pharmacy = uplink.started("https://pharmacy.example.org/hook");
        let refused = Outcome::NoAnswer(FailureKind::Refused);
        assert_eq!(
            uplink
                .judge("pharmacy.example.org", pharmacy, refused)
                .await,
            refused
        );
        // The pharmacy neither answered nor failed at the network level: the lab's
        // failure waits for a sign (one attempt's timeout and a second), none comes,
        // and it stays the lab's.
        let verdict = uplink.judge("lab.example.org", lab, UNREACHABLE).await;
        assert_eq!(verdict, UNREACHABLE);
        assert!(!uplink.is_down());
    }

    #[test]
    fn the_host_is_read_from_every_form_of_stored_url() {
        let cases = [
            ("https://lab.example.org/hooks?x=1", "lab.example.org"),
            ("http://10.213.5.2:8080/hook", "10.213.5.2"),
            ("https://[2001:db8::1]:8443/hook", "2001:db8::1"),
            ("https://[2001:db8::1]/hook", "2001:db8::1"),
            ("https://pharmacy.example.org", "pharmacy.example.org"),
            ("https://sms.example.org:444#frag", "sms.example.org"),
        ];
        for (url, host) in cases {
            assert_eq!(host_of(url), host, "{url}");
        }
    }
}
