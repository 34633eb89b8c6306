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
use crate::time::Timestamp;
use crate::webhooks::backend::*;
use crate::webhooks::events::{API_VERSION, EventType};
use crate::webhooks::signing;
use crate::webhooks::subscriptions::{
    NewSubscription, PayloadMode, Subscription, SubscriptionUpdate, SubscriptionWithSecret,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use svix::api::{
    EndpointCreateOptions, EndpointListOptions, MessageAttemptListAttemptedDestinationsOptions,
    MessageAttemptListAttemptedMessagesOptions, MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions, MessageListOptions,
};
use svix::models::{
    EndpointIn, EndpointOut, EndpointPatch, EndpointSecretRotateIn, EndpointUpsertIn,
    EventExampleIn, MessageAttemptOut, MessageStatus, RecoverIn, ReplayIn,
};

/// Largest page Svix serves.
const SVIX_PAGE: u64 = 250;
/// How long the test route waits for Svix's first attempt before answering without it.
const TEST_ATTEMPT_WAIT: Duration = Duration::from_secs(5);
/// Bytes of a receiver's response body shown in the attempt log (as the embedded engine).
const KEPT_RESPONSE_BYTES: usize = 1024;

/// Re-reads whether any enabled endpoint takes `id_only` payloads.
pub async fn refresh_payload_modes(backend: &SvixBackend) -> Result<(), svix::error::Error> {
    let endpoints = backend.all_endpoints().await?;
    backend.set_wants_id_only(
        endpoints
            .iter()
            .any(|e| !e.disabled.unwrap_or(false) && payload_mode(e) == PayloadMode::IdOnly),
    );
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
        enabled,
        paused_reason: paused.and_then(|h| h.paused_reason.clone()),
        paused_at: paused.and_then(|h| h.paused_at),
        created_at: endpoint.created_at.into(),
        updated_at: endpoint.updated_at.into(),
    })
}

/// Svix's per-endpoint message status in our words.
fn display_status(status: MessageStatus, next_attempt: bool) -> &'static str {
    match status {
        MessageStatus::Success => "delivered",
        MessageStatus::Fail if next_attempt => "failed",
        MessageStatus::Fail | MessageStatus::Canceled => "exhausted",
        MessageStatus::Pending | MessageStatus::Sending => "pending",
    }
}

/// One subscription's state for a message, from what Svix reports (Svix does not say
/// how many attempts were made or what the last one answered).
fn delivery_state(
    subscription_id: SubscriptionId,
    status: MessageStatus,
    next_attempt: Option<chrono::DateTime<chrono::Utc>>,
) -> DeliveryState {
    DeliveryState {
        subscription_id,
        sequence: None,
        status: display_status(status, next_attempt.is_some()).to_string(),
        attempts: None,
        next_attempt_at: next_attempt.map(Into::into),
        last_status_code: None,
        last_error: None,
    }
}

fn check_status_filter(status: Option<&str>) -> ApiResult<()> {
    match status {
        None | Some("pending" | "failed" | "delivered" | "exhausted") => Ok(()),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("status '{other}' is not one of pending, failed, delivered, exhausted"),
        )),
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
            self.set_wants_id_only(true);
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
        if mode == PayloadMode::IdOnly {
            self.set_wants_id_only(true);
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
        let before = ops::health(&self.db, id).await?;
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
            // Svix skips a disabled endpoint instead of holding its messages: replay what
            // it missed since it was disabled, as the embedded engine releases held ones.
            let disabled_at = before.as_ref().and_then(|h| h.disabled_at);
            ops::reset(&self.db, id).await?;
            if let Some(since) = disabled_at {
                self.client
                    .endpoint()
                    .replay_missing(
                        self.app.clone(),
                        id.to_string(),
                        ReplayIn::new(since.to_datetime()),
                        None,
                    )
                    .await
                    .map_err(|err| api_error(err, "subscription", id.as_str()))?;
            }
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
                        deliveries: vec![delivery_state(id.clone(), m.status, m.next_attempt)],
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
            if delivery.status != "delivered" {
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
