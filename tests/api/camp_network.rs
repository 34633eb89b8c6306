//! Partners on the camp's network (issue 24): a receiver in a network namespace this test
//! makes, on a private address the server reaches over a veth pair, as a lab analyser on
//! the camp's LAN would be reached.

use crate::ssrf::FixedLookup;
use crate::support::eventually;
use ehrs::auth::Role;
use ehrs::outbound::ssrf::{Lookup, Policy};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The ranges these tests allow: each namespace takes a /24 of it.
pub(crate) const CAMP_LAN: &str = "10.213.0.0/16";

/// Records each POST (its signature headers and body) as one JSON line of its log file,
/// and answers 200.
const RECEIVER: &str = r#"
import http.server, json, sys
log = sys.argv[1]
SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        line = json.dumps({"headers": {h: self.headers.get(h) for h in SIGNED}, "body": body.decode()})
        with open(log, "ab") as f:
            f.write(line.encode() + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[2], 8080), H).serve_forever()
"#;

/// A network namespace joined to this one by a veth pair, with a receiver listening in it
/// at `partner`:8080. Removed on drop.
pub(crate) struct CampLan {
    namespace: String,
    host_side: String,
    guest_side: String,
    pub(crate) partner: Ipv4Addr,
    receiver: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

impl CampLan {
    pub(crate) fn start() -> CampLan {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let made = MADE.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let subnet = (pid + made * 37) % 200 + 20;
        let namespace = format!("ehrs-lan-{pid}-{made}");
        let host_side = format!("ehl{}x{made}", pid % 100_000);
        let guest_side = format!("ehl{}y{made}", pid % 100_000);
        let (host, partner) = (
            format!("10.213.{subnet}.1"),
            Ipv4Addr::new(10, 213, subnet as u8, 2),
        );
        ip(&["netns", "add", &namespace]);
        ip(&[
            "link",
            "add",
            &host_side,
            "type",
            "veth",
            "peer",
            "name",
            &guest_side,
        ]);
        ip(&["link", "set", &guest_side, "netns", &namespace]);
        ip(&["addr", "add", &format!("{host}/24"), "dev", &host_side]);
        ip(&["link", "set", &host_side, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{partner}/24"), "dev", &guest_side]);
        inside(&["link", "set", &guest_side, "up"]);
        inside(&["link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.log");
        std::fs::write(&log, b"").unwrap();
        let receiver = Command::new("ip")
            .args(["netns", "exec", &namespace, "python3", "-c", RECEIVER])
            .arg(&log)
            .arg(partner.to_string())
            .spawn()
            .expect("the receiver starts in the namespace");
        CampLan {
            namespace,
            host_side,
            guest_side,
            partner,
            receiver,
            log,
            _dir: dir,
        }
    }

    /// Waits until the receiver accepts connections from this side of the link.
    pub(crate) async fn ready(&self) {
        let address = (self.partner, 8080);
        eventually(
            "the receiver on the camp's network listens",
            || async move { tokio::net::TcpStream::connect(address).await.is_ok() },
        )
        .await;
    }

    /// Cuts the link at the partner's end, as when the camp's uplink drops: this side
    /// keeps its route (so nothing leaves by another one) and gets no reply.
    pub(crate) fn cut(&self) {
        self.set_partner_end("down");
    }

    /// Brings the partner's end of the link back up.
    pub(crate) fn mend(&self) {
        self.set_partner_end("up");
    }

    fn set_partner_end(&self, state: &str) {
        let namespace = self.namespace.as_str();
        let link = self.guest_side.as_str();
        ip(&["netns", "exec", namespace, "ip", "link", "set", link, state]);
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}:8080/hook", self.partner)
    }

    /// Each request as logged: its signature headers and body.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The bodies received, parsed.
    pub(crate) fn received(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .map(|request| serde_json::from_str(request["body"].as_str().unwrap()).unwrap())
            .collect()
    }

    /// Whether every request received carries a valid signature under `secret`.
    fn all_verified(&self, secret: &str) -> bool {
        let webhook = svix::webhooks::Webhook::new(secret).unwrap();
        self.requests().iter().all(|request| {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in request["headers"].as_object().unwrap() {
                let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
                headers.insert(name, value.as_str().unwrap().parse().unwrap());
            }
            webhook
                .verify(request["body"].as_str().unwrap().as_bytes(), &headers)
                .is_ok()
        })
    }
}

impl Drop for CampLan {
    fn drop(&mut self) {
        let _ = self.receiver.kill();
        let _ = self.receiver.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_side])
            .status();
    }
}

fn camp_lan_policy() -> Policy {
    Policy {
        allowed_subnets: vec![CAMP_LAN.parse().unwrap()],
        http_subnets: vec![CAMP_LAN.parse().unwrap()],
        ..Policy::default()
    }
}

/// Settings that let subscriptions reach the camp's LAN over plain HTTP, and nothing
/// else private.
fn allow_the_camp_lan(s: &mut ehrs::config::Settings) {
    s.webhooks_allow_insecure = false;
    s.webhook_allowed_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
    s.webhook_allow_http_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
}

db_test!(
    settings = allow_the_camp_lan,
    async fn a_partner_on_an_allowed_subnet_receives_over_plain_http(app) {
        let lan = CampLan::start();
        lan.ready().await;
        let created = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": lan.url(), "event_types": ["camp.created"]}))
            .await
            .expect(201);
        assert_eq!(created["url"], lan.url());
        crate::camps::create_camp(&app).await;
        eventually("the camp's event reaches the partner on the LAN", || async {
            lan.received().iter().any(|event| event["type"] == "camp.created")
        })
        .await;
        // Loopback stays refused whatever is allowed.
        let loopback = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "http://127.0.0.1:9/hook"}))
            .await;
        assert_eq!(loopback.status, 422, "{}", loopback.text);
    }
);

