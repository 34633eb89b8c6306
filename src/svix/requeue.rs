//! Sending again through Svix: one message to one endpoint (a manual attempt), what
//! Svix held back while an endpoint was disabled, and a recovery window.

use super::endpoints::{SVIX_PAGE, event_filter_of};
use super::{SvixBackend, api_error};
use crate::error::ApiResult;
use crate::ids::SubscriptionId;
use crate::outbound::backend::DisplayStatus;
use crate::outbound::backend::Requeued;
use crate::outbound::subscriptions::{check_filter_takes, filter_takes};
use crate::time::Timestamp;
use svix::api::MessageAttemptListAttemptedMessagesOptions;
use svix::models::{EndpointMessageOut, MessageStatus, RecoverIn};

impl SvixBackend {
    pub(super) async fn resend(
        &self,
        message: &str,
        subscription: &SubscriptionId,
    ) -> ApiResult<()> {
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
    pub(super) async fn release_held(&self, id: &SubscriptionId) -> ApiResult<usize> {
        let now = chrono::Utc::now();
        let held: Vec<String> = self
            .attempted_messages(id, MessageStatus::Sending, Selection::default())
            .await?
            .into_iter()
            .filter(|m| m.next_attempt.is_some_and(|due| due <= now))
            .map(|m| m.id)
            .collect();
        // Listed newest first.
        for message in held.iter().rev() {
            self.resend(message, id).await?;
        }
        if !held.is_empty() {
            tracing::info!(subscription = %id, released = held.len(), "re-enabled a Svix endpoint and sent the deliveries held while it was disabled");
        }
        Ok(held.len())
    }

    pub(super) async fn retry(
        &self,
        raw: &str,
        subscription: Option<&SubscriptionId>,
    ) -> ApiResult<Requeued> {
        let message = self.svix_message_id(raw).await?;
        if let Some(subscription) = subscription {
            let endpoint = self.endpoint(subscription).await?;
            let event_type = self
                .client
                .message()
                .get(self.app.clone(), message.clone(), None)
                .await
                .map_err(|err| api_error(err, "message", &message))?
                .event_type;
            check_filter_takes(subscription, &event_filter_of(&endpoint), &event_type)?;
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

    /// Svix's `recover` for an endpoint without a filter. Svix's own sends again every
    /// failed message of the window whatever its type, so for an endpoint with a filter
    /// (which may have narrowed since) EHRS recovers itself: [`Self::recover_filtered`].
    pub(super) async fn recover_window(
        &self,
        id: &SubscriptionId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> ApiResult<Requeued> {
        let filter = event_filter_of(&self.endpoint(id).await?);
        if !filter.is_empty() {
            return self.recover_filtered(id, since, until, filter).await;
        }
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

    /// Sends again, oldest first, each message created in `[since, until)` of a type
    /// `filter` takes whose delivery to the endpoint failed, one manual attempt each (as
    /// the embedded engine's recovery selects by the message's time, not the attempt's).
    async fn recover_filtered(
        &self,
        id: &SubscriptionId,
        since: Timestamp,
        until: Option<Timestamp>,
        filter: Vec<String>,
    ) -> ApiResult<Requeued> {
        let window = Selection {
            after: Some(since.to_datetime()),
            before: until.map(|t| t.to_datetime()),
            event_types: Some(filter.iter().cloned().collect()),
        };
        let failed: Vec<String> = self
            .attempted_messages(id, MessageStatus::Fail, window)
            .await?
            .into_iter()
            .filter(|m| filter_takes(&filter, &m.event_type))
            .map(|m| m.id)
            .collect();
        // Listed newest first.
        for message in failed.iter().rev() {
            self.resend(message, id).await?;
        }
        Ok(Requeued {
            requeued: Some(failed.len() as i64),
            subscription_ids: vec![id.clone()],
        })
    }

    /// The endpoint's attempted messages in `status` that `selection` selects, newest
    /// first, page after page: at most 40 pages of 250, far beyond what one endpoint holds
    /// (Svix looks 7 days back) and as many as Svix's own recovery takes, which bounds the
    /// call.
    async fn attempted_messages(
        &self,
        id: &SubscriptionId,
        status: MessageStatus,
        selection: Selection,
    ) -> ApiResult<Vec<EndpointMessageOut>> {
        let mut found = Vec::new();
        let mut iterator = None;
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
                        with_content: Some(false),
                        status: Some(status),
                        after: selection.after,
                        before: selection.before,
                        event_types: selection.event_types.clone(),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|err| api_error(err, "subscription", id.as_str()))?;
            found.extend(page.data);
            if page.done || page.iterator.is_none() {
                break;
            }
            iterator = page.iterator;
        }
        Ok(found)
    }
}

/// Which attempted messages to list beside their status: created in `[after, before)`, of
/// `event_types` (unset: no bound).
#[derive(Default)]
struct Selection {
    after: Option<chrono::DateTime<chrono::Utc>>,
    before: Option<chrono::DateTime<chrono::Utc>>,
    event_types: Option<std::collections::BTreeSet<String>>,
}
