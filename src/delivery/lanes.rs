//! The dispatcher's in-memory state: one lane per subscription with the deliveries it
//! holds (leased, in sequence order) and its slots in use. Pure: no I/O, no clock, so
//! the slot rules are unit-tested.
//!
//! Slots. Every subscription has one slot of its own; up to `endpoint_concurrency - 1`
//! more come from a shared pool of `global_concurrency`. An endpoint whose last attempt
//! got no answer (timed out, or the connection failed) is *probing*: it keeps only its
//! own slot until it answers again. So however many endpoints hang, each costs at most
//! one slot once it has timed out, the shared pool comes back, and a healthy endpoint
//! always has its own slot to send with at once, even while hung endpoints still hold
//! shared slots for their first timeout.
//!
//! Ordered lanes (a subscription with `ordered`) have one slot and never take deliveries
//! from the fan-out into memory: those always go through the claim path, which takes a
//! subscription's pending deliveries strictly from its lowest sequence and stops at the
//! first that is not due or is leased (`claim.rs`). When a send of an ordered lane fails,
//! the dispatcher drops what the lane holds (`drain`) so nothing overtakes the delivery
//! waiting for its retry. Leases make this hold across several engines: only the engine
//! holding the lowest pending delivery can send any of that subscription's deliveries.

use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::store::Claimed;
use std::collections::{HashMap, VecDeque};

/// Deliveries one lane takes into memory from the fan-out; beyond this they wait in
/// the database for the claim path (a slow endpoint must not pile up memory, nor hold
/// leases longer than they last).
pub const HELD_PER_LANE: usize = 512;
/// Deliveries an ordered lane claims at once (sent one after another).
pub const ORDERED_CLAIM: usize = 64;
/// A healthy lane claims this many rounds of its per-endpoint slots at once; few enough
/// that they are sent well within their lease.
pub const CLAIM_ROUNDS: usize = 16;

#[derive(Debug, Default)]
pub struct Lane {
    pub queue: VecDeque<Claimed>,
    pub in_flight: usize,
    pub probing: bool,
    /// Deliveries may wait in the database for this lane (the fan-out overflowed, or a
    /// claim came back full): claim again when there is room.
    pub backlog: bool,
    /// Ordered delivery: one in flight, strictly in sequence.
    pub ordered: bool,
}

/// A claim the dispatcher should make for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub subscription: SubscriptionId,
    pub count: usize,
    /// Strictly from the lowest pending sequence (see `claim::claim`).
    pub ordered: bool,
}

/// A started send: which lane, and whether it took a shared slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub subscription: SubscriptionId,
    pub shared: bool,
}

#[derive(Debug)]
pub struct Lanes {
    lanes: HashMap<SubscriptionId, Lane>,
    shared_in_use: usize,
    global: usize,
    per_endpoint: usize,
}

impl Lanes {
    pub fn new(global: usize, per_endpoint: usize) -> Lanes {
        Lanes {
            lanes: HashMap::new(),
            shared_in_use: 0,
            global,
            per_endpoint: per_endpoint.max(1),
        }
    }

    /// How many more deliveries `subscription` can take into memory from the fan-out
    /// (none for an ordered lane: its deliveries are claimed in sequence).
    pub fn room(&self, subscription: &SubscriptionId) -> usize {
        match self.lanes.get(subscription) {
            Some(lane) if lane.ordered => 0,
            lane => HELD_PER_LANE.saturating_sub(lane.map_or(0, |l| l.queue.len())),
        }
    }

    /// Sets whether `subscription` is delivered in order.
    pub fn set_ordered(&mut self, subscription: &SubscriptionId, ordered: bool) {
        let lane = self.lanes.entry(subscription.clone()).or_default();
        if lane.ordered != ordered {
            lane.ordered = ordered;
            lane.backlog = true;
        }
    }

    pub fn is_ordered(&self, subscription: &SubscriptionId) -> bool {
        self.lanes.get(subscription).is_some_and(|l| l.ordered)
    }

    /// Drops what `subscription`'s lane holds (an ordered lane whose send failed: nothing
    /// may overtake the failed delivery); returns the ids, to release. The lane claims
    /// again from the database.
    pub fn drain(&mut self, subscription: &SubscriptionId) -> Vec<DeliveryId> {
        let Some(lane) = self.lanes.get_mut(subscription) else {
            return Vec::new();
        };
        lane.backlog = true;
        lane.queue.drain(..).map(|d| d.delivery_id).collect()
    }

