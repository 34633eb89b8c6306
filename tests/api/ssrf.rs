//! The SSRF guard: subscriptions to internal addresses are refused at creation, and the
//! delivery client refuses them after DNS resolution.

use ehrs::auth::Role;
use ehrs::outbound::ssrf::{self, Lookup, Policy};
use serde_json::json;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const FORBIDDEN: [&str; 11] = [
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://0.0.0.0/hook",
    "https://localhost/hook",
];

db_test!(
    settings = |s| s.webhooks_allow_insecure = false,
    async fn internal_targets_are_refused_at_creation(app) {
        for url in FORBIDDEN {
            let response = app
                .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": url}))
                .await;
            assert_eq!(response.status, 422, "{url} must be refused: {}", response.text);
            assert_eq!(response.body["error"]["details"]["fields"][0]["field"], "url");
        }
        let plain_http = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "http://93.184.216.34/hook"}))
            .await;
        assert_eq!(plain_http.status, 422);
        assert_eq!(
            plain_http.body["error"]["message"],
            "invalid request: url must use https:// (for development, \
             EHRS_WEBHOOKS_ALLOW_INSECURE=1 allows http:// and loopback targets)"
        );
        let public = app
            .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": "https://93.184.216.34/hook"}))
            .await;
        assert_eq!(public.status, 201, "{}", public.text);
        assert_eq!(app.count_rows("webhook_subscriptions").await, 1);
    }
);

/// A resolver that answers every name with one address: stands in for DNS, which these
/// machines cannot reach.
pub(crate) struct FixedLookup(pub(crate) IpAddr);

impl Lookup for FixedLookup {
    fn lookup(
        &self,
        _host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let ip = self.0;
        Box::pin(async move { Ok(vec![ip]) })
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused() {
    let strict = Policy::default();
    let private: Arc<dyn Lookup> = Arc::new(FixedLookup("10.1.2.3".parse().unwrap()));
    let refusal = ssrf::check_url(
        "https://hooks.partner.example/in",
        &strict,
        private.as_ref(),
    )
    .await;
    assert!(
        matches!(refusal, Err(ssrf::Refusal::ForbiddenAddress(_))),
        "{refusal:?}"
    );

    // The delivery client itself refuses at connect time (DNS rebinding: the name was
    // fine when the subscription was made, and is not any more).
    let client = ehrs::testing::guarded_client(
        std::sync::Arc::new(strict.clone()),
        private,
        Duration::from_secs(2),
    );
    let error = client
        .post("https://hooks.partner.example/in")
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("ForbiddenAddress(10.1.2.3)"),
        "{error:?}"
    );

    let public: Arc<dyn Lookup> = Arc::new(FixedLookup("93.184.216.34".parse().unwrap()));
    assert!(
        ssrf::check_url("https://hooks.partner.example/in", &strict, public.as_ref())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_development_switch_allows_loopback_but_not_private_ranges() {
    let dev = Policy {
        allow_insecure: true,
        ..Policy::default()
    };
    let system = ssrf::SystemLookup;
    assert!(
        ssrf::check_url("http://127.0.0.1:9/hook", &dev, &system)
            .await
            .is_ok()
    );
    assert!(
        ssrf::check_url("http://localhost:9/hook", &dev, &system)
            .await
            .is_ok()
    );
    assert!(
        ssrf::check_url("http://10.0.0.1/hook", &dev, &system)
            .await
            .is_err()
    );
    assert!(
        ssrf::check_url("ftp://127.0.0.1/hook", &dev, &system)
            .await
            .is_err()
    );
    assert!(
        ssrf::check_url("https://user:pw@127.0.0.1/hook", &dev, &system)
            .await
            .is_err()
    );
}

/// A resolver that knows no name, as when the camp's uplink is down or the name is mistyped.
struct FailingLookup;

impl Lookup for FailingLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move { Err(std::io::Error::other(format!("no such host {host}"))) })
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_not_called_a_refused_address() {
    let strict = Policy::default();
    let refusal = ssrf::check_url("https://hooks.partner.example/in", &strict, &FailingLookup)
        .await
        .unwrap_err();
    let reason = refusal.field_reason();
    assert!(
        reason.contains("does not resolve: the name lookup failed"),
        "{reason}"
    );
    assert!(!reason.contains("allowed address"), "{reason}");
}