db_test!(
    settings = |s| s.webhooks_allow_insecure = false,
    async fn without_the_setting_a_private_address_is_refused_naming_it(app) {
        let answer = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "https://10.213.7.2:8443/hook"}))
            .await;
        assert_eq!(answer.status, 422, "{}", answer.text);
        let reason = answer.body["error"]["details"]["fields"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("EHRS_WEBHOOK_ALLOWED_SUBNETS"), "{reason}");
    }
);

db_test!(
    settings = allow_the_camp_lan,
    async fn each_failed_attempt_says_whether_the_network_or_the_endpoint_failed(app) {
        let lan = CampLan::start();
        lan.ready().await;
        let subscribe = |url: String| {
            let app = &app;
            async move {
                let created = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": url})).await.expect(201);
                format!("/api/v1/webhooks/subscriptions/{}/test", created["id"].as_str().unwrap())
            }
        };
        let answering = subscribe(lan.url()).await;
        // The partner's host is up, but nothing listens on this port: it refuses.
        let refusing = subscribe(format!("http://{}:8081/hook", lan.partner)).await;
        let attempt = |path: String| {
            let app = &app;
            async move { app.post(Role::Admin, &path, &json!({})).await.expect(200)["attempt"].clone() }
        };

        let delivered = attempt(answering.clone()).await;
        assert_eq!(delivered["status_code"], 200, "{delivered}");
        assert_eq!(delivered["failure_class"], json!(null));
        let refused = attempt(refusing.clone()).await;
        assert_eq!(refused["failure_class"], "endpoint", "a refused connection is the endpoint's: {refused}");

        lan.cut();
        let cut = attempt(answering).await;
        assert_eq!(cut["failure_class"], "network", "an unreachable network is not the endpoint's: {cut}");
        let stored: Vec<Option<String>> =
            sqlx::query_scalar("SELECT failure_class FROM webhook_attempts ORDER BY attempted_at, id")
                .fetch_all(app.state.db.pool())
                .await
                .unwrap();
        assert_eq!(stored, [None, Some("endpoint".to_string()), Some("network".to_string())], "stored with each attempt");
    }
);

