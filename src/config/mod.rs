//! Settings from the environment (and an optional `.env`), with defaults that run the
//! embedded mode with nothing configured. Every variable is listed in
//! docs/configuration.md. The keys (`keys.rs`) come from the environment or the data dir.

mod keys;
mod passphrase;

pub use keys::Keys;
pub use passphrase::DbPassphrase;

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Listen address.
    #[arg(long, env = "EHRS_BIND", default_value = "127.0.0.1:8000")]
    pub bind: String,

    /// Where the SQLite file and generated keys live.
    #[arg(long, env = "EHRS_DATA_DIR", default_value = "./ehrs-data")]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…` (default: `sqlite://$EHRS_DATA_DIR/ehrs.db`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The passphrase of an encrypted embedded database.
    #[command(flatten)]
    pub db_passphrase: DbPassphrase,

    /// Password of the first `admin`: `EHRS_ADMIN_PASSWORD` (default: generated into
    /// `<data dir>/initial-admin-password`). Secrets are read from the environment or a
    /// file only, never from a flag: a flag shows in the process list (see
    /// [`SECRETS_HELP`]).
    #[arg(skip = from_env("EHRS_ADMIN_PASSWORD"))]
    pub admin_password: Option<String>,

    /// `EHRS_ADMIN_PASSWORD_FILE`: a file holding the first admin's password (a systemd
    /// credential, say), read when `EHRS_ADMIN_PASSWORD` is unset.
    #[arg(skip = from_env("EHRS_ADMIN_PASSWORD_FILE").map(PathBuf::from))]
    pub admin_password_file: Option<PathBuf>,

    /// `EHRS_METRICS_TOKEN`: when set, `/metrics` answers only `Authorization: Bearer
    /// <token>`; unset, it answers only clients on this machine (loopback).
    #[arg(skip = from_env("EHRS_METRICS_TOKEN"))]
    pub metrics_token: Option<String>,

    /// `EHRS_JWT_SECRET`: token signing secret (default on SQLite: generated into the data
    /// dir).
    #[arg(skip = from_env("EHRS_JWT_SECRET"))]
    pub jwt_secret: Option<String>,

    /// `EHRS_SECRET_KEY`: 32 bytes, base64: encrypts stored webhook secrets (default on
    /// SQLite: generated).
    #[arg(skip = from_env("EHRS_SECRET_KEY"))]
    pub secret_key: Option<String>,

    /// Lifetime of an access token.
    #[arg(long, env = "EHRS_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// Password hashes computed at once (0: one per CPU core). Each holds about 19 MiB.
    #[arg(long, env = "EHRS_PASSWORD_HASH_WORKERS", default_value_t = 0)]
    pub password_hash_workers: usize,

    /// Logins and password changes that may wait for a hashing slot; beyond, 503.
    #[arg(long, env = "EHRS_PASSWORD_HASH_QUEUE", default_value_t = 16)]
    pub password_hash_queue: usize,

    /// Failed logins for one username before each further one makes it wait.
    #[arg(long, env = "EHRS_LOGIN_THROTTLE_AFTER", default_value_t = 5)]
    pub login_throttle_after: u32,

    /// Failed logins from one client address (IPv6: its /64) before it must wait.
    #[arg(long, env = "EHRS_LOGIN_THROTTLE_AFTER_ADDRESS", default_value_t = 20)]
    pub login_throttle_after_address: u32,

    /// The first wait; it doubles with each further failure.
    #[arg(long, env = "EHRS_LOGIN_THROTTLE_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub login_throttle_delay: Duration,

    /// The longest wait.
    #[arg(long, env = "EHRS_LOGIN_THROTTLE_MAX_DELAY", default_value = "5m", value_parser = parse_duration)]
    pub login_throttle_max_delay: Duration,

    /// Failures are forgotten this long after the last one.
    #[arg(long, env = "EHRS_LOGIN_THROTTLE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_throttle_window: Duration,

    /// How long a client may take to send a request head, and how long an idle
    /// keep-alive connection is kept.
    #[arg(long, env = "EHRS_HTTP_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,

    /// How long a client may take to send a whole request body, from its head (408
    /// `request_timeout` after).
    #[arg(long, env = "EHRS_HTTP_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub http_body_timeout: Duration,

    /// How long a client may take to read a whole answer, from its first byte (the
    /// connection is closed after).
    #[arg(long, env = "EHRS_HTTP_WRITE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub http_write_timeout: Duration,

    /// Connections the server holds at once; one more is answered 503
    /// `too_many_connections` with `Retry-After` and closed.
    #[arg(long, env = "EHRS_HTTP_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// Connections the server holds at once from one client address (behind a reverse
    /// proxy every client has the proxy's address: raise it to the proxy's pool).
    #[arg(long, env = "EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections_per_address: u32,

    /// Connections in the database pool (PostgreSQL; SQLite readers).
    #[arg(long, env = "EHRS_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// `embedded` or `svix`.
    #[arg(long, env = "WEBHOOK_BACKEND", default_value = "embedded")]
    pub webhook_backend: String,

    /// Svix backend: base URL of the Svix server (e.g. `https://api.eu.svix.com`).
    #[arg(long, env = "SVIX_SERVER_URL")]
    pub svix_server_url: Option<String>,

    /// Svix backend: API token (`sk_…` or a self-hosted JWT).
    #[arg(long, env = "SVIX_AUTH_TOKEN", hide_env_values = true)]
    pub svix_auth_token: Option<String>,

    /// Svix backend: uid of the Svix application that EHRS publishes to.
    #[arg(long, env = "SVIX_APP_ID", default_value = "ehrs")]
    pub svix_app_id: String,

    /// Svix backend: `whsec_…` secret of the operational webhook endpoint that points at
    /// `/api/v1/webhooks/internal/svix-ops`.
    #[arg(long, env = "SVIX_OPS_WEBHOOK_SECRET", hide_env_values = true)]
    pub svix_ops_webhook_secret: Option<String>,

    /// Delays between delivery attempts.
    #[arg(long, env = "EHRS_WEBHOOK_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub webhook_retry_schedule: RetrySchedule,

    /// Time limit of one delivery attempt.
    #[arg(long, env = "EHRS_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// Consecutive failures that auto-pause a subscription.
    #[arg(long, env = "EHRS_WEBHOOK_AUTOPAUSE_AFTER", default_value_t = 5)]
    pub webhook_autopause_after: i64,

    /// Allow `http://` and loopback targets (development only).
    #[arg(long, env = "EHRS_WEBHOOKS_ALLOW_INSECURE", default_value = "false", value_parser = parse_flag)]
    pub webhooks_allow_insecure: bool,

    /// Private ranges (CIDRs, comma-separated) subscriptions may reach: a partner on the
    /// camp's own network. Loopback, link-local and metadata addresses stay refused.
    #[arg(long, env = "EHRS_WEBHOOK_ALLOWED_SUBNETS", default_value = "", value_parser = parse_subnets)]
    pub webhook_allowed_subnets: Subnets,

    /// Of the allowed ranges, those where `http://` is accepted (many LAN devices cannot
    /// do TLS). Each must lie within `EHRS_WEBHOOK_ALLOWED_SUBNETS`.
    #[arg(long, env = "EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS", default_value = "", value_parser = parse_subnets)]
    pub webhook_allow_http_subnets: Subnets,

    /// What the webhook engine connects to when it must tell a down uplink from down
    /// partners: a URL (any HTTP answer means the link works) or `host:port` (a TCP
    /// connection does). Unset: the engine reaches for the endpoints' own addresses.
    #[arg(long, env = "EHRS_UPLINK_PROBE", value_parser = parse_uplink_probe)]
    pub uplink_probe: Option<UplinkProbe>,

    /// While the uplink is down, how often the probe runs (1s to 1h).
    #[arg(long, env = "EHRS_UPLINK_PROBE_INTERVAL", default_value = "15s", value_parser = parse_probe_interval)]
    pub uplink_probe_interval: Duration,

    /// Scheduled backups (SQLite): the directory the server writes a backup into every
    /// `EHRS_BACKUP_INTERVAL`. Unset: no scheduled backups.
    #[arg(long, env = "EHRS_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// How often the scheduled backup runs (1s to 7d).
    #[arg(long, env = "EHRS_BACKUP_INTERVAL", default_value = "1h", value_parser = parse_backup_interval)]
    pub backup_interval: Duration,

    /// How many scheduled backups to keep (the newest; at least 1).
    #[arg(long, env = "EHRS_BACKUP_KEEP", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    pub backup_keep: u32,

    /// How long the access audit keeps its entries (1d or more; `365d`, `8760h`, …).
    #[arg(long, env = "EHRS_ACCESS_AUDIT_RETENTION", default_value = "365d", value_parser = parse_access_retention)]
    pub access_audit_retention: Duration,

    /// FHIR payloads: the identifier system of book numbers (`Patient.identifier.system`),
    /// an absolute URI the camp's organisation owns, e.g. `https://health.example.org/book-no`.
    #[arg(long, env = "EHRS_FHIR_BOOK_NO_SYSTEM", default_value = DEFAULT_FHIR_BOOK_NO_SYSTEM, value_parser = parse_absolute_uri)]
    pub fhir_book_no_system: String,

    /// How long a rotated-out signing secret keeps signing alongside the new one.
    #[arg(long, env = "EHRS_WEBHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    pub webhook_secret_overlap: Duration,

    /// Days after which message payloads and response bodies are cleared (metadata stays).
    #[arg(long, env = "EHRS_WEBHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub webhook_retention_days: i64,

    /// Shared delivery slots: beyond its own one slot, a subscription's extra deliveries
    /// in flight come from this pool (so at most this plus one per subscription).
    #[arg(long, env = "EHRS_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,

    /// Subscriptions the server keeps at most: each costs a delivery slot and a share of
    /// every event's fan-out, so an unbounded number is a way to slow a camp down.
    #[arg(long, env = "EHRS_WEBHOOK_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub webhook_max_subscriptions: i64,

    /// Deliveries in flight at once to one subscription (one while its endpoint is not
    /// answering: timed out or unreachable, until it answers again).
    #[arg(long, env = "EHRS_WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 8)]
    pub webhook_endpoint_concurrency: usize,

    /// Run the delivery workers in this process (off: an API-only instance).
    #[arg(long, env = "EHRS_WEBHOOK_WORKERS", default_value = "true", value_parser = parse_flag)]
    pub webhook_workers: bool,

    /// The webhook engine's clock: the system clock, unless a test puts an adjustable
    /// one here (not a command-line option).
    #[arg(skip)]
    pub webhook_clock: crate::time::Clock,

    /// How often the webhook engine looks in the database for work nothing announced
    /// (retries the recorder did not time, other instances' writes on PostgreSQL); a test
    /// lengthens it to show that some path does not depend on it (not a command-line
    /// option).
    #[arg(skip = std::time::Duration::from_secs(1))]
    pub webhook_sweep_interval: std::time::Duration,

    /// Run the job runner in this process (inbound webhook actions). Always on for
    /// `ehrs serve`; tests run due jobs themselves (not a command-line option).
    #[arg(skip = true)]
    pub job_workers: bool,

    /// On an empty user table, create the `admin` user at start-up. Always on for
    /// `ehrs serve`; tests make their own users (not a command-line option).
    #[arg(skip = true)]
    pub create_admin: bool,

    /// Inbound sources the server keeps at most; creating one more is 409 `source_limit`.
    #[arg(long, env = "EHRS_INBOUND_MAX_SOURCES", default_value_t = 100)]
    pub inbound_max_sources: i64,

    /// How far `X-EHRS-Timestamp` of an inbound webhook may be from now, either way.
    #[arg(long, env = "EHRS_INBOUND_TIMESTAMP_TOLERANCE", default_value = "5m", value_parser = parse_duration)]
    pub inbound_timestamp_tolerance: Duration,

    /// Log format: `text` or `json`.
    #[arg(long, env = "EHRS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// The secrets `ehrs serve` reads, listed under its `--help`: from the environment (or a
