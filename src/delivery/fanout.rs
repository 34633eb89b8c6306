//! The fan-out: committed outbox messages become deliveries, one per matching enabled
//! subscription, each with that subscription's next sequence number. This is the only
//! place that hands out sequence numbers for emitted events, so the clinical transaction
//! writes one row and takes no lock (see `outbox::emit`).
//!
//! One batch is one transaction: read the oldest messages not handed off yet, read the
//! enabled subscriptions, advance each matching subscription's `last_sequence` once by
//! its count, insert the deliveries, mark the messages handed off (`relayed_at`).
//! Sequences are therefore gapless and follow the order the messages are read in, which
//! must be commit order, and no committed message may ever be passed over:
//!
//! - **SQLite** has one writer, so a message's rowid order is its commit order, and the
//!   batch's read runs inside the write transaction (`BEGIN IMMEDIATE`), after every
//!   earlier commit and before any later one.
//! - **PostgreSQL** assigns ids before commit, so a transaction that started first can
//!   commit last. Each message carries the id of the transaction that wrote it (`txid`,
//!   an `xid8` defaulting to `pg_current_xact_id()`), and the batch reads only messages
//!   whose `txid` is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
//!   below that horizon has finished, so no message can still appear below it. Messages
//!   are read in `(txid, position)` order; a later batch only ever finds transaction ids
//!   at or above the earlier batch's horizon, so the order is total and stable. A
//!   long-open write transaction delays the fan-out (never loses or reorders anything).
//!   The transaction holding the horizon back may be one whose commit wakes nobody (the
//!   recorder's, a claim's, another instance's), so a batch that saw messages above the
//!   horizon says so (`look_again`) and the dispatcher runs another soon, backing off
//!   while the horizon stays put. So does a batch that found another instance holding
//!   the lock: that leader may have read before this instance's latest commit, whose
//!   signal woke only this instance's engine.
//!   Batches are serialised across instances by a transaction-scoped advisory lock
//!   taken with `pg_try_advisory_xact_lock`: one instance fans out at a time, the others
//!   skip the round, and writers never touch that lock, so any number of instances take
//!   writes at full speed.
//!
//! Deliveries the caller has room for (never those of an ordered subscription) are
//! inserted already leased to this engine and returned, so the dispatcher sends them
//! from memory without reading them back; the rest are inserted free, for the claim path
//! (`claim.rs`) of any engine. The statements themselves are in `outbound::store`.

use super::EngineConfig;
use super::claim::Claimed;
use crate::db::Db;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::store;
use std::collections::HashMap;

pub use crate::outbound::store::{Target, enabled_targets};

/// Messages fanned out per transaction.
pub const BATCH: i64 = 512;

impl Target {
    /// The event types this subscription's filter names (empty: every type).
    fn filter(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }

    /// Whether this subscription's filter takes `event_type` (an empty filter takes all).
    #[cfg(test)]
    fn takes(&self, event_type: &str) -> bool {
        takes(&self.filter(), event_type)
    }
}

fn takes(filter: &[String], event_type: &str) -> bool {
    filter.is_empty() || filter.iter().any(|t| t == event_type)
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages handed off; 0 when there was nothing to do (or another instance leads).
    pub messages: usize,
    /// Deliveries leased to this engine, oldest first within each subscription.
    pub leased: Vec<Claimed>,
    /// Subscriptions that got deliveries the caller had no room for (claimable later).
    pub overflowed: Vec<SubscriptionId>,
    /// The enabled subscriptions when the batch ran (`None` if it read none).
    pub targets: Option<Vec<Target>>,
    /// PostgreSQL: committed messages may wait that this batch could not take (above
    /// the horizon, or another instance held the fan-out lock): run again soon.
    pub look_again: bool,
}

