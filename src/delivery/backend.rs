//! [`WebhookBackend`] for the embedded engine: the administration API served from our
//! own tables.

use super::{EngineConfig, HttpSender};
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::http::Page;
use crate::ids::{MessageId, SubscriptionId};
use crate::outbound::backend::*;
use crate::outbound::events::{Event, EventType};
use crate::outbound::outbox::REQUEUE_SIGNAL;
use crate::outbound::signing;
use crate::outbound::store;
use crate::outbound::subscriptions::{
    NewSubscription, Subscription, SubscriptionUpdate, SubscriptionWithSecret, check_filter_takes,
    check_update_heartbeat,
};
use crate::tasks::Tasks;
use crate::time::Timestamp;

pub struct EmbeddedBackend {
    db: Db,
    secrets: SecretBox,
    sender: HttpSender,
    config: EngineConfig,
}

impl EmbeddedBackend {
    /// The engine as the settings configure it, sending through the SSRF-guarded client.
    pub fn from_settings(
        settings: &crate::config::Settings,
        db: &Db,
        secrets: &SecretBox,
        lookup: std::sync::Arc<dyn crate::outbound::ssrf::Lookup>,
    ) -> EmbeddedBackend {
        let config = EngineConfig::from_settings(settings);
        let sender = HttpSender::from_parts(
            crate::outbound::ssrf::Policy::from_settings(settings),
            lookup,
            secrets.clone(),
            config.timeout,
            config.clock.clone(),
            config.fhir.clone(),
        );
        EmbeddedBackend::new(db.clone(), secrets.clone(), sender, config)
    }

    pub fn new(db: Db, secrets: SecretBox, sender: HttpSender, config: EngineConfig) -> Self {
        EmbeddedBackend {
            db,
            secrets,
            sender,
            config,
        }
    }

    /// Starts a delivery engine on this backend's database and settings in `tasks`.
    pub fn start_engine(&self, tasks: &mut Tasks) {
        super::start(tasks, &self.db, &self.config, &self.sender);
    }

    async fn exists(&self, id: &SubscriptionId) -> ApiResult<Subscription> {
        store::subscriptions::get(&self.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("subscription", id))
    }

    /// A retry to one subscription sends only what its filter takes, as the first send
    /// did: 422 `event_type_not_subscribed` otherwise.
    async fn check_filter_takes(
        &self,
        message: &MessageId,
        subscription: &SubscriptionId,
    ) -> ApiResult<()> {
        let filter = self.exists(subscription).await?.event_types;
        let event_type = store::message_event_type(&self.db, message)
            .await?
            .ok_or_else(|| ApiError::not_found("message", message))?;
        check_filter_takes(subscription, &filter, &event_type)
    }
}

fn not_found(id: &SubscriptionId) -> ApiError {
    ApiError::not_found("subscription", id)
}

