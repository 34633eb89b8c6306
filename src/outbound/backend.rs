//! The delivery backend interface (SPEC §5): the administration API, the background work
//! that delivers, and what `/health` and `/metrics` show. The embedded engine implements
//! it on our tables; the Svix backend implements it by calling a Svix server. The backend
//! is chosen once at start-up; everything else only ever talks to a `dyn WebhookBackend`,
//! so nobody branches on which one it is.

use super::feed::{self, FeedPage, FeedReader};
use super::subscriptions::{
    NewSubscription, Subscription, SubscriptionUpdate, SubscriptionWithSecret,
};
use crate::error::{ApiError, ApiResult};
use crate::http::Page;
use crate::ids::SubscriptionId;
use crate::tasks::Tasks;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[async_trait::async_trait]
pub trait WebhookBackend: Send + Sync {
    /// `embedded` or `svix`.
    fn name(&self) -> &'static str;

    /// Starts the backend's background work in `tasks`. `deliver` is
    /// `EHRS_WEBHOOK_WORKERS`: off, an API-only instance sends nothing itself.
    fn start_workers(self: std::sync::Arc<Self>, tasks: &mut Tasks, deliver: bool);

    /// Events waiting to go out: deliveries waiting for an attempt (embedded), or events
    /// waiting to be handed over (Svix). Shown by `/health` and `/metrics`.
    async fn queue_depth(&self) -> Result<i64, sqlx::Error>;

    /// An operational webhook that the delivery service itself sends us (a Svix server's,
    /// at `POST /webhooks/internal/svix-ops`, already read but not yet verified). A
    /// backend without such a service refuses it.
    async fn operational_webhook(
        &self,
        _headers: &axum::http::HeaderMap,
        _body: &[u8],
    ) -> ApiResult<()> {
        Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "Svix operational webhooks are only taken with WEBHOOK_BACKEND=svix",
        ))
    }

    /// Clears what only this backend keeps about deliveries made before `cutoff` (Unix
    /// ms), beside the shared payload retention (`outbound::retention`).
    async fn purge_before(&self, _cutoff: i64) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Whether the backend can take work now (shown by `/health`).
    fn health(&self) -> BackendHealth {
        BackendHealth {
            status: "ok",
            detail: None,
        }
    }

    /// The camp's uplink as this backend's engine judges it (`delivery::uplink`). `None`
    /// for a backend that delivers from elsewhere (a Svix server, on its own network).
    fn uplink(&self) -> Option<UplinkStatus> {
        None
    }

    /// One page of a subscription's catch-up feed: its deliveries after sequence `after`,
    /// in sequence order, as they were POSTed (`outbound::feed`). `reader` is checked
    /// here, against the subscription's secrets. A backend that numbers no sequences
    /// refuses it.
    async fn catch_up(
        &self,
        _id: &SubscriptionId,
        _reader: &FeedReader,
        _after: i64,
        _limit: i64,
    ) -> ApiResult<FeedPage> {
        Err(feed::needs_embedded_engine())
    }

    async fn list_subscriptions(&self, limit: i64, offset: i64) -> ApiResult<Page<Subscription>>;
    async fn create_subscription(
        &self,
        input: &NewSubscription,
    ) -> ApiResult<SubscriptionWithSecret>;
    async fn get_subscription(&self, id: &SubscriptionId) -> ApiResult<Subscription>;
    async fn update_subscription(
        &self,
        id: &SubscriptionId,
        input: &SubscriptionUpdate,
    ) -> ApiResult<Subscription>;
    async fn delete_subscription(&self, id: &SubscriptionId) -> ApiResult<()>;
    /// Enables or disables; enabling resets the failure streak and releases held deliveries.
    async fn set_enabled(&self, id: &SubscriptionId, enabled: bool) -> ApiResult<Subscription>;
    /// Sends a `webhook.test` event to this subscription now and reports the attempt.
    async fn send_test(&self, id: &SubscriptionId) -> ApiResult<TestDelivery>;
    /// A new secret; the old one keeps signing alongside until `overlap_until`.
    async fn rotate_secret(
        &self,
        id: &SubscriptionId,
        overlap_until: Timestamp,
    ) -> ApiResult<SubscriptionWithSecret>;
    async fn failure_stats(&self, id: &SubscriptionId) -> ApiResult<FailureStats>;
    async fn list_messages(&self, filter: &MessageFilter) -> ApiResult<CursorPage<MessageLog>>;
    async fn list_attempts(
        &self,
        id: &SubscriptionId,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<CursorPage<AttemptLog>>;
    /// Queues a message again for one subscription, or for every one that has not received it.
    /// `id` is a message id as `GET /webhooks/logs` shows it.
    async fn retry_message(
        &self,
        id: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued>;
    /// Queues again every failed or undelivered message of a subscription in a time window.
    async fn recover(
        &self,
        id: &SubscriptionId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> ApiResult<Requeued>;
}

/// The delivery backend's part of `/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackendHealth {
    /// `ok` or `degraded` (the API keeps working; events wait in the outbox).
    pub status: &'static str,
    /// What is wrong, when degraded.
    pub detail: Option<String>,
}

/// Whether the camp's uplink is down, as the embedded engine judges it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UplinkStatus {
    /// `up`, or `down` when every endpoint tried failed at the network level (or the
    /// configured probe said so): deliveries wait, consuming no retry and counting toward
    /// no auto-pause, until the link returns.
    #[schema(example = "up")]
    pub state: &'static str,
    /// When the engine declared the uplink down (absent while it is up).
    pub down_since: Option<Timestamp>,
    /// Outages since the server started.
    pub outages: u64,
    /// When the last probe ran, and whether it reached its target.
    pub last_probe_at: Option<Timestamp>,
    pub last_probe_reached: Option<bool>,
    /// What the probe connects to: `EHRS_UPLINK_PROBE`, or `endpoints` (each
    /// endpoint's own address in turn).
    pub probe: String,
}