    /// Drops what every lane holds (the uplink went down: nothing is sent until it
    /// returns); returns the ids, to release.
    pub fn drain_all(&mut self) -> Vec<DeliveryId> {
        let mut dropped = Vec::new();
        for lane in self.lanes.values_mut() {
            if !lane.queue.is_empty() {
                lane.backlog = true;
                dropped.extend(lane.queue.drain(..).map(|d| d.delivery_id));
            }
        }
        dropped
    }

    pub fn push(&mut self, delivery: Claimed) {
        self.lanes
            .entry(delivery.subscription_id.clone())
            .or_default()
            .queue
            .push_back(delivery);
    }

    pub fn mark_backlog(&mut self, subscription: &SubscriptionId) {
        self.lanes.entry(subscription.clone()).or_default().backlog = true;
    }

    /// Slots `lane` could start now, counting the shared pool.
    fn free_slots(&self, lane: &Lane) -> usize {
        let cap = if lane.probing || lane.ordered {
            1
        } else {
            self.per_endpoint
        };
        let own = usize::from(lane.in_flight == 0);
        let shared_wanted = cap.saturating_sub(lane.in_flight.max(1));
        let shared = shared_wanted.min(self.global.saturating_sub(self.shared_in_use));
        if lane.in_flight >= cap {
            0
        } else {
            own + shared
        }
    }

    /// Takes the next delivery of the first lane in `order` that may start one now.
    /// Returns it with the slot it holds.
    pub fn next_ready(&mut self, order: &[SubscriptionId]) -> Option<(Claimed, Slot)> {
        for subscription in order {
            let Some(lane) = self.lanes.get(subscription) else {
                continue;
            };
            if lane.queue.is_empty() || self.free_slots(lane) == 0 {
                continue;
            }
            let shared = lane.in_flight > 0;
            let lane = self.lanes.get_mut(subscription).expect("present");
            let delivery = lane.queue.pop_front().expect("not empty");
            lane.in_flight += 1;
            if shared {
                self.shared_in_use += 1;
            }
            return Some((
                delivery,
                Slot {
                    subscription: subscription.clone(),
                    shared,
                },
            ));
        }
        None
    }

