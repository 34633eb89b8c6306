//! Svix endpoints as EHRS subscriptions: an endpoint's `uid` is the subscription id; the
//! payload mode is in its metadata and channel; our health counters ride along (see
//! [`super::endpoint_health`]). Also which event types need an identifiers-only copy
//! (what the relay asks).

use super::endpoint_health::{self, EndpointHealth};
use super::{PAYLOAD_METADATA, SvixBackend, api_error};
use crate::error::{ApiError, ApiResult};
use crate::ids::SubscriptionId;
use crate::outbound::payload::PayloadMode;
use crate::outbound::subscriptions::Subscription;
use std::collections::{BTreeMap, BTreeSet};
use svix::api::EndpointListOptions;
use svix::models::EndpointOut;

/// The Svix channel a payload mode rides on: every event goes out on `full`; its
/// identifiers-only copy on `id_only` and its FHIR copy on `fhir` (see `relay`), each
/// only when some endpoint takes it. Each EHRS endpoint listens on one. The channel is
/// the mode's own name.
pub(super) fn channel(mode: PayloadMode) -> &'static str {
    mode.as_str()
}

/// Largest page Svix serves.
pub(super) const SVIX_PAGE: u64 = 250;

/// Re-reads which event types enabled endpoints take in each mode besides `full`, and warns
/// (once per change) about endpoints without channels.
pub(super) async fn refresh_payload_modes(backend: &SvixBackend) -> Result<(), svix::error::Error> {
    let endpoints = backend.all_endpoints().await?;
    let mut copies = super::Copies::default();
    for endpoint in endpoints.iter().filter(|e| !e.disabled.unwrap_or(false)) {
        copies.add(payload_mode(endpoint), endpoint.event_types.as_ref());
    }
    // Svix delivers a message with channels to every endpoint that has none (an endpoint
    // made directly in Svix): such an endpoint gets the full envelope and, for the types
    // an `id_only` or `fhir` subscription takes, those copies as well. EHRS does not
    // manage those endpoints, so it says so rather than change them.
    let unchanneled: Vec<&str> = endpoints
        .iter()
        .filter(|e| !e.disabled.unwrap_or(false))
        .filter(|e| e.channels.as_ref().is_none_or(BTreeSet::is_empty))
        .map(|e| e.id.as_str())
        .collect();
    let warned = unchanneled.join(",");
    let changed = {
        let mut last = backend
            .unchanneled_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *last, warned.clone()) != warned
    };
    if changed && !unchanneled.is_empty() && !copies.only_full() {
        tracing::warn!(endpoints = %warned, "Svix endpoints without channels receive the full copy and also the id_only and fhir copies of events such subscriptions take; give them channel `full`");
    }
    *backend.copies() = copies;
    Ok(())
}

/// An endpoint's mode: the channel it listens on, else its metadata, else `full`.
pub(super) fn payload_mode(endpoint: &EndpointOut) -> PayloadMode {
    let on_channel = |mode: PayloadMode| {
        endpoint
            .channels
            .as_ref()
            .is_some_and(|channels| channels.contains(channel(mode)))
    };
    let marked = endpoint
        .metadata
        .get(PAYLOAD_METADATA)
        .and_then(|mode| PayloadMode::parse(mode));
    [PayloadMode::IdOnly, PayloadMode::Fhir]
        .into_iter()
        .find(|&mode| on_channel(mode))
        .or(marked)
        .unwrap_or(PayloadMode::Full)
}

pub(super) fn channels_for(mode: PayloadMode) -> BTreeSet<String> {
    [channel(mode).to_string()].into()
}

pub(super) fn metadata_for(
    mode: PayloadMode,
    mut metadata: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    metadata.insert(PAYLOAD_METADATA.to_string(), mode.as_str().to_string());
    metadata
}

pub(super) fn event_filter(types: &[String]) -> Option<BTreeSet<String>> {
    (!types.is_empty()).then(|| types.iter().cloned().collect())
}

