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
const CAMP_LAN: &str = "10.213.0.0/16";

/// Records each POST body as one line of its log file and answers 200.
const RECEIVER: &str = r#"
import http.server, sys
log = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[2], 8080), H).serve_forever()
"#;

/// A network namespace joined to this one by a veth pair, with a receiver listening in it
/// at `partner`:8080. Removed on drop.
struct CampLan {
    namespace: String,
    host_side: String,
    guest_side: String,
    partner: Ipv4Addr,
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
    fn start() -> CampLan {
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
    async fn ready(&self) {
        let address = (self.partner, 8080);
        eventually(
            "the receiver on the camp's network listens",
            || async move { tokio::net::TcpStream::connect(address).await.is_ok() },
        )
        .await;
    }

    /// Cuts the link at the partner's end, as when the camp's uplink drops: this side
    /// keeps its route (so nothing leaves by another one) and gets no reply.
    fn cut(&self) {
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "link",
            "set",
            &self.guest_side,
            "down",
        ]);
    }

    fn url(&self) -> String {
        format!("http://{}:8080/hook", self.partner)
    }

    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
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

db_test!(
    settings = |s| {
        s.webhooks_allow_insecure = false;
        s.webhook_allowed_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
        s.webhook_allow_http_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
    },
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
    settings = |s| {
        s.webhooks_allow_insecure = false;
        s.webhook_allowed_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
        s.webhook_allow_http_subnets = ehrs::config::parse_subnets(CAMP_LAN).unwrap();
    },
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
