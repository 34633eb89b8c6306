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
        errors.finish()
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
        errors.finish()
    }
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
