//! [`WebhookBackend`] for Svix: the administration API of SPEC §5 served by calling the
//! Svix server. Subscriptions are endpoints addressed by their `uid` (the subscription
//! id); logs are Svix messages and attempts; failure statistics come from our counters,
//! which Svix's operational webhooks keep (see [`super::ops`]).

use super::ops::{self, EndpointHealth};
use super::relay::{FULL_CHANNEL, ID_ONLY_CHANNEL};
use super::{PAYLOAD_METADATA, SvixBackend, api_error};
use crate::error::{ApiError, ApiResult};
use crate::http::Page;
use crate::ids::{EventId, MessageId, SubscriptionId};
use crate::outbound::backend::*;
use crate::outbound::events::{API_VERSION, EventType};
use crate::outbound::signing;
use crate::outbound::store::DisplayStatus;
use crate::outbound::subscriptions::{
    NewSubscription, PayloadMode, Subscription, SubscriptionUpdate, SubscriptionWithSecret,
};
use crate::tasks::Tasks;
use crate::time::Timestamp;
use axum::http::HeaderMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use svix::api::{
    EndpointCreateOptions, EndpointListOptions, MessageAttemptListAttemptedDestinationsOptions,
    MessageAttemptListAttemptedMessagesOptions, MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions, MessageListOptions,
};
use svix::models::{
    EndpointIn, EndpointOut, EndpointPatch, EndpointSecretRotateIn, EndpointUpsertIn,
    EventExampleIn, MessageAttemptOut, MessageStatus, RecoverIn,
};

/// Largest page Svix serves.
const SVIX_PAGE: u64 = 250;
/// How long the test route waits for Svix's first attempt before answering without it.
const TEST_ATTEMPT_WAIT: Duration = Duration::from_secs(5);
/// Bytes of a receiver's response body shown in the attempt log (as the embedded engine).
const KEPT_RESPONSE_BYTES: usize = 1024;

/// Re-reads which event types enabled endpoints take as `id_only` payloads, and warns
/// (once per change) about endpoints without channels.
pub async fn refresh_payload_modes(backend: &SvixBackend) -> Result<(), svix::error::Error> {
    let endpoints = backend.all_endpoints().await?;
    let mut id_only = super::IdOnlyTypes::None;
    for endpoint in endpoints.iter().filter(|e| !e.disabled.unwrap_or(false)) {
        if payload_mode(endpoint) == PayloadMode::IdOnly {
            id_only.add(endpoint.event_types.as_ref());
        }
    }
    // Svix delivers a message with channels to every endpoint that has none (an endpoint
    // made directly in Svix): such an endpoint gets the full envelope and, for the types
    // an `id_only` subscription takes, the identifiers-only copy as well. EHRS does not
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
    if changed && !unchanneled.is_empty() && id_only != super::IdOnlyTypes::None {
        tracing::warn!(endpoints = %warned, "Svix endpoints without channels receive both the full and the identifiers-only copy of events an id_only subscription takes; give them channel `full`");
    }
    *backend.id_only_types() = id_only;
    Ok(())
}

fn payload_mode(endpoint: &EndpointOut) -> PayloadMode {
    let on_id_only_channel = endpoint
        .channels
        .as_ref()
        .is_some_and(|channels| channels.contains(ID_ONLY_CHANNEL));
    let marked = endpoint.metadata.get(PAYLOAD_METADATA).map(String::as_str);
    if on_id_only_channel || marked == Some("id_only") {
        PayloadMode::IdOnly
    } else {
        PayloadMode::Full
    }
}

fn channels_for(mode: PayloadMode) -> BTreeSet<String> {
    let channel = match mode {
        PayloadMode::Full => FULL_CHANNEL,
        PayloadMode::IdOnly => ID_ONLY_CHANNEL,
    };
    [channel.to_string()].into()
}

fn metadata_for(
    mode: PayloadMode,
    mut metadata: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    metadata.insert(PAYLOAD_METADATA.to_string(), mode.as_str().to_string());
    metadata
}

fn event_filter(types: &[String]) -> Option<BTreeSet<String>> {
    (!types.is_empty()).then(|| types.iter().cloned().collect())
}

/// An endpoint as a subscription; `None` for endpoints not made through EHRS (their uid
/// is not a subscription id), which this API does not manage.
fn to_subscription(
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
        enabled,
        paused_reason: paused.and_then(|h| h.paused_reason.clone()),
        paused_at: paused.and_then(|h| h.paused_at),
        created_at: endpoint.created_at.into(),
        updated_at: endpoint.updated_at.into(),
    })
}