/// Fans out one batch. `room` says how many deliveries per subscription the caller can
/// take into memory now; the rest are inserted unleased.
pub async fn run_batch(
    db: &Db,
    config: &EngineConfig,
    room: &(dyn Fn(&SubscriptionId) -> usize + Sync),
) -> Result<Batch, sqlx::Error> {
    // If a crash loses this commit, its messages are not handed off yet, and the next
    // batch fans them out again with the same sequence numbers (their `last_sequence`
    // went with it): what was already sent goes again with the same webhook-id, which
    // at-least-once allows. The commit need not wait for the disk.
    let mut tx = db.begin_lazy_commit().await?;
    if !store::lead_fanout(&mut tx).await? {
        // Another instance is fanning out, and may have read the messages before this
        // instance's latest commit, whose signal woke only this engine: look again.
        tx.rollback().await?;
        return Ok(Batch {
            look_again: true,
            ..Batch::default()
        });
    }
    let store::Unrelayed {
        messages,
        held_back,
    } = store::unrelayed(&mut tx, BATCH).await?;
    if messages.is_empty() {
        tx.rollback().await?;
        return Ok(Batch {
            look_again: held_back,
            ..Batch::default()
        });
    }
    let targets = enabled_targets(tx.conn()).await?;

    // Which subscriptions take which messages, in message order (filters parsed once).
    let filters: Vec<Vec<String>> = targets.iter().map(Target::filter).collect();
    let mut per_target: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for (m, message) in messages.iter().enumerate() {
        for (t, filter) in filters.iter().enumerate() {
            if takes(filter, &message.event_type) {
                per_target[t].push(m);
            }
        }
    }

    let now = config.clock.now();
    let lease_until = now.millis() + config.lease().as_millis() as i64;
    let mut rows: Vec<NewDelivery> = Vec::new();
    let mut batch = Batch {
        messages: messages.len(),
        look_again: held_back,
        ..Batch::default()
    };
    // Subscription rows are updated in id order (the order `targets` is in), the order
    // the recorder locks them in too, so the two never deadlock.
    for (target, taken) in targets.iter().zip(&per_target) {
        if taken.is_empty() {
            continue;
        }
        let last = store::advance_sequence(&mut tx, &target.id, taken.len() as i64).await?;
        let first = last - taken.len() as i64 + 1;
        // An ordered subscription's deliveries always go through the claim path, which
        // takes them strictly in sequence (`lanes.rs`).
        let room = if target.ordered != 0 {
            0
        } else {
            room(&target.id)
        };
        if taken.len() > room {
            batch.overflowed.push(target.id.clone());
        }
        for (i, &m) in taken.iter().enumerate() {
            rows.push(NewDelivery {
                id: DeliveryId::generate(),
                message: m,
                target: target.id.clone(),
                sequence: first + i as i64,
                leased: i < room,
            });
        }
    }
    let new: Vec<store::NewDelivery> = rows
        .iter()
        .map(|row| store::NewDelivery {
            id: &row.id,
            message_id: &messages[row.message].id,
            subscription_id: &row.target,
            sequence: row.sequence,
            locked_until: row.leased.then_some(lease_until),
            locked_by: row.leased.then_some(config.instance.as_str()),
        })
        .collect();
    store::insert_deliveries(&mut tx, &new, now).await?;
    let handed: Vec<&crate::ids::MessageId> = messages.iter().map(|m| &m.id).collect();
    store::mark_relayed(&mut tx, &handed, now).await?;
    tx.commit().await?;

    let by_id: HashMap<&SubscriptionId, &Target> = targets.iter().map(|t| (&t.id, t)).collect();
    for row in rows.into_iter().filter(|r| r.leased) {
        let message = &messages[row.message];
        let target = by_id[&row.target];
        batch.leased.push(Claimed {
            delivery_id: row.id,
            message_id: message.id.clone(),
            subscription_id: row.target,
            sequence: row.sequence,
            attempts: 0,
            event_id: message.event_id.clone(),
            event_type: message.event_type.clone(),
            payload: message.payload.clone(),
            ids: message.ids.clone(),
            created_at: message.created_at,
            url: target.url.clone(),
            payload_mode: target.payload_mode,
            secret_enc: target.secret_enc.clone(),
            previous_secret_enc: target.previous_secret_enc.clone(),
            previous_secret_until: target.previous_secret_until,
            lease_until: Some(lease_until),
        });
    }
    batch.targets = Some(targets);
    Ok(batch)
}

struct NewDelivery {
    id: DeliveryId,
    /// Index into the batch's messages.
    message: usize,
    target: SubscriptionId,
    sequence: i64,
    leased: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(event_types: &str) -> Target {
        Target {
            id: SubscriptionId::generate(),
            url: String::new(),
            payload_mode: crate::outbound::payload::PayloadMode::Full,
            event_types: event_types.into(),
            secret_enc: String::new(),
            previous_secret_enc: None,
            previous_secret_until: None,
            ordered: 0,
        }
    }

    #[test]
    fn an_empty_filter_takes_every_type_and_a_list_only_its_own() {
        assert!(target("[]").takes("camp.created"));
        assert!(target(r#"["camp.created"]"#).takes("camp.created"));
        assert!(!target(r#"["camp.created"]"#).takes("camp.deleted"));
        assert!(!target(r#"["camp_created"]"#).takes("camp.created"));
    }
}