/// file) only, never from flags, which any user of the machine sees in the process list.
pub const SECRETS_HELP: &str = "\
Secrets (environment only, never flags: a flag shows in the process list):
  EHRS_ADMIN_PASSWORD       password of the first admin, read while there is no user yet
                            (default: generated into <data dir>/initial-admin-password, 0600)
  EHRS_ADMIN_PASSWORD_FILE  a file holding that password, when EHRS_ADMIN_PASSWORD is unset
  EHRS_METRICS_TOKEN        bearer token a scraper sends for /metrics (unset: loopback clients only)
  EHRS_JWT_SECRET           token signing secret (default on SQLite: generated into the data dir)
  EHRS_SECRET_KEY           32 bytes, base64, sealing stored webhook secrets (default on SQLite: generated)";

/// A variable's value; unset and empty are the same (an empty secret is no secret).
fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// What `ehrs migrate` and `ehrs user create` read: the database and the log format. (The
/// same variables as in [`Settings`], so their `--help` lists only these.)
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseSettings {
    /// Where the SQLite file lives.
    #[arg(long, env = "EHRS_DATA_DIR", default_value = "./ehrs-data")]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…` (default: `sqlite://$EHRS_DATA_DIR/ehrs.db`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The passphrase of an encrypted embedded database.
    #[command(flatten)]
    pub db_passphrase: DbPassphrase,

    /// Log format: `text` or `json`.
    #[arg(long, env = "EHRS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl DatabaseSettings {
    pub fn database_url(&self) -> String {
        database_url_or_default(self.database_url.as_deref(), &self.data_dir)
    }

    /// The key of the embedded database (see [`DbPassphrase::unlock`]).
    pub fn db_key(&self) -> anyhow::Result<Option<crate::db::cipher::DbKey>> {
        unlock(&self.database_url(), &self.data_dir, &self.db_passphrase)
    }

    /// Unlocks and opens the database, for the commands that are not the server.
    pub async fn connect(&self) -> anyhow::Result<crate::db::Db> {
        let key = self.db_key()?;
        crate::db::Db::connect(&self.database_url(), 2, key.as_ref()).await
    }
}

