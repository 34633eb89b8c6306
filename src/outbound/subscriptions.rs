//! Subscriptions: who receives which events, where, in which payload mode. The model
//! and its validation, shared by both backends (the embedded backend's SQL is in
//! `store::subscriptions`; the Svix backend maps Svix endpoints onto these types).

use super::events::EventType;
use super::payload::PayloadMode;
use crate::ids::SubscriptionId;
use crate::time::Timestamp;
use crate::validation::FieldErrors;
use serde::{Deserialize, Deserializer, Serialize};

/// A subscription as the admin API shows it. The secret is never part of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    pub payload: PayloadMode,
    /// One delivery in flight at a time, in sequence order; a failing delivery holds
    /// back the later ones until it is delivered or exhausted.
    pub ordered: bool,
    /// A `webhook.heartbeat` after this long without a delivery (`null`: none).
    #[schema(example = "10m")]
    pub heartbeat_interval: Option<String>,
    pub enabled: bool,
    /// Why the subscription was disabled automatically, if it was.
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The answer to create (and rotate): the subscription plus its signing secret, shown
/// this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks / Svix libraries).
    pub secret: String,
    /// `ehrs_feed_…`: the partner's credential for this subscription's catch-up feed
    /// (`GET …/subscriptions/{id}/events`), derived from `secret`, so it changes when the
    /// secret rotates. Absent under Svix, which has no feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_token: Option<String>,
}

impl SubscriptionWithSecret {
    /// The answer of the embedded engine, which serves the feed: with its feed token.
    pub fn with_feed_token(subscription: Subscription, secret: String) -> Self {
        let feed_token = super::signing::secret_key(&secret)
            .map(|key| super::signing::feed_token(&key, subscription.id.as_str()));
        SubscriptionWithSecret {
            subscription,
            secret,
            feed_token,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `https://` endpoint that receives the deliveries.
    #[schema(min_length = 1, max_length = 2000)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all. A type listed twice is kept
    /// once.
    #[serde(default, deserialize_with = "folded_event_types")]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub payload: PayloadMode,
    /// Ordered delivery: one in flight at a time, strictly in sequence, a failing
    /// delivery holding back the later ones until it is delivered or exhausted. Off by
    /// default: deliveries then go out up to the per-endpoint concurrency at once, so a
    /// receiver may see sequence numbers out of order and sorts by `sequence` itself.
    /// Embedded engine only.
    #[serde(default)]
    pub ordered: bool,
    /// After this long without a delivery the subscription receives a signed
    /// `webhook.heartbeat` carrying its last sequence number, so silence can be told from
    /// loss: `30s`, `10m`, `1h` (from 1 s to 24 h; absent or `null`: no heartbeats). The
    /// filter must take `webhook.heartbeat`. Embedded engine only.
    #[schema(example = "10m")]
    pub heartbeat_interval: Option<String>,
}

/// Checks an event-type filter: every entry must be a known type (each unknown one is
/// named by its place in the list, with the known types in `allowed`).
pub(crate) fn validate_event_types(errors: &mut FieldErrors, types: &[String]) {
    for (index, name) in types.iter().enumerate() {
        if EventType::parse(name).is_none() {
            let known = EventType::ALL
                .iter()
                .map(|t| t.as_str().to_string())
                .collect();
            errors.add_allowed(&format!("event_types[{index}]"), known);
        }
    }
}

/// Reads an event-type filter with repeats folded into the first (a type listed twice is
/// still one filter entry: it is stored, shown and matched once).
fn folded_event_types<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Vec::deserialize(deserializer).map(fold)
}

fn folded_event_types_update<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    Option::<Vec<String>>::deserialize(deserializer).map(|types| types.map(fold))
}

fn fold(mut types: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    types.retain(|name| seen.insert(name.clone()));
    types
}

impl NewSubscription {
    pub fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("url", &self.url, 2000);
        errors.optional_text("description", Some(&self.description), 500);
        validate_event_types(&mut errors, &self.event_types);
        if let Some(interval) = &self.heartbeat_interval {
            check_heartbeat(&mut errors, interval, &self.event_types);
        }
        errors.finish()
    }

    /// The heartbeat interval in milliseconds (after [`NewSubscription::validate`]).
    pub fn heartbeat_ms(&self) -> Option<i64> {
        self.heartbeat_interval
            .as_deref()
            .and_then(|raw| heartbeat_ms(raw).ok())
    }
}

