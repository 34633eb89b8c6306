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
use crate::outbound::store::{self, DeliveryStatus, DisplayStatus};
use crate::outbound::subscriptions::{
    self, NewSubscription, Subscription, SubscriptionUpdate, SubscriptionWithSecret,
};
use crate::tasks::Tasks;
use crate::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

pub struct EmbeddedBackend {
    db: Db,
    secrets: SecretBox,
    sender: HttpSender,
    config: EngineConfig,
    /// `EHRS_WEBHOOK_RETENTION_DAYS`, for the engine's upkeep.
    retention_days: i64,
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
        );
        EmbeddedBackend::new(
            db.clone(),
            secrets.clone(),
            sender,
            config,
            settings.webhook_retention_days,
        )
    }

    pub fn new(
        db: Db,
        secrets: SecretBox,
        sender: HttpSender,
        config: EngineConfig,
        retention_days: i64,
    ) -> Self {
        EmbeddedBackend {
            db,
            secrets,
            sender,
            config,
            retention_days,
        }
    }

    /// Starts a delivery engine on this backend's database and settings in `tasks`.
    pub fn start_engine(&self, tasks: &mut Tasks) {
        super::start(
            tasks,
            &self.db,
            &self.config,
            &self.sender,
            self.retention_days,
        );
    }

    async fn exists(&self, id: &SubscriptionId) -> ApiResult<Subscription> {
        subscriptions::get(&self.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("subscription", id))
    }
}

fn not_found(id: &SubscriptionId) -> ApiError {
    ApiError::not_found("subscription", id)
}

/// The SQL condition selecting deliveries in a displayed status.
fn status_condition(status: &str) -> ApiResult<String> {
    DisplayStatus::parse(status)
        .map(DisplayStatus::condition)
        .ok_or_else(|| ApiError::bad_request("invalid_query", DisplayStatus::unknown(status)))
}

fn delivery_state(row: &AnyRow) -> Result<DeliveryState, sqlx::Error> {
    let status: DeliveryStatus = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeliveryState {
        subscription_id: row.try_get("subscription_id")?,
        sequence: Some(row.try_get("sequence")?),
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| row.try_get("next_attempt_at"))
            .transpose()?,
        status: DisplayStatus::of(status, attempts).as_str().to_string(),
        attempts: Some(attempts),
        last_status_code: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
    })
}

