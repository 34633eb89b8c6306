//! The guard that keeps webhook deliveries away from internal networks.
//!
//! Subscription URLs must be `https://` and may not point at loopback, private (RFC 1918,
//! CGNAT, unique-local), link-local, metadata or otherwise special addresses. The check
//! runs on the *resolved* addresses, inside the HTTP client's DNS resolver, so a name that
//! resolves to an internal address (DNS rebinding included) is refused at connect time
//! too; literal IPs, which skip the resolver, are checked before sending.
//! `EHRS_WEBHOOKS_ALLOW_INSECURE` (development only) allows `http://` and loopback.
//!
//! A camp's own devices (a lab analyser, a pharmacy tablet) sit on a private network:
//! `EHRS_WEBHOOK_ALLOWED_SUBNETS`, set by whoever deploys the server (never through the
//! API), lets subscriptions reach those ranges, and `EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS`, a
//! subset of them, lets them use `http://` there (many LAN devices cannot do TLS).
//! Loopback, link-local and metadata addresses stay refused whatever is allowed.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// What the guard allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow_insecure: bool,
    /// Private ranges subscriptions may reach (`EHRS_WEBHOOK_ALLOWED_SUBNETS`).
    pub allowed_subnets: Vec<ipnet::IpNet>,
    /// Of those, where `http://` is accepted (`EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS`).
    pub http_subnets: Vec<ipnet::IpNet>,
}

impl Policy {
    /// What `EHRS_WEBHOOKS_ALLOW_INSECURE` and the subnet settings allow.
    pub fn from_settings(settings: &crate::config::Settings) -> Policy {
        Policy {
            allow_insecure: settings.webhooks_allow_insecure,
            allowed_subnets: settings.webhook_allowed_subnets.0.clone(),
            http_subnets: settings.webhook_allow_http_subnets.0.clone(),
        }
    }

    /// Whether `http://` may be used to reach `ip`: anywhere under the development
    /// switch, else only in the ranges listed for it.
    fn allows_http_to(&self, ip: IpAddr) -> bool {
        self.allow_insecure || within(&self.http_subnets, ip)
    }
}

/// Whether `ip` (an IPv4-mapped address as its IPv4 one) is in one of `subnets`.
fn within(subnets: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    subnets.iter().any(|subnet| subnet.contains(&ip))
}

/// Name resolution, injectable so tests can make a name resolve to any address.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why an address or URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("the URL must use https://")]
    NotHttps,
    #[error("the URL may not carry credentials")]
    Credentials,
    #[error("the URL may not name port 0")]
    PortZero,
    /// A control character or whitespace: URL parsers drop some of them silently, so the
    /// URL stored and shown would not be the one called.
    #[error("the URL contains a control character or whitespace")]
    Unprintable,
    #[error("the address {0} is loopback, private, link-local or otherwise internal")]
    ForbiddenAddress(IpAddr),
    /// `http://` to an address outside `EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS`.
    #[error("the URL must use https:// to reach {0}")]
    HttpNotAllowed(IpAddr),
    /// The name lookup failed or found no address: a typo, or no DNS from this server
    /// (told apart from a name that resolves only to refused addresses, which is
    /// `ForbiddenAddress`).
    #[error("the host '{0}' does not resolve: the name lookup failed or found no address")]
    Unresolvable(String),
}

