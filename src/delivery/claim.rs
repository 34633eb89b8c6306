//! Claiming due deliveries and releasing claims: which deliveries a claim takes (the
//! statements are in `outbound::store`).
//!
//! New deliveries reach the dispatcher from the fan-out, already leased and in memory;
//! claiming is for the rest: retries coming due, a backlog the dispatcher had no room
//! for, re-enabled or recovered subscriptions, and leases of a crashed engine. A claim
//! is a lease in the row (`locked_until`, `locked_by`), so several processes on
//! PostgreSQL share the work and a crashed process's claims come back.

use super::EngineConfig;
use super::lanes::Want;
use crate::db::Db;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::store;

pub use crate::outbound::store::Claimed;

/// What a claim brought.
#[derive(Debug, Default)]
pub struct Claims {
    pub claimed: Vec<Claimed>,
    /// Ordered subscriptions whose lowest pending delivery is still leased to this engine
    /// (sent, its outcome not recorded yet): claim them again after the recorder wrote.
    pub behind_own_lease: Vec<SubscriptionId>,
}

/// Claims the due deliveries of `wants`, oldest first within a subscription so its
/// deliveries go out in sequence order. For an ordered subscription only an unbroken run
/// from its lowest pending sequence is claimed: the walk stops at the first delivery that
/// is not due (a retry waiting) or is leased (in flight here or at another engine), and
/// after locking, anything behind a delivery another engine locked first is let go.
pub async fn claim(db: &Db, config: &EngineConfig, wants: &[Want]) -> Result<Claims, sqlx::Error> {
    let now = config.clock.now_ms();
    let mut candidates: Vec<Claimed> = Vec::new();
    let mut behind_own_lease = Vec::new();
    for want in wants {
        if want.ordered {
            let rows = store::pending_in_line(db, &want.subscription, want.count).await?;
            for row in rows {
                if row.locked_until.is_some_and(|until| until >= now) {
                    if row.locked_by.as_deref() == Some(config.instance.as_str()) {
                        behind_own_lease.push(want.subscription.clone());
                    }
                    break;
                }
                if row.next_attempt_at > now {
                    break;
                }
                candidates.push(row.claimed);
            }
            continue;
        }
        let rows = store::due(db, &want.subscription, now, want.count).await?;
        candidates.extend(rows);
    }
    if candidates.is_empty() {
        return Ok(Claims {
            claimed: candidates,
            behind_own_lease,
        });
    }
    let (locked, lease_until) = lock(db, config, &candidates, now).await?;
    // An ordered run keeps only its unbroken start: what another engine took first
    // would otherwise be overtaken.
    let ordered: Vec<&SubscriptionId> = wants
        .iter()
        .filter(|w| w.ordered)
        .map(|w| &w.subscription)
        .collect();
    let mut broken: Vec<SubscriptionId> = Vec::new();
    let mut claimed = Vec::new();
    let mut let_go = Vec::new();
    for candidate in candidates {
        let held = locked.contains(&candidate.delivery_id);
        if ordered.contains(&&candidate.subscription_id) {
            if broken.contains(&candidate.subscription_id) {
                if held {
                    let_go.push(candidate.delivery_id.clone());
                }
                continue;
            }
            if !held {
                broken.push(candidate.subscription_id.clone());
                continue;
            }
        } else if !held {
            continue;
        }
        claimed.push(Claimed {
            lease_until: Some(lease_until),
            ..candidate
        });
    }
    release(db, &config.instance, &let_go).await?;
    Ok(Claims {
        claimed,
        behind_own_lease,
    })
}

/// One delivery with everything needed to send it, whatever its subscription's state
/// (the admin test route sends to disabled subscriptions too).
pub async fn by_id(db: &Db, id: &DeliveryId) -> Result<Option<Claimed>, sqlx::Error> {
    store::by_id(db, id).await
}

/// Takes the lease on those candidates still free; returns the ids this engine now holds
/// and when the lease ends.
async fn lock(
    db: &Db,
    config: &EngineConfig,
    candidates: &[Claimed],
    now: i64,
) -> Result<(Vec<DeliveryId>, i64), sqlx::Error> {
    let ids: Vec<&DeliveryId> = candidates.iter().map(|c| &c.delivery_id).collect();
    let lease_end = now + config.lease().as_millis() as i64;
    let locked = store::lock(db, &ids, &config.instance, now, lease_end).await?;
    Ok((locked, lease_end))
}

/// Releases the claims of engine `instance` that were not finished (graceful stop).
pub async fn release_unfinished(db: &Db, instance: &str) -> Result<u64, sqlx::Error> {
    store::release_unfinished(db, instance).await
}

/// Releases this engine's leases on `ids` (deliveries it will not send after all: their
/// subscription was disabled or changed while they waited in memory).
pub async fn release(db: &Db, instance: &str, ids: &[DeliveryId]) -> Result<(), sqlx::Error> {
    store::release(db, instance, ids).await
}

/// SQLite, at the start of the one engine allowed to deliver for the file: every lease
/// in it belongs to a process that is gone (a crash), so all are released at once
/// instead of waiting for them to run out.
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    store::release_all(db).await
}