fn attempt_log(row: &AnyRow) -> Result<AttemptLog, sqlx::Error> {
    Ok(AttemptLog {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        subscription_id: row.try_get("subscription_id")?,
        attempted_at: row.try_get("attempted_at")?,
        status_code: row.try_get("status_code")?,
        response_body: row.try_get("response_body")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
    })
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

    async fn queue_depth(&self) -> Result<i64, sqlx::Error> {
        store::pending_count(&self.db).await
    }

    async fn list_subscriptions(&self, limit: i64, offset: i64) -> ApiResult<Page<Subscription>> {
        let (items, total) = subscriptions::list(&self.db, limit, offset).await?;
        Ok(Page::new(items, total, limit, offset))
    }

    async fn create_subscription(
        &self,
        input: &NewSubscription,
    ) -> ApiResult<SubscriptionWithSecret> {
        let secret = signing::generate_secret();
        let mut tx = self.db.begin().await?;
        let subscription = subscriptions::insert(&mut tx, input, &secret, &self.secrets).await?;
        tx.commit().await?;
        Ok(SubscriptionWithSecret {
            subscription,
            secret,
        })
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> ApiResult<Subscription> {
        self.exists(id).await
    }

    async fn update_subscription(
        &self,
        id: &SubscriptionId,
        input: &SubscriptionUpdate,
    ) -> ApiResult<Subscription> {
        let mut tx = self.db.begin().await?;
        let updated = subscriptions::update(&mut tx, id, input)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.notify_on_commit(REQUEUE_SIGNAL); // held deliveries go out with the new settings
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_subscription(&self, id: &SubscriptionId) -> ApiResult<()> {
        let mut tx = self.db.begin().await?;
        if !subscriptions::delete(&mut tx, id).await? {
            return Err(not_found(id));
        }
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(())
    }

    async fn set_enabled(&self, id: &SubscriptionId, enabled: bool) -> ApiResult<Subscription> {
        let mut tx = self.db.begin().await?;
        let updated = subscriptions::set_enabled(&mut tx, id, enabled, self.config.clock.now())
            .await?
            .ok_or_else(|| not_found(id))?;
        // The dispatcher drops what it holds for a disabled subscription, or claims the
        // held backlog of an enabled one.
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(updated)
    }

    async fn send_test(&self, id: &SubscriptionId) -> ApiResult<TestDelivery> {
        self.exists(id).await?;
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
            subscriptions::rotate_secret(&mut tx, id, &secret, overlap_until, &self.secrets)
                .await?
                .ok_or_else(|| not_found(id))?;
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(SubscriptionWithSecret {
            subscription,
            secret,
        })
    }

    async fn failure_stats(&self, id: &SubscriptionId) -> ApiResult<FailureStats> {
        subscriptions::failure_stats(&self.db, id)
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
        let status_filter = match &filter.status {
            Some(status) => format!(
                "AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id AND {} \
                 AND ($5 IS NULL OR d.subscription_id = $5))",
                status_condition(status)?
            ),
            None => String::new(),
        };
        let delivery_filter = format!(
            "AND ($5 IS NULL OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id \
             AND d.subscription_id = $5)) {status_filter}"
        );
        let sql = format!(
            "SELECT m.id, m.event_id, m.event_type, m.created_at FROM webhook_messages m \
             WHERE ($1 IS NULL OR m.event_type = $1) AND ($2 IS NULL OR m.created_at >= $2) \
               AND ($3 IS NULL OR m.created_at < $3) AND ($4 IS NULL OR m.id < $4) {delivery_filter} \
             ORDER BY m.id DESC LIMIT $6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.event_type.as_deref())
            .bind(filter.since.map(|t| t.timestamp_millis()))
            .bind(filter.until.map(|t| t.timestamp_millis()))
            .bind(filter.cursor.as_deref())
            .bind(subscription.as_ref())
            .bind(limit + 1)
            .fetch_all(self.db.pool())
            .await?;
        let more = rows.len() as i64 > limit;
        let mut items = rows
            .iter()
            .take(limit as usize)
            .map(|row| {
                Ok(MessageLog {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    created_at: row.try_get("created_at")?,
                    deliveries: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if !items.is_empty() {
            let ids = serde_json::to_string(&items.iter().map(|m| &m.id).collect::<Vec<_>>())
                .unwrap_or_default();
            let sql = format!(
                "SELECT message_id, subscription_id, sequence, status, attempts, next_attempt_at, last_status, last_error \
                 FROM webhook_deliveries WHERE message_id IN ({}) AND ($2 IS NULL OR subscription_id = $2) \
                 ORDER BY subscription_id",
                super::json_rows(self.db.backend(), "$1")
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .bind(subscription.as_ref())
                .fetch_all(self.db.pool())
                .await?;
            for row in &rows {
                let message: MessageId = row.try_get("message_id")?;
                if let Some(item) = items.iter_mut().find(|m| m.id == message.as_str()) {
                    item.deliveries.push(delivery_state(row)?);
                }
            }
        }
        let next_cursor = more
            .then(|| items.last().map(|m| m.id.to_string()))
            .flatten();
        Ok(CursorPage { items, next_cursor })
    }

    async fn list_attempts(
        &self,
        id: &SubscriptionId,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<CursorPage<AttemptLog>> {
        self.exists(id).await?;
        let rows = sqlx::query(
            "SELECT id, message_id, subscription_id, attempted_at, status_code, response_body, duration_ms, error \
             FROM webhook_attempts WHERE subscription_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(id)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(self.db.pool())
        .await?;
        let more = rows.len() as i64 > limit;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(attempt_log)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more.then(|| items.last().map(|a| a.id.clone())).flatten();
        Ok(CursorPage { items, next_cursor })
    }

    async fn retry_message(
        &self,
        raw: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued> {
        let id = &crate::http::parse_id(raw, "message", MessageId::parse)?;
        let payload: Option<Option<String>> =
            sqlx::query_scalar("SELECT payload FROM webhook_messages WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        match payload {
            None => return Err(ApiError::not_found("message", id)),
            Some(None) => {
                return Err(ApiError::conflict(
                    "payload_expired",
                    "the message's payload was cleared by the retention period",
                ));
            }
            Some(Some(_)) => {}
        }
        if let Some(subscription) = subscription {
            self.exists(subscription).await?;
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
        self.exists(id).await?;
        let now = self.config.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let count = store::recover(&mut tx, id, since, until, now).await?;
        tx.notify_on_commit(REQUEUE_SIGNAL);
        tx.commit().await?;
        Ok(Requeued {
            requeued: Some(count as i64),
            subscription_ids: vec![id.clone()],
        })
    }
}