/// An endpoint as a subscription; `None` for endpoints not made through EHRS (their uid
/// is not a subscription id), which this API does not manage.
pub(super) fn to_subscription(
    endpoint: &EndpointOut,
    health: Option<&EndpointHealth>,
) -> Option<Subscription> {
    let id = SubscriptionId::parse(endpoint.uid.as_deref()?)?;
    let enabled = !endpoint.disabled.unwrap_or(false);
    let paused = health.filter(|h| h.auto_paused && !enabled);
    Some(Subscription {
        id,
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        event_types: endpoint
            .event_types
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        payload: payload_mode(endpoint),
        ordered: false,
        heartbeat_interval: None,
        enabled,
        paused_reason: paused.and_then(|h| h.paused_reason.clone()),
        paused_at: paused.and_then(|h| h.paused_at),
        created_at: endpoint.created_at.into(),
        updated_at: endpoint.updated_at.into(),
    })
}

/// The endpoint's event-type filter (empty: every type).
pub(super) fn event_filter_of(endpoint: &EndpointOut) -> Vec<String> {
    endpoint.event_types.iter().flatten().cloned().collect()
}

/// Would Svix send `send-example`'s message (no channels) of this type to the endpoint?
pub(super) fn takes_example(endpoint: &EndpointOut, event_type: &str) -> bool {
    endpoint.channels.as_ref().is_none_or(BTreeSet::is_empty)
        && endpoint
            .event_types
            .as_ref()
            .is_none_or(|types| types.is_empty() || types.contains(event_type))
}

/// Svix has no ordered delivery per endpoint (it sends each message independently, with
/// its own retries), so asking for it is refused rather than silently not honoured.
pub(super) fn refuse_ordered(ordered: Option<bool>) -> Result<(), ApiError> {
    if ordered == Some(true) {
        return Err(ApiError::invalid_field(
            "ordered",
            "is available with the embedded engine only (WEBHOOK_BACKEND=embedded): Svix sends each message on its own",
        ));
    }
    Ok(())
}

/// Svix sends what it is given and nothing on a timer of ours: a heartbeat would need
/// EHRS to post one through Svix per endpoint, which it does not do.
pub(super) fn refuse_heartbeat(asked: bool) -> Result<(), ApiError> {
    if asked {
        return Err(ApiError::invalid_field(
            "heartbeat_interval",
            "is available with the embedded engine only (WEBHOOK_BACKEND=embedded): under Svix, EHRS sends no heartbeats",
        ));
    }
    Ok(())
}

impl SvixBackend {
    /// Every endpoint of the application, following Svix's iterator.
    pub(super) async fn all_endpoints(&self) -> Result<Vec<EndpointOut>, svix::error::Error> {
        let mut endpoints = Vec::new();
        let mut iterator = None;
        loop {
            let page = self
                .client
                .endpoint()
                .list(
                    self.app.clone(),
                    Some(EndpointListOptions {
                        limit: Some(SVIX_PAGE),
                        iterator: iterator.take(),
                        order: None,
                    }),
                )
                .await?;
            endpoints.extend(page.data);
            if page.done || page.iterator.is_none() {
                return Ok(endpoints);
            }
            iterator = page.iterator;
        }
    }

    pub(super) async fn endpoint(&self, id: &SubscriptionId) -> ApiResult<EndpointOut> {
        self.client
            .endpoint()
            .get(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))
    }

    pub(super) async fn subscription(&self, endpoint: &EndpointOut) -> ApiResult<Subscription> {
        let health = match endpoint.uid.as_deref().and_then(SubscriptionId::parse) {
            Some(id) => endpoint_health::read(&self.db, &id).await?,
            None => None,
        };
        to_subscription(endpoint, health.as_ref()).ok_or_else(|| {
            ApiError::not_found(
                "subscription",
                endpoint.uid.as_deref().unwrap_or(&endpoint.id),
            )
        })
    }

    pub(super) async fn secret(&self, id: &SubscriptionId) -> ApiResult<String> {
        Ok(self
            .client
            .endpoint()
            .get_secret(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?
            .key)
    }
}
