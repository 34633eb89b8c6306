//! Svix's messages and attempts as the admin API's logs (`GET /webhooks/logs…`): what
//! Svix's statuses mean in our words, and the attempt log.

use super::endpoints::SVIX_PAGE;
use super::{SvixBackend, api_error};
use crate::error::{ApiError, ApiResult};
use crate::ids::{MessageId, SubscriptionId};
use crate::outbound::backend::DisplayStatus;
use crate::outbound::backend::{
    AttemptLog, CursorPage, DeliveryState, KEPT_RESPONSE_BYTES, MessageFilter, MessageLog,
};
use crate::outbound::store;
use std::collections::BTreeSet;
use std::time::Duration;
use svix::api::{
    MessageAttemptListAttemptedDestinationsOptions, MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions, MessageAttemptListByMsgOptions, MessageListOptions,
};
use svix::models::{EndpointOut, MessageAttemptOut, MessageStatus};

/// How long the test route waits for Svix's first attempt before answering without it.
const TEST_ATTEMPT_WAIT: Duration = Duration::from_secs(5);

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

pub(super) fn attempt_log(
    attempt: &MessageAttemptOut,
    subscription: &SubscriptionId,
) -> AttemptLog {
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
        // Svix does not say whether the network or the endpoint failed.
        failure_class: None,
    }
}

impl SvixBackend {
    /// The Svix message id for a message id as our logs show it: an outbox id (`msg_` +
    /// ULID) is looked up by its event id (Svix's `eventId`); anything else is Svix's.
    pub(super) async fn svix_message_id(&self, raw: &str) -> ApiResult<String> {
        let Some(id) = MessageId::parse(raw) else {
            return Ok(raw.to_string());
        };
        let row = store::relayed_event_id(&self.db, &id).await?;
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
    pub(super) async fn first_attempt(
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

    /// Deliveries of each message, per EHRS subscription.
    pub(super) async fn deliveries(&self, message: &str) -> ApiResult<Vec<DeliveryState>> {
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

    pub(super) async fn messages(
        &self,
        filter: &MessageFilter,
    ) -> ApiResult<CursorPage<MessageLog>> {
        let (limit, _) = crate::http::PageParams {
            limit: filter.limit,
            offset: None,
        }
        .resolve()?;
        let status = filter.status()?;
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
        if let Some(status) = status {
            items.retain(|m| m.deliveries.iter().any(|d| d.status == status.as_str()));
        }
        Ok(CursorPage { items, next_cursor })
    }

    pub(super) async fn attempts(
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
