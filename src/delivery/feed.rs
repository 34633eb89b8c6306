//! The embedded engine's side of the catch-up feed (`outbound::feed`): checks the
//! reader against the subscription's live secrets, reads one page by sequence, and
//! renders each delivery with the function the sender uses (`payload::render`, in the
//! subscription's payload mode), so each body is the bytes that were POSTed. Reads only.

use crate::crypto::SecretBox;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::ids::SubscriptionId;
use crate::outbound::backend::DisplayStatus;
use crate::outbound::feed::{self, FeedHeaders, FeedItem, FeedPage, FeedReader};
use crate::outbound::fhir::FhirSettings;
use crate::outbound::payload::{self, OutboxMessage, PayloadMode};
use crate::outbound::signing::{self, SealedSecrets};
use crate::outbound::store::{self, FeedRow};

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    pub after: i64,
    pub limit: i64,
}

/// One page of `id`'s feed for `reader`; `now_ms` (the engine's clock) decides whether
/// a rotated-out secret still counts, as it does for signing.
pub(super) async fn page(
    db: &Db,
    secrets: &SecretBox,
    fhir: &FhirSettings,
    now_ms: i64,
    id: &SubscriptionId,
    reader: &FeedReader,
    cursor: Cursor,
) -> ApiResult<FeedPage> {
    let subscription = store::feed_subscription(db, id)
        .await?
        .ok_or_else(|| reader.not_found(id))?;
    let keys = SealedSecrets {
        subscription: id.as_str(),
        current: &subscription.secret_enc,
        previous: subscription.previous_secret_enc.as_deref(),
        previous_until: subscription.previous_secret_until,
    }
    .live_keys(secrets, now_ms)
    .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    if let FeedReader::Partner(token) = reader
        && !signing::feed_token_matches(&keys, id.as_str(), token.expose())
    {
        return Err(reader.not_found(id));
    }
    // One row more than asked for tells whether another page follows.
    let mut rows = store::feed_page(db, id, cursor.after, cursor.limit + 1).await?;
    let more = rows.len() as i64 > cursor.limit;
    rows.truncate(cursor.limit as usize);
    // A page ends before the first delivery whose payload retention cleared: what
    // precedes it is served, and the next request (starting there) gets the 410.
    let held = rows.iter().take_while(|row| row.payload.is_some()).count();
    if held == 0
        && let Some(cleared) = rows.first()
    {
        let oldest = store::first_held_after(db, id, cleared.sequence).await?;
        return Err(feed::beyond_retention(
            cleared.sequence,
            oldest,
            subscription.last_sequence,
        ));
    }
    let stopped_early = held < rows.len();
    rows.truncate(held);
    // One signing time for the page: the receiver checks it against its wall clock.
    let timestamp = chrono::Utc::now().timestamp();
    let items = rows
        .iter()
        .map(|row| item(row, subscription.payload_mode, fhir, &keys, timestamp))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(FeedPage {
        next_after: items.last().map_or(cursor.after, |item| item.sequence),
        done: !more && !stopped_early,
        items,
    })
}

/// One delivery rendered as the sender renders it, signed with every live key.
fn item(
    row: &FeedRow,
    mode: PayloadMode,
    fhir: &FhirSettings,
    keys: &[Vec<u8>],
    timestamp: i64,
) -> ApiResult<FeedItem> {
    let message = OutboxMessage {
        message_id: row.message_id.as_str(),
        event_id: &row.event_id,
        event_type: &row.event_type,
        created_at: row.created_at,
        payload: row.payload.as_deref(),
        ids: &row.ids,
    };
    let body =
        payload::render(&message, mode, Some(row.sequence), fhir).map_err(ApiError::internal)?;
    let webhook_id = row.message_id.to_string();
    let signature = signing::signature_header(keys, &webhook_id, timestamp, body.as_bytes());
    Ok(FeedItem {
        sequence: row.sequence,
        status: DisplayStatus::of(row.status, row.attempts)
            .as_str()
            .to_string(),
        headers: FeedHeaders {
            webhook_id,
            webhook_timestamp: timestamp.to_string(),
            webhook_signature: signature,
        },
        body,
    })
}