/// The key of the database at `url`: `None` on PostgreSQL, where the platform encrypts.
fn unlock(
    url: &str,
    data_dir: &Path,
    passphrase: &DbPassphrase,
) -> anyhow::Result<Option<crate::db::cipher::DbKey>> {
    use crate::failure::{Failure, Kind};
    match crate::db::sqlite_path(url) {
        Some(database) => passphrase.unlock(&database, data_dir),
        None if passphrase.file.is_some() || passphrase.value.is_some() => Err(Failure::new(
            Kind::Configuration,
            "EHRS_DB_PASSPHRASE encrypts the embedded SQLite database, not PostgreSQL",
        )
        .hint(
            "unset EHRS_DB_PASSPHRASE and EHRS_DB_PASSPHRASE_FILE; on PostgreSQL, encrypt \
             the server's disk and connect with sslmode=verify-full (README, \"Protecting \
             patient data\")",
        )
        .into()),
        None => Ok(None),
    }
}

/// `DATABASE_URL`, or the SQLite file in the data dir.
fn database_url_or_default(url: Option<&str>, data_dir: &Path) -> String {
    url.map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ehrs.db").display()))
}

impl Settings {
    /// The defaults, as `ehrs serve` would use them with an empty environment.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        Wrapper::parse_from(["ehrs"]).settings
    }

    pub fn database_url(&self) -> String {
        database_url_or_default(self.database_url.as_deref(), &self.data_dir)
    }

    /// The key of the embedded database (see [`DbPassphrase::unlock`]).
    pub fn db_key(&self) -> anyhow::Result<Option<crate::db::cipher::DbKey>> {
        unlock(&self.database_url(), &self.data_dir, &self.db_passphrase)
    }

    pub fn login_throttle(&self) -> crate::auth::ThrottleSettings {
        crate::auth::ThrottleSettings {
            free_per_user: self.login_throttle_after,
            free_per_address: self.login_throttle_after_address,
            base_delay: self.login_throttle_delay,
            max_delay: self.login_throttle_max_delay,
            window: self.login_throttle_window,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url().starts_with("postgres")
    }

    /// The first admin's password as configured: `EHRS_ADMIN_PASSWORD`, else the content
    /// of `EHRS_ADMIN_PASSWORD_FILE` (its last line break dropped), else `None`.
    pub fn admin_password(&self) -> anyhow::Result<Option<String>> {
        use crate::failure::{Failed, Failure, Kind};
        if let Some(password) = &self.admin_password {
            return Ok(Some(password.clone()));
        }
        let Some(file) = &self.admin_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).failed(|| {
            Failure::new(
                Kind::Configuration,
                format!("cannot read EHRS_ADMIN_PASSWORD_FILE {}", file.display()),
            )
            .hint("point EHRS_ADMIN_PASSWORD_FILE at a readable file, or unset it")
        })?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

impl Settings {
    /// The subnet settings agree: `http://` is accepted only where subscriptions may go.
    pub fn check_subnets(&self) -> anyhow::Result<()> {
        use crate::failure::{Failure, Kind};
        let allowed = &self.webhook_allowed_subnets.0;
        let outside = self
            .webhook_allow_http_subnets
            .0
            .iter()
            .find(|http| !allowed.iter().any(|net| net.contains(*http)));
        match outside {
            None => Ok(()),
            Some(subnet) => Err(Failure::new(
                Kind::Configuration,
                format!("EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS names {subnet}, which is not within EHRS_WEBHOOK_ALLOWED_SUBNETS"),
            )
            .hint("add the range to EHRS_WEBHOOK_ALLOWED_SUBNETS too, or remove it")
            .into()),
        }
    }
}

/// A list of address ranges (`10.0.5.0/24,192.168.1.20/32`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnets(pub Vec<ipnet::IpNet>);

pub fn parse_subnets(raw: &str) -> Result<Subnets, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .map_err(|_| format!("'{part}' is not an address range in CIDR form (10.0.5.0/24)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Subnets)
}

/// Where the uplink probe connects (`EHRS_UPLINK_PROBE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkProbe {
    /// An `http://` or `https://` URL: any HTTP answer means the link works.
    Url(url::Url),
    /// `host:port`: a TCP connection (even a refused one: the host was reached) means it
    /// works.
    Address(String),
}

impl std::fmt::Display for UplinkProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UplinkProbe::Url(url) => f.write_str(url.as_str()),
            UplinkProbe::Address(address) => f.write_str(address),
        }
    }
}