impl Refusal {
    /// The refusal as the reason of a 422 on the `url` field ("url must use https://…"),
    /// naming the development switch where it would allow the URL.
    pub fn field_reason(&self) -> String {
        const DEVELOPMENT: &str =
            "for development, EHRS_WEBHOOKS_ALLOW_INSECURE=1 allows http:// and loopback targets";
        match self {
            Refusal::InvalidUrl(error) => format!("is not a valid URL: {error}"),
            Refusal::NotHttps => format!("must use https:// ({DEVELOPMENT})"),
            Refusal::Credentials => "must not carry credentials".to_string(),
            Refusal::PortZero => "must not name port 0".to_string(),
            Refusal::Unprintable => {
                "must not contain spaces or control characters (percent-encode them: a space is %20)"
                    .to_string()
            }
            Refusal::ForbiddenAddress(ip) if is_loopback(*ip) => {
                format!("points at {ip}, a loopback address ({DEVELOPMENT})")
            }
            Refusal::ForbiddenAddress(ip) if never_allowed(*ip) => {
                format!("points at {ip}, a link-local, metadata or otherwise special address, which no setting allows")
            }
            Refusal::ForbiddenAddress(ip) => format!(
                "points at {ip}, which is private or otherwise internal (a partner on the camp's network is allowed by listing its range in EHRS_WEBHOOK_ALLOWED_SUBNETS)"
            ),
            Refusal::HttpNotAllowed(ip) => format!(
                "must use https:// to reach {ip} (http:// is accepted only for the ranges in EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS)"
            ),
            Refusal::Unresolvable(host) => {
                format!(
                    "names the host '{host}', which does not resolve: the name lookup failed or \
                     found no address (check the spelling, and that this server can reach DNS)"
                )
            }
        }
    }
}

/// True for addresses a webhook may be sent to under `policy`.
pub(crate) fn is_allowed(ip: IpAddr, policy: &Policy) -> bool {
    if is_loopback(ip) {
        return policy.allow_insecure;
    }
    if never_allowed(ip) {
        return false;
    }
    let public = match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    };
    public || within(&policy.allowed_subnets, ip)
}

/// Addresses no setting opens (loopback aside, which the development switch does):
/// link-local (where cloud metadata services answer), the metadata services' own
/// addresses, unspecified, multicast and broadcast.
fn never_allowed(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
                // Alibaba's metadata service answers at 100.100.100.200.
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.is_multicast()
                // AWS's metadata service over IPv6.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                   // "this network"
        || (a == 100 && (64..128).contains(&b))     // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99)         // 6to4 relay anycast 192.88.99/24
        || (a == 198 && (b == 18 || b == 19))       // benchmarking
        || a >= 240; // reserved
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // IPv4-translated (::ffff:0:a.b.c.d, ::ffff:0:0/96, RFC 2765) embeds an IPv4 address too.
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address: judge that one.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(segments[1], segments[2]));
    }
    // ISATAP (RFC 5214) puts an IPv4 address in the interface identifier of any prefix
    // (`…:0:5efe:a.b.c.d`, or `…:200:5efe:…` when globally unique): judge that one.
    if segments[4] & 0xfdff == 0
        && segments[5] == 0x5efe
        && !is_public_v4(embedded_v4(segments[6], segments[7]))
    {
        return false;
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Teredo 2001::/32 (RFC 4380) carries a client IPv4 address, obfuscated, and its
        // server's: refused whole (no webhook receiver is reached through Teredo).
        || (segments[0] == 0x2001 && segments[1] == 0)
        || (segments[0] & 0xfe00) == 0xfc00   // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80   // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0   // site-local (deprecated) fec0::/10
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..4] == [0x100, 0, 0, 0]  // discard-only 100::/64
        || segments[..3] == [0x64, 0xff9b, 1] // local-use NAT64 64:ff9b:1::/48
        || segments[..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated) and ::/96
    !special
}

/// The IPv4 address carried in two 16-bit groups of an IPv6 address.
fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// Checks a subscription URL: printable, scheme, credentials, and every address its host
/// resolves to. Returns the parsed URL, whose `as_str()` is the one form stored, shown and
/// called.
pub async fn check_url(
    raw: &str,
    policy: &Policy,
    lookup: &dyn Lookup,
) -> Result<reqwest::Url, Refusal> {
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refusal::Unprintable);
    }
    let url = reqwest::Url::parse(raw).map_err(|e| Refusal::InvalidUrl(e.to_string()))?;
    let plain_http = match url.scheme() {
        "https" => false,
        "http" if policy.allow_insecure || !policy.http_subnets.is_empty() => true,
        _ => return Err(Refusal::NotHttps),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    // Port 0 is no service: connecting to it fails or, on some stacks, picks a port.
    if url.port() == Some(0) {
        return Err(Refusal::PortZero);
    }
    let host = url
        .host()
        .ok_or_else(|| Refusal::InvalidUrl("the URL has no host".into()))?;
    let addresses = addresses_of(host.clone(), lookup).await?;
    if addresses.is_empty() {
        return Err(Refusal::Unresolvable(host.to_string()));
    }
    check_addresses(&addresses, plain_http, policy)?;
    Ok(url)
}