/// The shortest and longest heartbeat intervals.
pub const HEARTBEAT_MIN_MS: i64 = 1_000;
pub const HEARTBEAT_MAX_MS: i64 = 86_400_000;

/// `10m` → 600,000 ms, within [`HEARTBEAT_MIN_MS`, `HEARTBEAT_MAX_MS`].
pub fn heartbeat_ms(raw: &str) -> Result<i64, String> {
    let interval = crate::config::parse_duration(raw)
        .map_err(|_| "must be a duration such as 30s, 10m or 1h".to_string())?;
    let ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    if !(HEARTBEAT_MIN_MS..=HEARTBEAT_MAX_MS).contains(&ms) {
        return Err("must be from 1s to 24h".to_string());
    }
    Ok(ms)
}

/// How an interval is shown: in the largest unit that states it exactly (`90s`, `10m`).
pub fn show_interval(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A heartbeat interval must parse, and the filter must take the heartbeats it asks for.
pub(crate) fn check_heartbeat(errors: &mut FieldErrors, interval: &str, filter: &[String]) {
    if let Err(reason) = heartbeat_ms(interval) {
        errors.add("heartbeat_interval", reason);
    } else if !filter_takes(filter, EventType::WebhookHeartbeat.as_str()) {
        errors.add(
            "heartbeat_interval",
            "needs webhook.heartbeat in event_types (the filter decides everything a subscription receives)",
        );
    }
}

/// `PUT /webhooks/subscriptions/{id}`: any subset of the fields.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    #[schema(min_length = 1, max_length = 2000)]
    pub url: Option<String>,
    pub description: Option<String>,
    /// A type listed twice is kept once.
    #[serde(default, deserialize_with = "folded_event_types_update")]
    pub event_types: Option<Vec<String>>,
    pub payload: Option<PayloadMode>,
    /// Turns ordered delivery on or off (see `NewSubscription.ordered`).
    pub ordered: Option<bool>,
    /// Sets the heartbeat interval (see `NewSubscription.heartbeat_interval`); `null`
    /// turns heartbeats off.
    #[serde(default, deserialize_with = "crate::validation::present")]
    #[schema(value_type = Option<String>, example = "10m")]
    pub heartbeat_interval: Option<Option<String>>,
}

impl SubscriptionUpdate {
    pub fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Some(url) = &self.url {
            errors.text("url", url, 2000);
        }
        errors.optional_text("description", self.description.as_deref(), 500);
        if let Some(types) = &self.event_types {
            validate_event_types(&mut errors, types);
        }
        if let Some(Some(interval)) = &self.heartbeat_interval
            && let Err(reason) = heartbeat_ms(interval)
        {
            errors.add("heartbeat_interval", reason);
        }
        errors.finish()
    }
}

/// An update must leave a heartbeat its filter takes: the interval and the filter after
/// the update, each the update's or the current one.
pub fn check_update_heartbeat(
    current: &Subscription,
    input: &SubscriptionUpdate,
) -> Result<(), crate::error::ApiError> {
    let interval = match &input.heartbeat_interval {
        Some(interval) => interval.as_deref(),
        None => current.heartbeat_interval.as_deref(),
    };
    let filter = input.event_types.as_ref().unwrap_or(&current.event_types);
    let mut errors = FieldErrors::new();
    if let Some(interval) = interval {
        check_heartbeat(&mut errors, interval, filter);
    }
    Ok(errors.finish()?)
}

/// Whether an event-type filter takes `event_type` (an empty filter takes every type).
pub fn filter_takes(filter: &[String], event_type: &str) -> bool {
    filter.is_empty() || filter.iter().any(|taken| taken == event_type)
}

/// A retry, a recovery or a test sends a subscription only what its filter takes, as the
/// first send did: 422 `event_type_not_subscribed` otherwise, saying how to let it in.
pub fn check_filter_takes(
    subscription: &SubscriptionId,
    filter: &[String],
    event_type: &str,
) -> Result<(), crate::error::ApiError> {
    if filter_takes(filter, event_type) {
        return Ok(());
    }
    Err(crate::error::ApiError::unprocessable(
        "event_type_not_subscribed",
        format!(
            "subscription '{subscription}' does not take {event_type} events (its filter: {}); add {event_type} to its event_types to send it one",
            filter.join(", ")
        ),
    )
    .with_details(serde_json::json!({ "event_type": event_type, "event_types": filter })))
}
