//! [`WebhookBackend`] for Svix: the administration API of SPEC §5 served by calling the
//! Svix server. Subscriptions are endpoints addressed by their `uid` (the subscription
//! id); logs are Svix messages and attempts; failure statistics come from our counters,
//! which Svix's operational webhooks keep (see [`super::ops`]).

use super::endpoint_health;
use super::endpoints::{
    channels_for, event_filter, event_filter_of, metadata_for, payload_mode, refuse_heartbeat,
    refuse_ordered, takes_example, to_subscription,
};
use super::logs::attempt_log;
use super::{SvixBackend, api_error};
use crate::error::ApiResult;
use crate::http::Page;
use crate::ids::{EventId, MessageId, SubscriptionId};
use crate::outbound::backend::*;
use crate::outbound::events::{API_VERSION, EventType};
use crate::outbound::signing;
use crate::outbound::subscriptions::{
    NewSubscription, Subscription, SubscriptionUpdate, SubscriptionWithSecret, check_filter_takes,
};
use crate::tasks::Tasks;
use crate::time::Timestamp;
use axum::http::HeaderMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use svix::api::EndpointCreateOptions;
use svix::models::{
    EndpointIn, EndpointPatch, EndpointSecretRotateIn, EndpointUpsertIn, EventExampleIn,
};

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
        crate::outbound::store::unrelayed_count(&self.db).await
    }

    /// Operational-webhook ids are kept only to drop Svix's retries of them.
    async fn purge_before(&self, cutoff: i64) -> Result<(), sqlx::Error> {
        super::ops::forget_seen_before(&self.db, cutoff).await
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
        let health = endpoint_health::read_all(&self.db).await?;
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
        refuse_heartbeat(input.heartbeat_interval.is_some())?;
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
        self.copies()
            .add(input.payload, created.event_types.as_ref());
        let secret = self.secret(&id).await?;
        Ok(SubscriptionWithSecret {
            subscription: self.subscription(&created).await?,
            secret,
            feed_token: None, // no sequences, no feed
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
        refuse_heartbeat(matches!(input.heartbeat_interval, Some(Some(_))))?;
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
        if !updated.disabled.unwrap_or(false) {
            self.copies().add(mode, updated.event_types.as_ref());
        }
        self.subscription(&updated).await
    }

    async fn delete_subscription(&self, id: &SubscriptionId) -> ApiResult<()> {
        self.client
            .endpoint()
            .delete(self.app.clone(), id.to_string())
            .await
            .map_err(|err| api_error(err, "subscription", id.as_str()))?;
        endpoint_health::forget(&self.db, id).await?;
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
            self.copies()
                .add(payload_mode(&updated), updated.event_types.as_ref());
            // Only now: had the release failed, the pause and its reason stay, and
            // toggling again releases again.
            endpoint_health::reset(&self.db, id).await?;
        } else {
            endpoint_health::note_disabled(&self.db, id).await?;
        }
        self.subscription(&updated).await
    }

    async fn send_test(&self, id: &SubscriptionId) -> ApiResult<TestDelivery> {
        let endpoint = self.endpoint(id).await?;
        check_filter_takes(
            id,
            &event_filter_of(&endpoint),
            EventType::WebhookTest.as_str(),
        )?;
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
            feed_token: None, // no sequences, no feed
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
        let health = endpoint_health::read(&self.db, id)
            .await?
            .unwrap_or_default();
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
        self.messages(filter).await
    }

    async fn list_attempts(
        &self,
        id: &SubscriptionId,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<CursorPage<AttemptLog>> {
        self.attempts(id, cursor, limit).await
    }

    async fn retry_message(
        &self,
        raw: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued> {
        self.retry(raw, subscription).await
    }

    async fn recover(
        &self,
        id: &SubscriptionId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> ApiResult<Requeued> {
        self.recover_window(id, since, until).await
    }
}