/// The addresses a stored URL's host may be reached at now, under `policy` (the uplink
/// probe connects to one): resolved again, so a rebound name is still refused.
pub(crate) async fn allowed_addresses(
    url: &reqwest::Url,
    policy: &Policy,
    lookup: &dyn Lookup,
) -> Result<Vec<IpAddr>, Refusal> {
    let host = url
        .host()
        .ok_or_else(|| Refusal::InvalidUrl("the URL has no host".into()))?;
    let name = host.to_string();
    let addresses = addresses_of(host, lookup).await?;
    let plain_http = url.scheme() == "http";
    check_addresses(&addresses, plain_http, policy)?;
    if addresses.is_empty() {
        return Err(Refusal::Unresolvable(name));
    }
    Ok(addresses)
}

/// The addresses `host` stands for: itself when it is an IP literal, else what it
/// resolves to.
async fn addresses_of(host: url::Host<&str>, lookup: &dyn Lookup) -> Result<Vec<IpAddr>, Refusal> {
    match host {
        url::Host::Ipv4(v4) => Ok(vec![IpAddr::V4(v4)]),
        url::Host::Ipv6(v6) => Ok(vec![IpAddr::V6(v6)]),
        url::Host::Domain(name) => lookup
            .lookup(name.to_string())
            .await
            .map_err(|_| Refusal::Unresolvable(name.to_string())),
    }
}

/// Every address allowed under `policy`, and for `http://` every one in a range where
/// `http://` is accepted.
fn check_addresses(addresses: &[IpAddr], plain_http: bool, policy: &Policy) -> Result<(), Refusal> {
    if let Some(ip) = addresses.iter().find(|ip| !is_allowed(**ip, policy)) {
        return Err(Refusal::ForbiddenAddress(*ip));
    }
    match addresses
        .iter()
        .find(|ip| plain_http && !policy.allows_http_to(**ip))
    {
        Some(ip) => Err(Refusal::HttpNotAllowed(*ip)),
        None => Ok(()),
    }
}

/// Checks a URL about to be sent to: its host when it is an IP literal (the client's
/// resolver is not consulted for those), and for `http://` that every address of its host
/// is in a range where `http://` is accepted (the resolver that connects keeps to the
/// allowed ranges, but does not know the scheme).
pub(crate) async fn check_before_send(
    url: &reqwest::Url,
    policy: &Policy,
    lookup: &dyn Lookup,
) -> Result<(), Refusal> {
    let plain_http = url.scheme() == "http";
    match url.host() {
        // A name over https:// is left to the resolver that connects.
        Some(url::Host::Domain(_)) if !plain_http => Ok(()),
        None => Ok(()),
        Some(host) => check_addresses(&addresses_of(host, lookup).await?, plain_http, policy),
    }
}