/// What Svix's status of a message on one endpoint means, in our words, with an
/// explanation where Svix gives none. `enabled` is the endpoint's state, `now` the clock.
///
/// Svix marks a failed attempt with a retry scheduled by its `nextAttempt` (status
/// `fail` in attempted destinations, `sending` in attempted messages): `failed` (retry
/// scheduled or held). While the endpoint is disabled Svix drops a retry that comes due
/// without recording anything, so `nextAttempt` stays in the past: `failed` is right
/// while the subscription is disabled (re-enabling through EHRS sends it, see
/// `set_enabled`), but on an enabled endpoint such a retry will never come, so it is
/// shown as `exhausted` once it is [`OVERDUE`] late, with what to do about it.
fn display_status(
    status: MessageStatus,
    next_attempt: Option<chrono::DateTime<chrono::Utc>>,
    enabled: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> (DisplayStatus, Option<&'static str>) {
    match (status, next_attempt) {
        (MessageStatus::Success, _) => (DisplayStatus::Delivered, None),
        (MessageStatus::Fail | MessageStatus::Sending, Some(due))
            if enabled && due + OVERDUE < now =>
        {
            (DisplayStatus::Exhausted, Some(DROPPED_RETRY))
        }
        (MessageStatus::Fail | MessageStatus::Sending, Some(_)) => (DisplayStatus::Failed, None),
        (MessageStatus::Canceled, _) | (MessageStatus::Fail, None) => {
            (DisplayStatus::Exhausted, None)
        }
        (MessageStatus::Pending, _) | (MessageStatus::Sending, None) => {
            (DisplayStatus::Pending, None)
        }
    }
}

/// How late a scheduled retry may be on an enabled endpoint before it counts as dropped.
const OVERDUE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
const DROPPED_RETRY: &str = "Svix dropped its scheduled retry while the endpoint was disabled; POST /logs/{msg_id}/retry sends it again";

/// One subscription's state for a message, from what Svix reports (Svix does not say
/// how many attempts were made or what the last one answered).
fn delivery_state(
    subscription_id: SubscriptionId,
    status: MessageStatus,
    next_attempt: Option<chrono::DateTime<chrono::Utc>>,
    enabled: bool,
) -> DeliveryState {
    let (shown, why) = display_status(status, next_attempt, enabled, chrono::Utc::now());
    DeliveryState {
        subscription_id,
        sequence: None,
        status: shown.as_str().to_string(),
        attempts: None,
        next_attempt_at: next_attempt
            .filter(|_| shown == DisplayStatus::Failed)
            .map(Into::into),
        last_status_code: None,
        last_error: why.map(str::to_string),
    }
}

/// Would Svix send `send-example`'s message (no channels) of this type to the endpoint?
fn takes_example(endpoint: &EndpointOut, event_type: &str) -> bool {
    endpoint.channels.as_ref().is_none_or(BTreeSet::is_empty)
        && endpoint
            .event_types
            .as_ref()
            .is_none_or(|types| types.is_empty() || types.contains(event_type))
}

fn check_status_filter(status: Option<&str>) -> ApiResult<()> {
    match status {
        Some(raw) if DisplayStatus::parse(raw).is_none() => Err(ApiError::bad_request(
            "invalid_query",
            DisplayStatus::unknown(raw),
        )),
        _ => Ok(()),
    }
}

fn attempt_log(attempt: &MessageAttemptOut, subscription: &SubscriptionId) -> AttemptLog {
    let mut body = attempt.response.clone();
    if body.len() > KEPT_RESPONSE_BYTES {
        let mut cut = KEPT_RESPONSE_BYTES;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let code = i64::from(attempt.response_status_code);
    let failed = attempt.status == MessageStatus::Fail;
    AttemptLog {
        id: attempt.id.clone(),
        message_id: attempt.msg_id.clone(),
        subscription_id: subscription.clone(),
        attempted_at: attempt.timestamp.into(),
        status_code: (code > 0).then_some(code),
        response_body: (!body.is_empty()).then_some(body),
        duration_ms: attempt.response_duration_ms,
        error: (failed && code <= 0)
            .then(|| "no HTTP answer (connection error or timeout)".to_string()),
    }
}

impl SvixBackend {
    /// Every endpoint of the application, following Svix's iterator.
    async fn all_endpoints(&self) -> Result<Vec<EndpointOut>, svix::error::Error> {
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

    async fn endpoint(&self, id: &SubscriptionId) -> ApiResult<EndpointOut> {
        self.client
            .endpoint()
            .get(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))
    }

    async fn subscription(&self, endpoint: &EndpointOut) -> ApiResult<Subscription> {
        let health = match endpoint.uid.as_deref().and_then(SubscriptionId::parse) {
            Some(id) => ops::health(&self.db, &id).await?,
            None => None,
        };
        to_subscription(endpoint, health.as_ref()).ok_or_else(|| {
            ApiError::not_found(
                "subscription",
                endpoint.uid.as_deref().unwrap_or(&endpoint.id),
            )
        })
    }

    async fn secret(&self, id: &SubscriptionId) -> ApiResult<String> {
        Ok(self
            .client
            .endpoint()
            .get_secret(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?
            .key)
    }

    /// The Svix message id for a message id as our logs show it: an outbox id (`msg_` +
    /// ULID) is looked up by its event id (Svix's `eventId`); anything else is Svix's.
    async fn svix_message_id(&self, raw: &str) -> ApiResult<String> {
        let Some(id) = MessageId::parse(raw) else {
            return Ok(raw.to_string());
        };
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT event_id, relayed_at FROM webhook_messages WHERE id = $1")
                .bind(&id)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(raw.to_string()),
            Some((_, None)) => Err(ApiError::conflict(
                "not_relayed_yet",
                "the message has not reached Svix yet; it is sent as soon as Svix takes it",
            )),
            Some((event_id, Some(_))) => Ok(event_id),
        }
    }

    /// Waits briefly for Svix's attempt of `message` on `endpoint`.
    async fn first_attempt(
        &self,
        message: &str,
        endpoint: &EndpointOut,
    ) -> Option<MessageAttemptOut> {
        let deadline = tokio::time::Instant::now() + TEST_ATTEMPT_WAIT;
        while tokio::time::Instant::now() < deadline {
            let page = self
                .client
                .message_attempt()
                .list_by_msg(
                    self.app.clone(),
                    message.to_string(),
                    Some(MessageAttemptListByMsgOptions {
                        endpoint_id: Some(endpoint.id.clone()),
                        limit: Some(10),
                        with_content: Some(true),
                        ..Default::default()
                    }),
                )
                .await
                .ok()?;
            if let Some(attempt) = page.data.into_iter().find(|a| a.endpoint_id == endpoint.id) {
                return Some(attempt);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    async fn resend(&self, message: &str, subscription: &SubscriptionId) -> ApiResult<()> {
        self.client
            .message_attempt()
            .resend(
                self.app.clone(),
                message.to_string(),
                subscription.to_string(),
                None,
            )
            .await
            .map_err(|err| api_error(err, "message or subscription", message))?;
        Ok(())
    }

    /// Sends again, oldest first, every message whose scheduled retry came due while the
    /// endpoint was disabled: what the embedded engine holds and releases on re-enabling.
    ///
    /// Svix does not hold them: its worker drops a disabled endpoint's retry and records
    /// nothing, so the last attempt keeps a `nextAttempt` in the past (listed with status
    /// `sending`). Messages created while the endpoint was disabled have no attempt on it
    /// and are not listed, so they stay unsent, as under the embedded engine. A retry still
    /// ahead is left to Svix. Svix's `recover` is not used: it selects by attempt time, so
    /// it would also resend exhausted messages and ones Svix is still retrying, and the
    /// open-source server has no `replay-missing`. A resend is a single manual attempt
    /// (Svix does not retry those); if it fails the message shows `exhausted`.
    async fn release_held(&self, id: &SubscriptionId) -> ApiResult<usize> {
        let now = chrono::Utc::now();
        let mut held = Vec::new();
        let mut iterator = None;
        // Svix looks back 7 days for `sending` messages; 40 pages of 250 is far beyond what
        // one endpoint holds, and bounds the call.
        for _ in 0..40 {
            let page = self
                .client
                .message_attempt()
                .list_attempted_messages(
                    self.app.clone(),
                    id.to_string(),
                    Some(MessageAttemptListAttemptedMessagesOptions {
                        limit: Some(SVIX_PAGE),
                        iterator: iterator.take(),
                        status: Some(MessageStatus::Sending),
                        with_content: Some(false),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|err| api_error(err, "subscription", id.as_str()))?;
            held.extend(
                page.data
                    .into_iter()
                    .filter(|m| m.next_attempt.is_some_and(|due| due <= now))
                    .map(|m| m.id),
            );
            if page.done || page.iterator.is_none() {
                break;
            }
            iterator = page.iterator;
        }
        // Listed newest first.
        for message in held.iter().rev() {
            self.resend(message, id).await?;
        }
        if !held.is_empty() {
            tracing::info!(subscription = %id, released = held.len(), "re-enabled a Svix endpoint and sent the deliveries held while it was disabled");
        }
        Ok(held.len())
    }

    /// Deliveries of each message, per EHRS subscription.
    async fn deliveries(&self, message: &str) -> ApiResult<Vec<DeliveryState>> {
        let page = self
            .client
            .message_attempt()
            .list_attempted_destinations(
                self.app.clone(),
                message.to_string(),
                Some(MessageAttemptListAttemptedDestinationsOptions {
                    limit: Some(SVIX_PAGE),
                    iterator: None,
                }),
            )
            .await
            .map_err(|err| api_error(err, "message", message))?;
        Ok(page
            .data
            .iter()
            .filter_map(|destination| {
                let id = SubscriptionId::parse(destination.uid.as_deref()?)?;
                Some(delivery_state(
                    id,
                    destination.status,
                    destination.next_attempt,
                    !destination.disabled.unwrap_or(false),
                ))
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl WebhookBackend for SvixBackend {
    fn name(&self) -> &'static str {
        "svix"
    }

    /// Registration (retried until it succeeds) and, with `deliver`, the relay. On stop
    /// an in-flight relay batch finishes first.
    fn start_workers(self: Arc<Self>, tasks: &mut Tasks, deliver: bool) {
        let backend = self.clone();
        tasks.spawn(move |stop| super::register::run_until_registered(backend, stop));
        if deliver {
            tasks.spawn(move |stop| super::relay::run(self, stop));
        }
    }

    async fn queue_depth(&self) -> Result<i64, sqlx::Error> {
        super::relay::unrelayed(&self.db).await
    }

    async fn operational_webhook(&self, headers: &HeaderMap, body: &[u8]) -> ApiResult<()> {
        super::ops::receive_verified(self, headers, body).await
    }

    fn health(&self) -> BackendHealth {
        let status = self.status();
        let detail = match (&status.last_error, status.registered) {
            (None, true) => {
                return BackendHealth {
                    status: "ok",
                    detail: None,
                };
            }
            (None, false) => "registering with Svix".to_string(),
            (Some(error), false) => format!("not registered with Svix yet: {error}"),
            (Some(error), true) => error.clone(),
        };
        BackendHealth {
            status: "degraded",
            detail: Some(detail),
        }
    }

    async fn list_subscriptions(&self, limit: i64, offset: i64) -> ApiResult<Page<Subscription>> {
        let endpoints = self
            .all_endpoints()
            .await
            .map_err(|err| api_error(err, "application", &self.app))?;
        let health = ops::all_health(&self.db).await?;
        let mut all: Vec<Subscription> = endpoints
            .iter()
            .filter_map(|e| {
                let uid = e.uid.as_deref()?;
                to_subscription(e, health.get(uid))
            })
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let total = all.len() as i64;
        let items = all
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok(Page::new(items, total, limit, offset))
    }

    async fn create_subscription(
        &self,
        input: &NewSubscription,
    ) -> ApiResult<SubscriptionWithSecret> {
        refuse_ordered(Some(input.ordered))?;
        let id = SubscriptionId::generate();
        let mut endpoint = EndpointIn::new(input.url.clone());
        endpoint.uid = Some(id.to_string());
        endpoint.description = Some(input.description.clone());
        endpoint.event_types = event_filter(&input.event_types);
        endpoint.channels = Some(channels_for(input.payload));
        endpoint.metadata = Some(metadata_for(input.payload, BTreeMap::new()));
        let created = self
            .client
            .endpoint()
            .create(
                self.app.clone(),
                endpoint,
                Some(EndpointCreateOptions {
                    idempotency_key: Some(id.to_string()),
                }),
            )
            .await
            .map_err(|err| api_error(err, "application", &self.app))?;
        if input.payload == PayloadMode::IdOnly {
            self.id_only_types().add(created.event_types.as_ref());
        }
        let secret = self.secret(&id).await?;
        Ok(SubscriptionWithSecret {
            subscription: self.subscription(&created).await?,
            secret,
        })
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> ApiResult<Subscription> {
        let endpoint = self.endpoint(id).await?;
        self.subscription(&endpoint).await
    }

    async fn update_subscription(
        &self,
        id: &SubscriptionId,
        input: &SubscriptionUpdate,
    ) -> ApiResult<Subscription> {
        refuse_ordered(input.ordered)?;
        let current = self.endpoint(id).await?;
        let mode = input.payload.unwrap_or_else(|| payload_mode(&current));
        // PUT replaces the endpoint: every field is sent, changed or kept.
        let mut update = EndpointUpsertIn::new(input.url.clone().unwrap_or(current.url.clone()));
        update.uid = Some(id.to_string());
        update.description = Some(
            input
                .description
                .clone()
                .unwrap_or(current.description.clone()),
        );
        update.disabled = current.disabled;
        update.throttle_rate = current.throttle_rate;
        update.event_types = match &input.event_types {
            Some(types) => event_filter(types),
            None => current.event_types.clone(),
        };
        update.channels = Some(channels_for(mode));
        update.metadata = Some(metadata_for(mode, current.metadata.clone()));
        let updated = self
            .client
            .endpoint()
            .upsert(self.app.clone(), id.to_string(), update)
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        if mode == PayloadMode::IdOnly && !updated.disabled.unwrap_or(false) {
            self.id_only_types().add(updated.event_types.as_ref());
        }
        self.subscription(&updated).await
    }

    async fn delete_subscription(&self, id: &SubscriptionId) -> ApiResult<()> {
        self.client
            .endpoint()
            .delete(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        ops::forget(&self.db, id).await?;
        Ok(())
    }

    async fn set_enabled(&self, id: &SubscriptionId, enabled: bool) -> ApiResult<Subscription> {
        let was_disabled = self.endpoint(id).await?.disabled.unwrap_or(false);
        let patch = EndpointPatch {
            disabled: Some(!enabled),
            ..EndpointPatch::default()
        };
        let updated = self
            .client
            .endpoint()
            .patch(self.app.clone(), id.to_string(), patch)
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        if enabled {
            if was_disabled {
                self.release_held(id).await?;
            }
            if payload_mode(&updated) == PayloadMode::IdOnly {
                self.id_only_types().add(updated.event_types.as_ref());
            }
            // Only now: had the release failed, the pause and its reason stay, and
            // toggling again releases again.
            ops::reset(&self.db, id).await?;
        } else {
            ops::note_disabled(&self.db, id).await?;
        }
        self.subscription(&updated).await
    }

    async fn send_test(&self, id: &SubscriptionId) -> ApiResult<TestDelivery> {
        let endpoint = self.endpoint(id).await?;
        let payload = serde_json::json!({
            "type": EventType::WebhookTest.as_str(),
            "event_id": EventId::generate(),
            "webhook_id": MessageId::generate(),
            "timestamp": Timestamp::now().to_rfc3339(),
            "api_version": API_VERSION,
            "data": {"subscription_id": id, "message": "This is a test event from EHRS."},
        });
        let example = EventExampleIn {
            event_type: EventType::WebhookTest.as_str().to_string(),
            example_index: None,
            payload: Some(payload),
        };
        let message = self
            .client
            .endpoint()
            .send_example(self.app.clone(), id.to_string(), example, None)
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        // Svix creates the example as a message without channels, which it does not send to
        // an endpoint that listens on channels (every EHRS endpoint does) nor past the
        // endpoint's event-type filter. A resend, a manual attempt, passes both and goes to
        // this endpoint only.
        if !takes_example(&endpoint, EventType::WebhookTest.as_str()) {
            self.resend(&message.id, id).await?;
        }
        let attempt = self.first_attempt(&message.id, &endpoint).await;
        Ok(TestDelivery {
            message_id: message.id,
            attempt: attempt.map(|a| attempt_log(&a, id)),
        })
    }

    async fn rotate_secret(
        &self,
        id: &SubscriptionId,
        overlap_until: Timestamp,
    ) -> ApiResult<SubscriptionWithSecret> {
        let endpoint = self.endpoint(id).await?;
        let secret = signing::generate_secret();
        let grace = (overlap_until.millis() - Timestamp::now().millis()).max(0) / 1000;
        let rotate = EndpointSecretRotateIn {
            key: Some(secret.clone()),
            grace_period_seconds: u32::try_from(grace).ok(),
        };
        let rotated = self
            .client
            .endpoint()
            .rotate_secret(self.app.clone(), id.to_string(), rotate, None)
            .await;
        if let Err(err) = rotated {
            // Svix servers answer 204 with no body, which the client cannot decode into the
            // type it expects: the rotation took effect if Svix now holds our key.
            let decode_only = matches!(err, svix::error::Error::Generic(_));
            if !(decode_only && self.secret(id).await? == secret) {
                return Err(api_error(err, "subscription", id.as_str()));
            }
        }
        Ok(SubscriptionWithSecret {
            subscription: self.subscription(&endpoint).await?,
            secret,
        })
    }

    async fn failure_stats(&self, id: &SubscriptionId) -> ApiResult<FailureStats> {
        let endpoint = self.endpoint(id).await?;
        let stats = self
            .client
            .endpoint()
            .get_stats(self.app.clone(), id.to_string(), None)
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        let health = ops::health(&self.db, id).await?.unwrap_or_default();
        let enabled = !endpoint.disabled.unwrap_or(false);
        Ok(FailureStats {
            subscription_id: id.clone(),
            consecutive_failures: health.consecutive_failures,
            last_failure_at: health.last_failure_at,
            last_success_at: health.last_success_at,
            enabled,
            auto_paused: health.auto_paused && !enabled,
            paused_reason: health
                .paused_reason
                .filter(|_| health.auto_paused && !enabled),
            paused_at: health.paused_at.filter(|_| health.auto_paused && !enabled),
            pending_deliveries: stats.pending + stats.sending,
        })
    }

    async fn list_messages(&self, filter: &MessageFilter) -> ApiResult<CursorPage<MessageLog>> {
        let (limit, _) = crate::http::PageParams {
            limit: filter.limit,
            offset: None,
        }
        .resolve()?;
        check_status_filter(filter.status.as_deref())?;
        let event_types = filter
            .event_type
            .as_ref()
            .map(|t| BTreeSet::from([t.clone()]));
        let (mut items, next_cursor) = match filter.subscription_id.as_deref() {
            Some(raw) => {
                let id = crate::http::parse_id(raw, "subscription", SubscriptionId::parse)?;
                let enabled = !self.endpoint(&id).await?.disabled.unwrap_or(false);
                let page = self
                    .client
                    .message_attempt()
                    .list_attempted_messages(
                        self.app.clone(),
                        id.to_string(),
                        Some(MessageAttemptListAttemptedMessagesOptions {
                            limit: Some(limit as u64),
                            iterator: filter.cursor.clone(),
                            before: filter.until,
                            after: filter.since,
                            with_content: Some(false),
                            event_types,
                            ..Default::default()
                        }),
                    )
                    .await
                    .map_err(|err| api_error(err, "subscription", id.as_str()))?;
                let items = page
                    .data
                    .into_iter()
                    .map(|m| MessageLog {
                        deliveries: vec![delivery_state(
                            id.clone(),
                            m.status,
                            m.next_attempt,
                            enabled,
                        )],
                        id: m.id,
                        event_id: m.event_id.unwrap_or_default(),
                        event_type: m.event_type,
                        created_at: m.timestamp.into(),
                    })
                    .collect::<Vec<_>>();
                (items, (!page.done).then_some(page.iterator).flatten())
            }
            None => {
                let page = self
                    .client
                    .message()
                    .list(
                        self.app.clone(),
                        Some(MessageListOptions {
                            limit: Some(limit as u64),
                            iterator: filter.cursor.clone(),
                            before: filter.until,
                            after: filter.since,
                            with_content: Some(false),
                            event_types,
                            ..Default::default()
                        }),
                    )
                    .await
                    .map_err(|err| api_error(err, "application", &self.app))?;
                // A few at a time: one Svix call per message on the page.
                let mut deliveries = Vec::with_capacity(page.data.len());
                for chunk in page.data.chunks(8) {
                    let calls = chunk.iter().map(|m| self.deliveries(&m.id));
                    deliveries.extend(futures_util::future::join_all(calls).await);
                }
                let mut items = Vec::with_capacity(page.data.len());
                for (m, deliveries) in page.data.into_iter().zip(deliveries) {
                    items.push(MessageLog {
                        id: m.id,
                        event_id: m.event_id.unwrap_or_default(),
                        event_type: m.event_type,
                        created_at: m.timestamp.into(),
                        deliveries: deliveries?,
                    });
                }
                (items, (!page.done).then_some(page.iterator).flatten())
            }
        };
        // Svix cannot filter messages by delivery state: the page is filtered here, so it
        // may hold fewer than `limit` items while `next_cursor` still leads on.
        if let Some(status) = &filter.status {
            items.retain(|m| m.deliveries.iter().any(|d| &d.status == status));
        }
        Ok(CursorPage { items, next_cursor })
    }

    async fn list_attempts(
        &self,
        id: &SubscriptionId,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<CursorPage<AttemptLog>> {
        let page = self
            .client
            .message_attempt()
            .list_by_endpoint(
                self.app.clone(),
                id.to_string(),
                Some(MessageAttemptListByEndpointOptions {
                    limit: Some(limit as u64),
                    iterator: cursor.map(str::to_string),
                    // Without it the client asks Svix to leave out the response bodies.
                    with_content: Some(true),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        Ok(CursorPage {
            items: page.data.iter().map(|a| attempt_log(a, id)).collect(),
            next_cursor: (!page.done).then_some(page.iterator).flatten(),
        })
    }

    async fn retry_message(
        &self,
        raw: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued> {
        let message = self.svix_message_id(raw).await?;
        if let Some(subscription) = subscription {
            self.endpoint(subscription).await?;
            self.resend(&message, subscription).await?;
            return Ok(Requeued {
                requeued: Some(1),
                subscription_ids: vec![subscription.clone()],
            });
        }
        let mut requeued = Vec::new();
        for delivery in self.deliveries(&message).await? {
            if delivery.status != DisplayStatus::Delivered.as_str() {
                self.resend(&message, &delivery.subscription_id).await?;
                requeued.push(delivery.subscription_id);
            }
        }
        Ok(Requeued {
            requeued: Some(requeued.len() as i64),
            subscription_ids: requeued,
        })
    }

    async fn recover(
        &self,
        id: &SubscriptionId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> ApiResult<Requeued> {
        let window = RecoverIn {
            since: since.to_datetime(),
            until: until.map(|t| t.to_datetime()),
        };
        self.client
            .endpoint()
            .recover(self.app.clone(), id.to_string(), window, None)
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        Ok(Requeued {
            requeued: None,
            subscription_ids: vec![id.clone()],
        })
    }
}

/// Svix has no ordered delivery per endpoint (it sends each message independently, with
/// its own retries), so asking for it is refused rather than silently not honoured.
fn refuse_ordered(ordered: Option<bool>) -> Result<(), ApiError> {
    if ordered == Some(true) {
        return Err(ApiError::invalid_field(
            "ordered",
            "is available with the embedded engine only (WEBHOOK_BACKEND=embedded): Svix sends each message on its own",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_svix_dropped_is_held_while_disabled_and_exhausted_once_enabled() {
        let now = chrono::Utc::now();
        let due = |minutes| Some(now - chrono::TimeDelta::minutes(minutes));
        let sending = MessageStatus::Sending;
        // Scheduled retry ahead, or just due: failed (retry scheduled).
        assert_eq!(
            display_status(MessageStatus::Fail, Some(now + OVERDUE), true, now)
                .0
                .as_str(),
            "failed"
        );
        assert_eq!(
            display_status(sending, due(1), true, now).0.as_str(),
            "failed"
        );
        // Dropped by Svix while the endpoint is disabled: held, as the embedded engine.
        assert_eq!(
            display_status(sending, due(60), false, now),
            (DisplayStatus::Failed, None)
        );
        // On an enabled endpoint that retry never comes.
        assert_eq!(
            display_status(sending, due(60), true, now),
            (DisplayStatus::Exhausted, Some(DROPPED_RETRY))
        );
        assert_eq!(
            display_status(MessageStatus::Fail, None, true, now)
                .0
                .as_str(),
            "exhausted"
        );
        assert_eq!(
            display_status(MessageStatus::Success, due(60), true, now)
                .0
                .as_str(),
            "delivered"
        );
        assert_eq!(
            display_status(sending, None, true, now).0.as_str(),
            "pending"
        );
    }
}