/// Bytes of a receiver's response body kept in an attempt's log, whoever delivered it.
pub(crate) const KEPT_RESPONSE_BYTES: usize = 1024;

/// A subscription's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailureStats {
    pub subscription_id: SubscriptionId,
    pub consecutive_failures: i64,
    pub last_failure_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub enabled: bool,
    /// True when the subscription was disabled automatically (failures or 410 Gone).
    pub auto_paused: bool,
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
    /// Deliveries waiting for an attempt (first or retry).
    pub pending_deliveries: i64,
}

/// The answer of the test route: what the receiver said.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestDelivery {
    pub message_id: String,
    /// The attempt; absent when the backend had not attempted it yet when the answer was
    /// sent (Svix delivers asynchronously; see `GET /webhooks/logs/{subscription_id}`).
    pub attempt: Option<AttemptLog>,
}

/// Filters of `GET /webhooks/logs`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    pub event_type: Option<String>,
    /// `pending` (no attempt yet), `failed` (last attempt failed, retry scheduled or held
    /// while the subscription is disabled), `delivered` or `exhausted`.
    #[param(pattern = "^(pending|failed|delivered|exhausted)$")]
    pub status: Option<String>,
    /// Only messages created at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only messages created before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only deliveries to this subscription.
    pub subscription_id: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The status the administration API shows: a pending delivery that was already tried
/// is shown `failed` (its retry is scheduled, or held while the subscription is
/// disabled). Both backends show these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisplayStatus {
    Pending,
    Failed,
    Delivered,
    Exhausted,
}

impl DisplayStatus {
    pub const ALL: [DisplayStatus; 4] = [
        DisplayStatus::Pending,
        DisplayStatus::Failed,
        DisplayStatus::Delivered,
        DisplayStatus::Exhausted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DisplayStatus::Pending => "pending",
            DisplayStatus::Failed => "failed",
            DisplayStatus::Delivered => "delivered",
            DisplayStatus::Exhausted => "exhausted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        DisplayStatus::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Every status's word, for the answer to a filter that names none of them.
    pub fn words() -> Vec<String> {
        DisplayStatus::ALL
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    }
}

impl MessageFilter {
    /// The `status` filter, refused (422, listing the statuses) when it names none.
    pub fn status(&self) -> ApiResult<Option<DisplayStatus>> {
        self.status
            .as_deref()
            .map(|raw| {
                DisplayStatus::parse(raw).ok_or_else(|| {
                    let mut errors = crate::validation::FieldErrors::new();
                    errors.add_allowed("status", DisplayStatus::words());
                    ApiError::from(errors)
                })
            })
            .transpose()
    }
}

/// A page that continues at `next_cursor` (absent on the last page). Newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CursorPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One message and where it stands for each subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageLog {
    /// `msg_…`: the outbox message (embedded) or the Svix message.
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub created_at: Timestamp,
    pub deliveries: Vec<DeliveryState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryState {
    pub subscription_id: SubscriptionId,
    /// Per-subscription sequence number (embedded engine; null under Svix).
    pub sequence: Option<i64>,
    /// `pending`, `failed`, `delivered` or `exhausted`.
    pub status: String,
    /// Attempts so far (embedded engine; null under Svix, which does not report it here).
    pub attempts: Option<i64>,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
}

/// One HTTP attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptLog {
    pub id: String,
    pub message_id: String,
    pub subscription_id: SubscriptionId,
    pub attempted_at: Timestamp,
    pub status_code: Option<i64>,
    /// The start of the receiver's answer (at most 1 KiB).
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// Whose failure it was: `network` (the name did not resolve, the network or host
    /// was unreachable, no connection in time) or `endpoint` (refused, TLS, an error
    /// status, no answer once connected); `null` when delivered, and under Svix.
    pub failure_class: Option<super::outcome::FailureClass>,
}

/// What a retry or recover queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Requeued {
    /// Deliveries queued again; null when the backend recovers in the background and
    /// does not say how many (Svix).
    pub requeued: Option<i64>,
    pub subscription_ids: Vec<SubscriptionId>,
}
