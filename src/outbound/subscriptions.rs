//! Subscriptions: who receives which events, where, in which payload mode. The model
//! and its validation, shared by both backends (the embedded backend's SQL is in
//! `store::subscriptions`; the Svix backend maps Svix endpoints onto these types).

use super::events::EventType;
use super::payload::PayloadMode;
use crate::ids::SubscriptionId;
use crate::time::Timestamp;
use crate::validation::FieldErrors;
use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `https://` endpoint that receives the deliveries.
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
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

/// Checks an event-type filter: every entry must be a known type.
pub(crate) fn validate_event_types(errors: &mut FieldErrors, types: &[String]) {
    let unknown: Vec<&String> = types
        .iter()
        .filter(|t| EventType::parse(t).is_none())
        .collect();
    if !unknown.is_empty() {
        let valid: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        errors.add(
            "event_types",
            format!(
                "must list only known event types (unknown: {unknown:?}); the valid types are: {}",
                valid.join(", ")
            ),
        );
    }
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
    pub url: Option<String>,
    pub description: Option<String>,
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