/// The identifier system of book numbers in FHIR payloads when none is configured.
pub const DEFAULT_FHIR_BOOK_NO_SYSTEM: &str = "urn:ehrs:book-no";

/// An absolute URI (a scheme, then the rest): `urn:…`, `https://…`.
pub fn parse_absolute_uri(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    match url::Url::parse(raw) {
        Ok(_) if !raw.contains(char::is_whitespace) => Ok(raw.to_string()),
        _ => Err(format!(
            "'{raw}' is not an absolute URI (e.g. urn:ehrs:book-no or https://health.example.org/book-no)"
        )),
    }
}

pub fn parse_uplink_probe(raw: &str) -> Result<UplinkProbe, String> {
    let raw = raw.trim();
    if raw.contains("://") {
        let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
        return match (url.scheme(), url.host()) {
            ("http" | "https", Some(_)) => Ok(UplinkProbe::Url(url)),
            _ => Err(format!(
                "'{raw}' must be an http:// or https:// URL with a host"
            )),
        };
    }
    let valid = raw.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if valid {
        Ok(UplinkProbe::Address(raw.to_string()))
    } else {
        Err(format!(
            "'{raw}' is neither a URL nor host:port (e.g. https://example.org/ or 192.168.1.1:53)"
        ))
    }
}