#[tokio::test]
async fn the_delivery_client_reaches_an_allowed_subnet_and_refuses_it_otherwise() {
    let lan = CampLan::start();
    lan.ready().await;
    let lookup: Arc<dyn Lookup> = Arc::new(FixedLookup(IpAddr::V4(lan.partner)));
    let url = "http://lab.camp.example:8080/hook";
    // Without the setting, the address is refused at connect time (DNS rebinding).
    let strict = ehrs::testing::guarded_client(
        Arc::new(Policy::default()),
        lookup.clone(),
        Duration::from_secs(5),
    );
    let error = strict.post(url).body("{}").send().await.unwrap_err();
    assert!(
        format!("{error:?}").contains("ForbiddenAddress"),
        "{error:?}"
    );
    // With it, the same name reaches the partner.
    let allowed =
        ehrs::testing::guarded_client(Arc::new(camp_lan_policy()), lookup, Duration::from_secs(5));
    let answer = allowed
        .post(url)
        .body(r#"{"type":"probe"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(lan.received()[0]["type"], "probe");
}

/// The settings of the outage tests: the camp's LAN allowed over plain HTTP, a short retry
/// schedule and auto-pause threshold, a 2 s attempt timeout, one send at a time per
/// endpoint, and probes every second.
pub(crate) fn short_fuse(s: &mut ehrs::config::Settings) {
    allow_the_camp_lan(s);
    s.webhook_clock = ehrs::time::Clock::adjustable();
    s.webhook_retry_schedule = ehrs::config::parse_schedule("1s,1s").unwrap();
    s.webhook_autopause_after = 2;
    s.webhook_timeout = Duration::from_secs(2);
    s.webhook_endpoint_concurrency = 1;
    s.uplink_probe_interval = Duration::from_secs(1);
}

/// Subscribes `url` to camp events; returns the subscription's id and secret.
pub(crate) async fn subscribe_camps(
    app: &crate::support::TestApp,
    url: String,
    ordered: bool,
) -> (String, String) {
    let body = json!({"url": url, "event_types": ["camp.created"], "ordered": ordered});
    let created = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &body)
        .await
        .expect(201);
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

async fn failure_stats(app: &crate::support::TestApp, id: &str) -> serde_json::Value {
    let path = format!("/api/v1/webhooks/subscriptions/{id}/failure-stats");
    app.get(Role::Admin, &path).await.expect(200)
}

async fn uplink_state(app: &crate::support::TestApp) -> serde_json::Value {
    let health = app
        .request(reqwest::Method::GET, None, "/health", None)
        .await;
    assert_eq!(health.status, 200, "{}", health.text);
    health.body
}

db_test!(
    settings = short_fuse,
    async fn an_uplink_outage_pauses_nobody_and_every_event_arrives_in_order_when_it_returns(app) {
        let clock = &app.state.settings.webhook_clock;
        let (lab, pharmacy) = (CampLan::start(), CampLan::start());
        lab.ready().await;
        pharmacy.ready().await;
        let (lab_id, lab_secret) = subscribe_camps(&app, lab.url(), true).await;
        let (pharmacy_id, pharmacy_secret) = subscribe_camps(&app, pharmacy.url(), false).await;
        crate::camps::create_camp(&app).await;
        eventually("both partners receive the first camp", || async {
            lab.received().len() == 1 && pharmacy.received().len() == 1
        })
        .await;

        // The uplink drops: neither partner is reachable.
        lab.cut();
        pharmacy.cut();
        for _ in 0..6 {
            crate::camps::create_camp(&app).await;
        }
        eventually("the engine declares the uplink down", || async {
            uplink_state(&app).await["uplink"]["state"] == "down"
        })
        .await;
        let health = uplink_state(&app).await;
        assert_eq!(health["webhooks"], "degraded", "{health}");
        assert!(health["uplink"]["down_since"].is_string(), "{health}");
        assert!(health["webhooks_detail"].as_str().unwrap().contains("uplink is down"), "{health}");

        // Far longer than the retry schedule and the auto-pause threshold allow: the
        // clock runs past the whole schedule again and again while probes keep failing.
        for _ in 0..5 {
            clock.advance(Duration::from_secs(3));
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let status = app.get(Role::Admin, "/api/v1/webhooks/status").await.expect(200);
        assert_eq!(status["uplink"]["state"], "down", "{status}");
        assert_eq!(status["uplink"]["last_probe_reached"], false, "{status}");
        assert_eq!(status["allowed_subnets"], json!([CAMP_LAN]), "{status}");
        assert_eq!(status["allow_http_subnets"], json!([CAMP_LAN]), "{status}");
        let pool = app.state.db.pool();
        let network_attempts: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts WHERE failure_class = 'network'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(network_attempts >= 2, "the first sends failed at the network level: {network_attempts}");
        let (exhausted, most_attempts): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE status = 'exhausted'), COALESCE(MAX(attempts), 0) FROM webhook_deliveries \
             WHERE status <> 'delivered'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((exhausted, most_attempts), (0, 0), "no delivery used a retry, none is exhausted");
        for id in [&lab_id, &pharmacy_id] {
            let stats = failure_stats(&app, id).await;
            assert_eq!((stats["enabled"].clone(), stats["consecutive_failures"].clone()), (json!(true), json!(0)), "{stats}");
        }
        let metrics = app.request(reqwest::Method::GET, None, "/metrics", None).await;
        assert!(metrics.text.contains("ehrs_uplink_down 1"), "{}", metrics.text);

        // The link returns: a probe reaches a partner, and the backlog drains in order.
        lab.mend();
        pharmacy.mend();
        eventually("every camp reaches both partners", || async {
            lab.received().len() == 7 && pharmacy.received().len() == 7
        })
        .await;
        for (partner, secret) in [(&lab, &lab_secret), (&pharmacy, &pharmacy_secret)] {
            let sequences: Vec<i64> = partner.received().iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
            assert_eq!(sequences, (1..=7).collect::<Vec<_>>(), "in sequence order, each once");
            assert!(partner.all_verified(secret), "every delivery verifies with the subscription's secret");
        }
        assert_eq!(uplink_state(&app).await["uplink"]["state"], "up");
        let audit = app.get(Role::Admin, "/api/v1/webhooks/audit").await.expect(200);
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"uplink.down") && actions.contains(&"uplink.restored"), "{actions:?}");
    }
);