#[async_trait::async_trait]
impl WebhookBackend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn start_workers(self: std::sync::Arc<Self>, tasks: &mut Tasks, deliver: bool) {
        if deliver {
            self.start_engine(tasks);
        }
    }

    fn health(&self) -> BackendHealth {
        match self.config.uplink.down_since() {
            None => BackendHealth {
                status: "ok",
                detail: None,
            },
            Some(since) => BackendHealth {
                status: "degraded",
                detail: Some(format!(
                    "the camp's uplink is down since {}: deliveries wait and go out in order when it returns",
                    since.to_rfc3339()
                )),
            },
        }
    }

    fn uplink(&self) -> Option<UplinkStatus> {
        Some(self.config.uplink.status())
    }

    async fn queue_depth(&self) -> Result<i64, sqlx::Error> {
        store::pending_count(&self.db).await
    }

    async fn catch_up(
        &self,
        id: &SubscriptionId,
        reader: &crate::outbound::feed::FeedReader,
        after: i64,
        limit: i64,
    ) -> ApiResult<crate::outbound::feed::FeedPage> {
        let cursor = super::feed::Cursor { after, limit };
        let now = self.config.clock.now_ms();
        super::feed::page(
            &self.db,
            &self.secrets,
            &self.config.fhir,
            now,
            id,
            reader,
            cursor,
        )
        .await
    }

    async fn list_subscriptions(&self, limit: i64, offset: i64) -> ApiResult<Page<Subscription>> {
        let (items, total) = store::subscriptions::list(&self.db, limit, offset).await?;
        Ok(Page::new(items, total, limit, offset))
    }

    async fn create_subscription(
        &self,
        input: &NewSubscription,
    ) -> ApiResult<SubscriptionWithSecret> {
        let secret = signing::generate_secret();
        let mut tx = self.db.begin().await?;
        let subscription =
            store::subscriptions::insert(&mut tx, input, &secret, &self.secrets).await?;
        tx.commit().await?;
        Ok(SubscriptionWithSecret::with_feed_token(
            subscription,
            secret,
        ))
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> ApiResult<Subscription> {
        self.exists(id).await
    }

    async fn update_subscription(
        &self,
        id: &SubscriptionId,
        input: &SubscriptionUpdate,
    ) -> ApiResult<Subscription> {
        check_update_heartbeat(&self.exists(id).await?, input)?;
        let mut tx = self.db.begin().await?;
        let updated = store::subscriptions::update(&mut tx, id, input)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.notify_on_commit(REQUEUE_SIGNAL); // held deliveries go out with the new settings
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_subscription(&self, id: &SubscriptionId) -> ApiResult<()> {
        let mut tx = self.db.begin().await?;
        if !store::subscriptions::delete(&mut tx, id).await? {
            return Err(not_found(id));
        }
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(())
    }

    async fn set_enabled(&self, id: &SubscriptionId, enabled: bool) -> ApiResult<Subscription> {
        let mut tx = self.db.begin().await?;
        let updated =
            store::subscriptions::set_enabled(&mut tx, id, enabled, self.config.clock.now())
                .await?
                .ok_or_else(|| not_found(id))?;
        // The dispatcher drops what it holds for a disabled subscription, or claims the
        // held backlog of an enabled one.
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(updated)
    }

    async fn send_test(&self, id: &SubscriptionId) -> ApiResult<TestDelivery> {
        let subscription = self.exists(id).await?;
        check_filter_takes(
            id,
            &subscription.event_types,
            EventType::WebhookTest.as_str(),
        )?;
        let event = Event::new(
            EventType::WebhookTest,
            &crate::outbound::events::WebhookTestData {
                subscription_id: id.clone(),
                message: "This is a test event from EHRS.".to_string(),
            },
        );
        let now = self.config.clock.now();
        let hold = now.millis() + self.config.timeout.as_millis() as i64 * 2 + 5_000;
        let mut tx = self.db.begin().await?;
        let message_id = crate::outbound::insert_message(&mut tx, &event, now, false).await?;
        let delivery_id =
            crate::outbound::queue_delivery(&mut tx, &message_id, id, now, Some(hold)).await?;
        tx.commit().await?;
        let attempt =
            super::deliver_now(&self.db, &self.sender, &self.config, &delivery_id).await?;
        let attempt_id = store::latest_attempt_id(&self.db, &delivery_id).await?;
        Ok(TestDelivery {
            message_id: message_id.to_string(),
            attempt: Some(AttemptLog {
                id: attempt_id,
                message_id: message_id.to_string(),
                subscription_id: id.clone(),
                attempted_at: Timestamp(attempt.attempted_at),
                status_code: attempt.status_code.map(i64::from),
                response_body: attempt.response_body,
                duration_ms: attempt.duration_ms,
                error: attempt.error,
                failure_class: attempt.outcome.failure_class(),
            }),
        })
    }

    async fn rotate_secret(
        &self,
        id: &SubscriptionId,
        overlap_until: Timestamp,
    ) -> ApiResult<SubscriptionWithSecret> {
        let secret = signing::generate_secret();
        let mut tx = self.db.begin().await?;
        let subscription =
            store::subscriptions::rotate_secret(&mut tx, id, &secret, overlap_until, &self.secrets)
                .await?
                .ok_or_else(|| not_found(id))?;
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(SubscriptionWithSecret::with_feed_token(
            subscription,
            secret,
        ))
    }

    async fn failure_stats(&self, id: &SubscriptionId) -> ApiResult<FailureStats> {
        store::subscriptions::failure_stats(&self.db, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    async fn list_messages(&self, filter: &MessageFilter) -> ApiResult<CursorPage<MessageLog>> {
        let (limit, _) = crate::http::PageParams {
            limit: filter.limit,
            offset: None,
        }
        .resolve()?;
        let subscription = filter
            .subscription_id
            .as_deref()
            .map(|raw| {
                SubscriptionId::parse(raw).ok_or_else(|| ApiError::not_found("subscription", raw))
            })
            .transpose()?;
        let status = filter.status()?;
        Ok(store::messages_page(&self.db, filter, status, subscription.as_ref(), limit).await?)
    }

    async fn list_attempts(
        &self,
        id: &SubscriptionId,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<CursorPage<AttemptLog>> {
        self.exists(id).await?;
        Ok(store::attempts_page(&self.db, id, cursor, limit).await?)
    }

    async fn retry_message(
        &self,
        raw: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued> {
        let id = &crate::http::parse_id(raw, "message", MessageId::parse)?;
        match store::payload_kept(&self.db, id).await? {
            None => return Err(ApiError::not_found("message", id)),
            Some(false) => {
                return Err(ApiError::conflict(
                    "payload_expired",
                    "the message's payload was cleared by the retention period",
                ));
            }
            Some(true) => {}
        }
        if let Some(subscription) = subscription {
            self.check_filter_takes(id, subscription).await?;
        }
        let now = self.config.clock.now_ms();
        let mut tx = self.db.begin().await?;
        // Explicit subscription: send again even if delivered. Otherwise: every delivery
        // of the message that has not succeeded. Deliveries in flight are left alone.
        let mut requeued = store::requeue_message(&mut tx, id, subscription, now).await?;
        if let Some(subscription) = subscription
            && requeued.is_empty()
        {
            if store::delivery_exists(&mut tx, id, subscription).await? {
                return Err(ApiError::conflict(
                    "delivery_in_flight",
                    "the message is being delivered to that subscription right now",
                ));
            }
            crate::outbound::queue_delivery(&mut tx, id, subscription, Timestamp(now), None)
                .await?;
            requeued.push(subscription.clone());
        }
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
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
        let filter = self.exists(id).await?.event_types;
        let now = self.config.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let count = store::recover(&mut tx, id, since, until, &filter, now).await?;
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(Requeued {
            requeued: Some(count as i64),
            subscription_ids: vec![id.clone()],
        })
    }
}