fn parse_backup_interval(raw: &str) -> Result<Duration, String> {
    let interval = parse_duration(raw)?;
    if (Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(&interval) {
        Ok(interval)
    } else {
        Err(format!("'{raw}' is outside 1s to 7d"))
    }
}

fn parse_access_retention(raw: &str) -> Result<Duration, String> {
    let retention = parse_duration(raw)?;
    if retention >= Duration::from_secs(86_400) {
        Ok(retention)
    } else {
        Err(format!(
            "'{raw}' is under 1d: the access audit keeps at least a day"
        ))
    }
}

fn parse_probe_interval(raw: &str) -> Result<Duration, String> {
    let interval = parse_duration(raw)?;
    if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&interval) {
        Ok(interval)
    } else {
        Err(format!("'{raw}' is outside 1s to 1h"))
    }
}

/// Delays between delivery attempts; its length is the number of retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// The delay before retry number `retry` (1-based), or `None` when exhausted.
    pub fn delay(&self, retry: usize) -> Option<Duration> {
        retry.checked_sub(1).and_then(|i| self.0.get(i)).copied()
    }
}

pub fn parse_schedule(raw: &str) -> Result<RetrySchedule, String> {
    if raw.trim().is_empty() {
        return Ok(RetrySchedule(Vec::new()));
    }
    raw.split(',')
        .map(|part| parse_duration(part.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(RetrySchedule)
}

/// `500ms`, `15s`, `5m`, `2h`, `1d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{raw}' needs a unit (ms, s, m, h, d)"))?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration"))?;
    let millis = match unit {
        "ms" => n,
        "s" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(format!("'{raw}' has an unknown unit (use ms, s, m, h, d)")),
    };
    Ok(Duration::from_millis(millis))
}

fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("'{raw}' is not a boolean (use 1/0, true/false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    #[test]
    fn the_book_number_system_must_be_an_absolute_uri() {
        for good in [
            DEFAULT_FHIR_BOOK_NO_SYSTEM,
            "https://health.example.org/book-no",
            "urn:oid:1.2.3",
        ] {
            assert_eq!(parse_absolute_uri(good).as_deref(), Ok(good));
        }
        for bad in [
            "book-no",
            "",
            "/book-no",
            "https://health.example.org/book no",
        ] {
            assert!(parse_absolute_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_schedule_matches_the_spec() {
        let schedule = parse_schedule("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(schedule.0.len(), 7);
        assert_eq!(schedule.delay(1), Some(Duration::from_secs(5)));
        assert_eq!(schedule.delay(4), Some(Duration::from_secs(7200)));
        assert_eq!(schedule.delay(8), None);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }

    fn postgres_settings() -> Settings {
        let mut settings = Settings::defaults();
        settings.database_url = Some("postgres://postgres@127.0.0.1:5432/ehrs".into());
        settings.jwt_secret = None;
        settings.secret_key = None;
        settings
    }

    #[test]
    fn missing_postgres_keys_are_named_with_how_to_make_them() {
        let error = postgres_settings().load_keys().unwrap_err().to_string();
        assert_eq!(
            error,
            "EHRS_JWT_SECRET and EHRS_SECRET_KEY are required with PostgreSQL, where every \
             instance must share them: make each with `openssl rand -base64 32` and give \
             every instance the same values (in the environment or .env)"
        );
        let mut settings = postgres_settings();
        settings.jwt_secret = Some("a-shared-jwt-secret-of-some-length".into());
        let error = settings.load_keys().unwrap_err().to_string();
        assert!(
            error.starts_with("EHRS_SECRET_KEY is required with PostgreSQL"),
            "{error}"
        );
        assert!(
            error.contains("make one with `openssl rand -base64 32`"),
            "{error}"
        );
        let mut settings = postgres_settings();
        settings.secret_key = Some(BASE64.encode([1u8; 32]));
        let error = settings.load_keys().unwrap_err().to_string();
        assert!(
            error.starts_with("EHRS_JWT_SECRET is required with PostgreSQL"),
            "{error}"
        );
        assert!(error.contains("`openssl rand -base64 32`"), "{error}");
        settings.jwt_secret = Some("short".into());
        let error = settings.load_keys().unwrap_err().to_string();
        assert!(error.contains("`openssl rand -base64 32`"), "{error}");
    }

    #[test]
    fn a_key_made_by_openssl_rand_is_accepted() {
        // The shape `openssl rand -base64 32` prints: 44 characters with one `=`.
        let made = BASE64.encode([9u8; 32]);
        let mut settings = postgres_settings();
        settings.jwt_secret = Some(made.clone());
        settings.secret_key = Some(format!("{made}\n"));
        let keys = settings.load_keys().unwrap();
        assert_eq!(keys.data, [9u8; 32]);
    }

    #[test]
    fn processes_racing_to_create_a_key_file_all_get_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let data_dir = dir.path().join(round.to_string());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        let barrier = barrier.clone();
                        let data_dir = data_dir.clone();
                        scope.spawn(move || {
                            barrier.wait();
                            keys::key_file(&data_dir, "secret_key").unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(keys[0].len(), 32);
            assert!(keys.iter().all(|key| key == &keys[0]), "round {round}");
            // Only the key remains: no temporary file is left behind.
            let names: Vec<_> = std::fs::read_dir(&data_dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            assert_eq!(names, ["secret_key"]);
        }
    }
}