/// The reqwest DNS resolver that drops forbidden addresses and fails when none is left.
pub(crate) struct GuardedResolver {
    pub policy: Arc<Policy>,
    pub lookup: Arc<dyn Lookup>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // A failed lookup is told as such: the engine counts it as the network's
            // failure (no DNS from the camp), not the endpoint's.
            let Ok(resolved) = lookup.lookup(host.clone()).await else {
                let refusal = Refusal::Unresolvable(host);
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            };
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .filter(|ip| is_allowed(**ip, &policy))
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            if allowed.is_empty() {
                let refusal = match resolved.first() {
                    Some(ip) => Refusal::ForbiddenAddress(*ip),
                    None => Refusal::Unresolvable(host),
                };
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default policy: nothing private, no development switch.
    fn strict() -> Policy {
        Policy::default()
    }

    #[test]
    fn refusals_read_as_reasons_of_the_url_field_and_name_the_development_switch() {
        let switch = "EHRS_WEBHOOKS_ALLOW_INSECURE=1";
        assert_eq!(
            Refusal::NotHttps.field_reason(),
            format!(
                "must use https:// (for development, {switch} allows http:// and loopback targets)"
            )
        );
        let loopback = Refusal::ForbiddenAddress("127.0.0.1".parse().unwrap()).field_reason();
        assert!(loopback.contains(switch), "{loopback}");
        let private = Refusal::ForbiddenAddress("10.0.0.1".parse().unwrap()).field_reason();
        assert!(
            !private.contains(switch),
            "the switch never allows private ranges: {private}"
        );
        assert_eq!(
            Refusal::Credentials.field_reason(),
            "must not carry credentials"
        );
    }

    #[test]
    fn internal_addresses_are_refused() {
        for raw in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "::",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = raw.parse().unwrap();
            assert!(!is_allowed(ip, &strict()), "{raw} must be refused");
        }
        for raw in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(
                is_allowed(raw.parse().unwrap(), &strict()),
                "{raw} must be allowed"
            );
        }
    }

    #[test]
    fn the_discard_prefix_is_refused() {
        for raw in ["100::1", "100::", "100::ffff:ffff:ffff:ffff"] {
            assert!(!is_allowed(raw.parse().unwrap(), &strict()), "{raw}");
        }
    }

    #[test]
    fn the_6to4_relay_anycast_range_is_refused() {
        for raw in ["192.88.99.0", "192.88.99.1", "192.88.99.255"] {
            assert!(!is_allowed(raw.parse().unwrap(), &strict()), "{raw}");
        }
        assert!(is_allowed("192.88.98.1".parse().unwrap(), &strict()));
    }

    #[test]
    fn teredo_addresses_are_refused() {
        // The probe's address: its client part decodes to 127.0.0.1.
        for raw in [
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::1",
            "2001:0:ffff::1",
        ] {
            assert!(!is_allowed(raw.parse().unwrap(), &strict()), "{raw}");
        }
        assert!(is_allowed(
            "2001:4860:4860::8888".parse().unwrap(),
            &strict()
        ));
    }

    #[test]
    fn isatap_addresses_are_judged_by_their_ipv4_address() {
        for raw in [
            "2606:4700::5efe:7f00:1",
            "2606:4700::200:5efe:a00:1",
            "2606:4700::5efe:a9fe:a9fe",
        ] {
            assert!(!is_allowed(raw.parse().unwrap(), &strict()), "{raw}");
        }
        assert!(is_allowed(
            "2606:4700::5efe:808:808".parse().unwrap(),
            &strict()
        ));
    }

    #[test]
    fn ipv4_translated_addresses_are_judged_by_their_ipv4_address() {
        for raw in ["::ffff:0:a00:1", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe"] {
            assert!(!is_allowed(raw.parse().unwrap(), &strict()), "{raw}");
        }
        assert!(is_allowed("::ffff:0:808:808".parse().unwrap(), &strict()));
    }

    /// `refused` must be refused and `allowed` allowed (each range: one test).
    fn judge(refused: &[&str], allowed: &[&str]) {
        for raw in refused {
            assert!(
                !is_allowed(raw.parse().unwrap(), &strict()),
                "{raw} must be refused"
            );
        }
        for raw in allowed {
            assert!(
                is_allowed(raw.parse().unwrap(), &strict()),
                "{raw} must be allowed"
            );
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_by_their_ipv4_address() {
        judge(
            &[
                "::ffff:127.0.0.1",
                "::ffff:10.0.0.1",
                "::ffff:169.254.169.254",
            ],
            &["::ffff:8.8.8.8"],
        );
    }

    #[test]
    fn ipv4_compatible_addresses_are_refused_whole() {
        // ::a.b.c.d (deprecated, RFC 4291): nothing routes it, so none is a receiver.
        judge(&["::127.0.0.1", "::8.8.8.8", "::10.0.0.1"], &[]);
    }

    #[test]
    fn nat64_addresses_are_judged_by_their_ipv4_address() {
        // The well-known prefix 64:ff9b::/96 (RFC 6052) reaches the IPv4 address it carries.
        judge(
            &["64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe"],
            &["64:ff9b::808:808"],
        );
    }

    #[test]
    fn local_use_nat64_addresses_are_refused_whole() {
        // 64:ff9b:1::/48 (RFC 8215) is a local translator's: its mapping is not known here.
        judge(&["64:ff9b:1::808:808", "64:ff9b:1:ffff::1"], &[]);
    }

    #[test]
    fn six_to_four_addresses_are_judged_by_their_ipv4_address() {
        // 2002:a.b.c.d::/48 (RFC 3056) carries its site's IPv4 address in groups 2 and 3.
        judge(
            &["2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::1"],
            &["2002:808:808::1"],
        );
    }

    fn camp_lan() -> Policy {
        Policy {
            allowed_subnets: vec![
                "10.0.5.0/24".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
                "127.0.0.0/8".parse().unwrap(),
                "169.254.0.0/16".parse().unwrap(),
            ],
            http_subnets: vec!["10.0.5.0/28".parse().unwrap()],
            ..Policy::default()
        }
    }

    #[test]
    fn allowed_subnets_open_private_ranges_but_never_loopback_link_local_or_metadata() {
        let lan = camp_lan();
        assert!(is_allowed("10.0.5.7".parse().unwrap(), &lan));
        assert!(is_allowed("::ffff:10.0.5.7".parse().unwrap(), &lan));
        assert!(!is_allowed("10.0.6.1".parse().unwrap(), &lan));
        assert!(!is_allowed("10.0.5.7".parse().unwrap(), &strict()));
        for raw in [
            "127.0.0.1",
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(
                !is_allowed(raw.parse().unwrap(), &lan),
                "{raw} stays refused"
            );
        }
    }

    #[tokio::test]
    async fn http_is_accepted_only_in_the_ranges_listed_for_it() {
        let lan = camp_lan();
        assert!(
            check_url("http://10.0.5.3:8080/in", &lan, &SystemLookup)
                .await
                .is_ok()
        );
        assert!(
            check_url("https://10.0.5.200/in", &lan, &SystemLookup)
                .await
                .is_ok()
        );
        let refused = check_url("http://10.0.5.200/in", &lan, &SystemLookup)
            .await
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal::HttpNotAllowed("10.0.5.200".parse().unwrap())
        );
        assert!(
            refused
                .field_reason()
                .contains("EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS")
        );
        let outside = check_url("https://10.0.6.1/in", &lan, &SystemLookup)
            .await
            .unwrap_err();
        assert!(
            outside
                .field_reason()
                .contains("EHRS_WEBHOOK_ALLOWED_SUBNETS"),
            "{}",
            outside.field_reason()
        );
        let metadata = check_url("https://169.254.169.254/", &lan, &SystemLookup)
            .await
            .unwrap_err();
        assert!(
            metadata.field_reason().contains("no setting allows"),
            "{}",
            metadata.field_reason()
        );
        // Without a range for http://, the URL must be https:// at all.
        let no_http = Policy {
            http_subnets: Vec::new(),
            ..camp_lan()
        };
        assert_eq!(
            check_url("http://10.0.5.3/in", &no_http, &SystemLookup)
                .await
                .unwrap_err(),
            Refusal::NotHttps
        );
    }

    #[tokio::test]
    async fn port_zero_is_refused() {
        let refused = check_url("https://8.8.8.8:0/hook", &strict(), &SystemLookup).await;
        assert_eq!(refused.unwrap_err(), Refusal::PortZero);
        assert!(
            check_url("https://8.8.8.8:8443/hook", &strict(), &SystemLookup)
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_development_switch_allows_loopback_only() {
        let dev = Policy {
            allow_insecure: true,
            ..Policy::default()
        };
        assert!(is_allowed("127.0.0.1".parse().unwrap(), &dev));
        assert!(is_allowed("::1".parse().unwrap(), &dev));
        assert!(!is_allowed("10.0.0.1".parse().unwrap(), &dev));
        assert!(!is_allowed("169.254.169.254".parse().unwrap(), &dev));
    }
}