    /// A send finished. `unresponsive`: it got no answer (the lane starts probing);
    /// otherwise any HTTP answer ends probing.
    pub fn finish(&mut self, slot: &Slot, unresponsive: bool) {
        if slot.shared {
            self.shared_in_use = self.shared_in_use.saturating_sub(1);
        }
        if let Some(lane) = self.lanes.get_mut(&slot.subscription) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            lane.probing = unresponsive;
        }
    }

    /// Gives back a slot that was taken but not used (its lane's probing state stays).
    pub fn cancel(&mut self, slot: &Slot) {
        if slot.shared {
            self.shared_in_use = self.shared_in_use.saturating_sub(1);
        }
        if let Some(lane) = self.lanes.get_mut(&slot.subscription) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
        }
    }

    /// Subscriptions whose lane holds nothing (and, probing, has its slot free), with how
    /// many to claim from the database; `all` adds lanes without a known backlog (a
    /// periodic sweep for retries coming due and other engines' leftovers). An ordered lane claims only
    /// when nothing of it is in flight (the lowest pending delivery would be its own).
    pub fn wants(&self, enabled: &[SubscriptionId], all: bool) -> Vec<Want> {
        let idle = Lane::default();
        enabled
            .iter()
            .filter_map(|id| {
                let lane = self.lanes.get(id).unwrap_or(&idle);
                if !lane.queue.is_empty() || !(all || lane.backlog) {
                    return None;
                }
                if lane.ordered {
                    return (lane.in_flight == 0).then(|| Want {
                        subscription: id.clone(),
                        count: ORDERED_CLAIM,
                        ordered: true,
                    });
                }
                // A probing endpoint gets what its one slot can send. A healthy one
                // claims several rounds of its slots at once, even while they are all
                // busy: claiming only the free slots made a backlog come back a few
                // deliveries per round trip (on PostgreSQL the engine then topped out
                // near 1,300 deliveries/s).
                let count = if lane.probing {
                    self.free_slots(lane)
                } else {
                    self.per_endpoint * CLAIM_ROUNDS
                };
                (count > 0).then(|| Want {
                    subscription: id.clone(),
                    count,
                    ordered: false,
                })
            })
            .collect()
    }

    /// Records what a claim for `subscription` brought: a full claim means more may wait.
    pub fn claimed(&mut self, subscription: &SubscriptionId, asked: usize, got: usize) {
        self.lanes.entry(subscription.clone()).or_default().backlog = got >= asked;
    }

    /// Drops what the lanes of subscriptions outside `enabled` hold (disabled or deleted
    /// while waiting in memory); returns the dropped deliveries' ids, to release.
    pub fn retain_enabled(&mut self, enabled: &[SubscriptionId]) -> Vec<DeliveryId> {
        let mut dropped = Vec::new();
        for (id, lane) in self.lanes.iter_mut() {
            if !enabled.contains(id) {
                dropped.extend(lane.queue.drain(..).map(|d| d.delivery_id));
                lane.backlog = false;
            }
        }
        self.lanes
            .retain(|id, lane| enabled.contains(id) || lane.in_flight > 0);
        dropped
    }

    /// Updates what queued deliveries of `subscription` are sent with (URL, payload mode,
    /// secrets), after an administrator changed it.
    pub fn refresh(&mut self, subscription: &SubscriptionId, apply: impl Fn(&mut Claimed)) {
        if let Some(lane) = self.lanes.get_mut(subscription) {
            lane.queue.iter_mut().for_each(apply);
        }
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lanes.values().map(|l| l.queue.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;
    use crate::time::Timestamp;

    fn delivery(subscription: &SubscriptionId, sequence: i64) -> Claimed {
        Claimed {
            delivery_id: DeliveryId::generate(),
            message_id: MessageId::generate(),
            subscription_id: subscription.clone(),
            sequence,
            attempts: 0,
            event_id: String::new(),
            event_type: String::new(),
            payload: None,
            ids: String::new(),
            created_at: Timestamp(0),
            url: String::new(),
            payload_mode: crate::outbound::payload::PayloadMode::Full,
            secret_enc: String::new(),
            previous_secret_enc: None,
            previous_secret_until: None,
            lease_until: None,
        }
    }

    fn start_all(lanes: &mut Lanes, order: &[SubscriptionId]) -> Vec<Slot> {
        std::iter::from_fn(|| lanes.next_ready(order).map(|(_, slot)| slot)).collect()
    }

    #[test]
    fn hung_endpoints_never_take_a_healthy_endpoints_own_slot() {
        // A shared pool of 8, 8 per endpoint; 50 endpoints hang on their first sends.
        let mut lanes = Lanes::new(8, 8);
        let hung: Vec<SubscriptionId> = (0..50).map(|_| SubscriptionId::generate()).collect();
        for id in &hung {
            for seq in 1..=10 {
                lanes.push(delivery(id, seq));
            }
        }
        let started = start_all(&mut lanes, &hung);
        assert_eq!(
            started.len(),
            50 + 8,
            "own slot each, plus the shared pool once"
        );
        let healthy = SubscriptionId::generate();
        lanes.push(delivery(&healthy, 1));
        lanes.push(delivery(&healthy, 2));
        let order: Vec<SubscriptionId> = hung.iter().chain([&healthy]).cloned().collect();
        let (first, slot) = lanes
            .next_ready(&order)
            .expect("the healthy lane starts at once");
        assert_eq!((first.sequence, slot.shared), (1, false));
        assert!(
            lanes.next_ready(&order).is_none(),
            "the pool is still taken"
        );

        // The hung sends time out: each hung endpoint drops to one probing slot, and the
        // shared pool is free again for the healthy one.
        for slot in &started {
            lanes.finish(slot, true);
        }
        let (second, slot) = lanes.next_ready(std::slice::from_ref(&healthy)).unwrap();
        assert_eq!((second.sequence, slot.shared), (2, true));
        let probes = start_all(&mut lanes, &hung);
        assert_eq!(probes.len(), 50, "one probe per hung endpoint, no more");
        assert!(probes.iter().all(|s| !s.shared));
    }

    #[test]
    fn an_answer_ends_probing_and_a_lane_keeps_sequence_order() {
        let mut lanes = Lanes::new(64, 4);
        let id = SubscriptionId::generate();
        for seq in 1..=6 {
            lanes.push(delivery(&id, seq));
        }
        let order = [id.clone()];
        let (d, slot) = lanes.next_ready(&order).unwrap();
        assert_eq!(d.sequence, 1);
        lanes.finish(&slot, true);
        let (d, probe) = lanes.next_ready(&order).unwrap();
        assert_eq!(d.sequence, 2);
        assert!(lanes.next_ready(&order).is_none(), "probing: one at a time");
        lanes.finish(&probe, false);
        let sequences: Vec<i64> =
            std::iter::from_fn(|| lanes.next_ready(&order).map(|(d, _)| d.sequence)).collect();
        assert_eq!(
            sequences,
            [3, 4, 5, 6],
            "answering again: back to four at once, in order"
        );
    }

    #[test]
    fn a_healthy_lane_claims_rounds_of_its_slots_and_a_probing_one_its_one_slot() {
        let mut lanes = Lanes::new(64, 4);
        let healthy = SubscriptionId::generate();
        let hung = SubscriptionId::generate();
        let order = [healthy.clone(), hung.clone()];
        // Both have a backlog in the database; the hung endpoint's last send timed out.
        lanes.push(delivery(&hung, 1));
        let (_, slot) = lanes.next_ready(&order).unwrap();
        lanes.finish(&slot, true);
        lanes.mark_backlog(&healthy);
        lanes.mark_backlog(&hung);
        let want = |lanes: &Lanes, id: &SubscriptionId| {
            lanes
                .wants(&order, false)
                .into_iter()
                .find(|w| w.subscription == *id)
                .map(|w| w.count)
        };
        assert_eq!(want(&lanes, &healthy), Some(4 * CLAIM_ROUNDS));
        assert_eq!(want(&lanes, &hung), Some(1), "probing: one slot");
        // A healthy lane claims again even while every slot is busy; a probing one not.
        for seq in 1..=4 {
            lanes.push(delivery(&healthy, seq));
        }
        lanes.push(delivery(&hung, 2));
        while lanes.next_ready(&order).is_some() {}
        assert_eq!(want(&lanes, &healthy), Some(4 * CLAIM_ROUNDS));
        assert_eq!(want(&lanes, &hung), None);
    }

    #[test]
    fn disabled_lanes_drop_what_they_hold() {
        let mut lanes = Lanes::new(64, 8);
        let kept = SubscriptionId::generate();
        let gone = SubscriptionId::generate();
        lanes.push(delivery(&kept, 1));
        let dropped_delivery = delivery(&gone, 1);
        let dropped_id = dropped_delivery.delivery_id.clone();
        lanes.push(dropped_delivery);
        assert_eq!(
            lanes.retain_enabled(std::slice::from_ref(&kept)),
            [dropped_id]
        );
        assert_eq!(lanes.held(), 1);
        assert_eq!(
            lanes.wants(&[kept.clone(), gone.clone()], true),
            [Want {
                subscription: gone,
                count: 8 * CLAIM_ROUNDS,
                ordered: false
            }]
        );
    }

    #[test]
    fn an_ordered_lane_sends_one_at_a_time_takes_nothing_from_the_fan_out_and_drains() {
        let mut lanes = Lanes::new(64, 8);
        let id = SubscriptionId::generate();
        lanes.set_ordered(&id, true);
        assert_eq!(
            lanes.room(&id),
            0,
            "the fan-out leaves its deliveries to claims"
        );
        let order = [id.clone()];
        assert_eq!(
            lanes.wants(&order, false),
            [Want {
                subscription: id.clone(),
                count: ORDERED_CLAIM,
                ordered: true
            }]
        );
        for seq in 1..=3 {
            lanes.push(delivery(&id, seq));
        }
        let (first, slot) = lanes.next_ready(&order).unwrap();
        assert_eq!(first.sequence, 1);
        assert!(lanes.next_ready(&order).is_none(), "one in flight");
        // The send failed: what is held is dropped, and no claim while it is in flight.
        assert_eq!(lanes.drain(&id).len(), 2);
        assert!(lanes.wants(&order, true).is_empty());
        lanes.finish(&slot, false);
        assert_eq!(lanes.wants(&order, false).len(), 1);
        assert_eq!(lanes.held(), 0);
    }
}