db_test!(
    settings = short_fuse,
    async fn one_unreachable_partner_beside_an_answering_one_is_still_auto_paused(app) {
        let clock = &app.state.settings.webhook_clock;
        let (lab, pharmacy) = (CampLan::start(), CampLan::start());
        lab.ready().await;
        pharmacy.ready().await;
        let (lab_id, _) = subscribe_camps(&app, lab.url(), false).await;
        subscribe_camps(&app, pharmacy.url(), false).await;
        // A third subscription at the pharmacy's host, on a port where nothing listens:
        // it refuses, as before.
        let (refusing_id, _) = subscribe_camps(&app, format!("http://{}:8081/hook", pharmacy.partner), false).await;
        lab.cut();
        let disabled = |id: String| {
            let app = &app;
            async move {
                let stats = failure_stats(app, &id).await;
                stats["enabled"] == false && stats["auto_paused"] == true
            }
        };
        for round in 0..20 {
            crate::camps::create_camp(&app).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            clock.advance(Duration::from_secs(3));
            if disabled(lab_id.clone()).await && disabled(refusing_id.clone()).await {
                break;
            }
            assert!(round < 19, "the unreachable and the refusing partner were not paused");
        }
        assert!(pharmacy.received().len() >= 2, "the answering partner kept receiving");
        assert_eq!(uplink_state(&app).await["uplink"]["state"], "up", "one partner down is not an outage");
        let lab_failures: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT a.failure_class FROM webhook_attempts a WHERE a.subscription_id = $1",
        )
        .bind(&lab_id)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
        assert!(lab_failures.iter().all(|class| class.as_deref() == Some("network")), "{lab_failures:?}");
    }
);

/// With `EHRS_UPLINK_PROBE` set, one unreachable partner is an outage when the probe
/// fails too, and the probe's return ends it. The probe's target stands for "the
/// internet": a receiver in a namespace of its own, known before the server starts.
async fn a_failing_probe_confirms_an_outage(backend: crate::support::Backend) {
    let (internet, lab) = (CampLan::start(), CampLan::start());
    internet.ready().await;
    lab.ready().await;
    let probe = format!("{}:8080", internet.partner);
    let (app, cleanup) = crate::support::TestApp::spawn_with(backend, |s| {
        short_fuse(s);
        s.uplink_probe = Some(ehrs::config::parse_uplink_probe(&probe).unwrap());
    })
    .await;
    let (lab_id, _) = subscribe_camps(&app, lab.url(), false).await;
    lab.cut();
    internet.cut();
    crate::camps::create_camp(&app).await;
    eventually("the probe confirms the outage", || async {
        uplink_state(&app).await["uplink"]["state"] == "down"
    })
    .await;
    let status = app
        .get(Role::Admin, "/api/v1/webhooks/status")
        .await
        .expect(200);
    assert_eq!(status["uplink"]["probe"], probe, "{status}");
    assert_eq!(status["uplink"]["last_probe_reached"], false, "{status}");
    let stats = failure_stats(&app, &lab_id).await;
    assert_eq!(
        stats["consecutive_failures"], 0,
        "not the partner's failure: {stats}"
    );

    internet.mend();
    lab.mend();
    eventually(
        "the probe reaches its target and the camp arrives",
        || async { lab.received().len() == 1 },
    )
    .await;
    assert_eq!(uplink_state(&app).await["uplink"]["state"], "up");
    cleanup.run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_confirms_an_outage_sqlite() {
    a_failing_probe_confirms_an_outage(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_confirms_an_outage_postgres() {
    a_failing_probe_confirms_an_outage(crate::support::Backend::Postgres).await;
}
