//! The dispatcher: one task per engine that turns committed messages into sends. Each
//! round it takes these named steps, then waits for the next thing to happen:
//!
//! 1. [`Dispatcher::refresh_targets`]: re-read the enabled subscriptions when told to.
//! 2. [`Dispatcher::fan_out`]: hand new outbox messages to the subscriptions
//!    (`fanout.rs`), keeping in memory the deliveries the lanes have room for.
//! 3. [`Dispatcher::claim_due`]: claim from the database what the lanes want (retries
//!    come due, a backlog, another engine's leftovers; `claim.rs`).
//! 4. [`Dispatcher::start_sends`]: start every send a lane has a slot for, each its own
//!    task; outcomes go to the recorder (`record.rs`), slots come back as sends finish.
//! 5. [`Dispatcher::finish_sends`], on waking: free the slots, and hold an ordered lane
//!    behind a failed delivery.
//!
//! What it waits for: a commit with outbox messages, an administrator's change
//! (re-enable, retry, recover), news from the recorder, finished sends, the sweep timer,
//! the uplink going down or coming back (`uplink.rs`), the clock moving (tests), the stop
//! signal. While the uplink is down it holds nothing, claims nothing and sends nothing:
//! new deliveries wait in the database, and when the link returns every lane claims from
//! its lowest sequence, one probing slot per endpoint until it answers.

use super::EngineConfig;
use super::claim;
use super::fanout;
use super::lanes::{Lanes, Slot};
use super::record::{self, Recorded};
use super::send::{HttpSender, Sent};
use crate::db::Db;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::outbound::outbox::{OUTBOX_SIGNAL, REQUEUE_SIGNAL};
use crate::outbound::outcome::Outcome;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Room kept between a lease's end and the latest time an attempt may start under it.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// At most one fan-out batch starts per interval: under load the messages of several
/// commits go out in one batch (one write transaction) instead of one batch each.
const FAN_OUT_INTERVAL: Duration = Duration::from_millis(1);
/// PostgreSQL: how soon a batch that could not take every committed message (held back
/// by an open transaction, or another instance leading) looks again, doubling up to the
/// longest wait while that lasts.
const LOOK_AGAIN_FIRST: Duration = Duration::from_millis(1);
const LOOK_AGAIN_MAX: Duration = Duration::from_millis(100);

/// A send that finished: the slot it held, and its attempt's outcome.
type Finished = (Slot, Outcome);

/// The dispatcher's state between rounds.
struct Dispatcher {
    db: Db,
    config: EngineConfig,
    sender: HttpSender,
    lanes: Lanes,
    /// The enabled subscriptions, in the order they are served (rotated every round so
    /// that none is always served last).
    enabled: Vec<SubscriptionId>,
    /// The targets last applied (see [`Dispatcher::apply_targets`]).
    known: Vec<fanout::Target>,
    sends: JoinSet<()>,
    /// To the recorder.
    outcomes: mpsc::Sender<Sent>,
    /// From each send, back to the dispatcher.
    finished: mpsc::UnboundedSender<Finished>,
    /// Raised before an ordered lane claims: its lowest pending delivery may be its own
    /// last send, not recorded yet; the recorder then says when it wrote.
    wake_after_write: Arc<AtomicBool>,
    /// Re-read the enabled subscriptions before the next round.
    refresh: bool,
    /// When the next fan-out batch runs (`None`: nothing known to hand off).
    fan_out_at: Option<Instant>,
    last_fan_out: Instant,
    look_again_wait: Duration,
    /// When the claim path next looks at every lane, not only those with a backlog.
    sweep_at: Instant,
}

/// Runs the dispatcher until `stop` turns true, then lets in-flight sends finish, waits
/// for the recorder, and releases what this engine still holds. `first`: this process
/// just became the one delivering for a SQLite file, so every lease in it is a crashed
/// run's and is released at once.
pub(super) async fn run(
    db: Db,
    config: EngineConfig,
    sender: HttpSender,
    mut stop: watch::Receiver<bool>,
    first: bool,
) {
    if first
        && db.sqlite_path().is_some()
        && let Err(err) = claim::release_all(&db).await
    {
        tracing::warn!(error = %err, "could not release the leases of a previous run; they come back when they end");
    }
    let outbox = db.commit_signal(OUTBOX_SIGNAL);
    let requeue = db.commit_signal(REQUEUE_SIGNAL);
    let (outcomes, outcomes_rx) = mpsc::channel::<Sent>(4096);
    let (news, mut news_rx) = mpsc::unbounded_channel::<Recorded>();
    let wake_after_write = Arc::new(AtomicBool::new(false));
    let recorder = tokio::spawn(record::run(
        db.clone(),
        config.clone(),
        outcomes_rx,
        news,
        wake_after_write.clone(),
    ));
    let (finished, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
    // A test moving the clock makes retries and leases due: look at once.
    let mut clock_moved = config.clock.watch();
    let mut uplink = config.uplink.watch();
    let mut dispatcher = Dispatcher {
        lanes: Lanes::new(config.global_concurrency, config.endpoint_concurrency),
        db,
        config,
        sender,
        enabled: Vec::new(),
        known: Vec::new(),
        sends: JoinSet::new(),
        outcomes,
        finished,
        wake_after_write,
        refresh: true,
        fan_out_at: Some(Instant::now()),
        last_fan_out: Instant::now(),
        look_again_wait: LOOK_AGAIN_FIRST,
        sweep_at: Instant::now(),
    };
    let d = &mut dispatcher;
    while !*stop.borrow() {
        d.refresh_targets().await;
        d.fan_out().await;
        d.claim_due().await;
        d.start_sends().await;
        tokio::select! {
            _ = outbox.notified() => d.outbox_committed(),
            _ = tokio::time::sleep_until(d.fan_out_at.unwrap_or(d.sweep_at)), if d.fan_out_at.is_some() => {}
            _ = requeue.notified() => d.requeued(),
            Some(news) = news_rx.recv() => d.recorded(news),
            Some(first) = finished_rx.recv() => d.finish_sends(first, &mut finished_rx).await,
            _ = tokio::time::sleep_until(d.sweep_at) => {
                // Other processes' commits on a shared PostgreSQL wake nobody here.
                soonest(&mut d.fan_out_at, Instant::now());
            }
            _ = uplink.changed() => d.uplink_changed(),
            _ = clock_moved.changed() => {
                soonest(&mut d.fan_out_at, Instant::now());
                d.sweep_at = Instant::now();
            }
            _ = stop.changed() => {}
        }
    }
    dispatcher.stop(recorder).await;
}

impl Dispatcher {
    /// Step 1: re-reads the enabled subscriptions when a change asked for it.
    async fn refresh_targets(&mut self) {
        if !self.refresh {
            return;
        }
        self.refresh = false;
        match fanout::enabled_targets(self.db.pool()).await {
            Ok(targets) => self.apply_targets(targets).await,
            Err(err) => {
                tracing::warn!(error = %err, "reading subscriptions failed; will retry");
                self.refresh = true;
            }
        }
    }

    /// Step 2: when a batch is due, fans out committed messages until none is left, and
    /// takes into the lanes what the fan-out leased to this engine.
    async fn fan_out(&mut self) {
        if self.fan_out_at.is_none_or(|at| at > Instant::now()) {
            return;
        }
        self.fan_out_at = None;
        self.last_fan_out = Instant::now();
        let mut look_again = false;
        // While the uplink is down nothing is taken into memory: it would only wait there.
        let down = self.config.uplink.is_down();
        loop {
            let lanes = &self.lanes;
            let room = |s: &SubscriptionId| if down { 0 } else { lanes.room(s) };
            match fanout::run_batch(&self.db, &self.config, &room).await {
                Ok(batch) => {
                    let more = batch.messages >= fanout::BATCH as usize;
                    look_again = batch.look_again;
                    if let Some(targets) = batch.targets {
                        self.apply_targets(targets).await;
                    }
                    for subscription in &batch.overflowed {
                        self.lanes.mark_backlog(subscription);
                    }
                    for delivery in batch.leased {
                        self.lanes.push(delivery);
                    }
                    if !more {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "fanning out outbox messages failed; will retry");
                    break;
                }
            }
        }
        if look_again {
            self.fan_out_at = Some(Instant::now() + self.look_again_wait);
            self.look_again_wait = (self.look_again_wait * 2).min(LOOK_AGAIN_MAX);
        } else {
            self.look_again_wait = LOOK_AGAIN_FIRST;
        }
    }

    /// Step 3: claims from the database what the lanes want (all lanes at a sweep).
    async fn claim_due(&mut self) {
        let sweep = Instant::now() >= self.sweep_at;
        if sweep {
            self.sweep_at = Instant::now() + self.config.poll_interval;
        }
        if self.config.uplink.is_down() {
            return;
        }
        let wants = self.lanes.wants(&self.enabled, sweep);
        if wants.iter().any(|w| w.ordered) {
            self.wake_after_write.store(true, Ordering::SeqCst);
        }
        if wants.is_empty() {
            return;
        }
        match claim::claim(&self.db, &self.config, &wants).await {
            Ok(claims) => {
                for want in &wants {
                    let got = claims
                        .claimed
                        .iter()
                        .filter(|c| c.subscription_id == want.subscription)
                        .count();
                    self.lanes.claimed(&want.subscription, want.count, got);
                }
                for subscription in &claims.behind_own_lease {
                    self.lanes.mark_backlog(subscription);
                }
                for delivery in claims.claimed {
                    self.lanes.push(delivery);
                }
            }
            Err(err) => tracing::warn!(error = %err, "claiming deliveries failed; will retry"),
        }
    }

    /// Step 4: starts every send a lane has a slot for, each in its own task.
    async fn start_sends(&mut self) {
        if self.config.uplink.is_down() {
            // Everything held waits in the database until the link returns.
            let held = self.lanes.drain_all();
            self.release_or_warn(&held).await;
            return;
        }
        if !self.enabled.is_empty() {
            self.enabled.rotate_left(1); // no subscription is always served last
        }
        let latest_start =
            self.config.clock.now_ms() + (self.config.timeout + LEASE_MARGIN).as_millis() as i64;
        while let Some((delivery, slot)) = self.lanes.next_ready(&self.enabled) {
            if delivery.lease_until.is_some_and(|end| end < latest_start) {
                // Held in memory too long: its lease may end mid-attempt, when another
                // engine could claim it. Let the lease run out; a claim takes it then.
                // An ordered lane lets go of the rest too: they must not overtake it.
                self.lanes.cancel(&slot);
                self.lanes.mark_backlog(&slot.subscription);
                if self.lanes.is_ordered(&slot.subscription) {
                    let rest = self.lanes.drain(&slot.subscription);
                    self.release_or_warn(&rest).await;
                }
                continue;
            }
            let sender = self.sender.clone();
            let uplink = self.config.uplink.clone();
            let outcomes = self.outcomes.clone();
            let finished = self.finished.clone();
            self.sends.spawn(async move {
                let sent = uplink.send(&sender, delivery).await;
                let outcome = sent.attempt.outcome;
                let _ = outcomes.send(sent).await;
                let _ = finished.send((slot, outcome));
            });
        }
        while self.sends.try_join_next().is_some() {}
    }

    /// Step 5: frees the slots of finished sends (all that have arrived); a lane whose
    /// endpoint did not answer starts probing, and an ordered lane whose delivery failed
    /// lets go of what it holds, so nothing overtakes the delivery waiting for its retry.
    async fn finish_sends(
        &mut self,
        first: Finished,
        more: &mut mpsc::UnboundedReceiver<Finished>,
    ) {
        let mut next = Some(first);
        while let Some((slot, outcome)) = next {
            self.lanes.finish(&slot, outcome.probes());
            if !outcome.delivered() && self.lanes.is_ordered(&slot.subscription) {
                let held = self.lanes.drain(&slot.subscription);
                self.release_or_warn(&held).await;
            }
            next = more.try_recv().ok();
        }
    }

    /// A transaction with outbox messages committed: fan out soon (at most once per
    /// [`FAN_OUT_INTERVAL`]).
    fn outbox_committed(&mut self) {
        let at = Instant::now().max(self.last_fan_out + FAN_OUT_INTERVAL);
        soonest(&mut self.fan_out_at, at);
    }

    /// An administrator made deliveries due or changed subscriptions: re-read them, and
    /// sweep every lane now.
    fn requeued(&mut self) {
        self.refresh = true;
        self.sweep_at = Instant::now();
    }

    /// The uplink came back: claim every lane's backlog now, from its lowest sequence.
    /// (When it goes down, the round's `start_sends` lets go of what is held.)
    fn uplink_changed(&mut self) {
        if !self.config.uplink.is_down() {
            self.requeued();
            soonest(&mut self.fan_out_at, Instant::now());
        }
    }

    fn recorded(&mut self, news: Recorded) {
        match news {
            Recorded::Paused => self.refresh = true,
            Recorded::RetryAt(due) => {
                let wait = due.saturating_sub(self.config.clock.now_ms()).max(0) as u64;
                self.sweep_at = self
                    .sweep_at
                    .min(Instant::now() + Duration::from_millis(wait));
            }
            Recorded::Written => {}
        }
    }

    /// Brings the view of the enabled subscriptions up to date: drops (and releases) what
    /// is held for subscriptions no longer enabled, and sends what is held for the others
    /// with their current URL, payload mode and secrets. Every fan-out batch reports the
    /// targets it read; when nothing changed (the usual case) this does nothing, so the
    /// delivery loop does not rewrite every held delivery once per batch.
    async fn apply_targets(&mut self, targets: Vec<fanout::Target>) {
        if self.known == targets {
            return;
        }
        self.known.clone_from(&targets);
        let ids: Vec<SubscriptionId> = targets.iter().map(|t| t.id.clone()).collect();
        let dropped = self.lanes.retain_enabled(&ids);
        self.release_or_warn(&dropped).await;
        for target in targets {
            self.lanes.set_ordered(&target.id, target.ordered != 0);
            self.lanes.refresh(&target.id, |delivery| {
                delivery.url.clone_from(&target.url);
                delivery.payload_mode = target.payload_mode;
                delivery.secret_enc.clone_from(&target.secret_enc);
                delivery
                    .previous_secret_enc
                    .clone_from(&target.previous_secret_enc);
                delivery.previous_secret_until = target.previous_secret_until;
            });
        }
        if self.enabled != ids {
            let mut ids = ids;
            // Keep the rotation's place for subscriptions that stay.
            ids.sort_by_key(|id| {
                self.enabled
                    .iter()
                    .position(|e| e == id)
                    .unwrap_or(usize::MAX)
            });
            self.enabled = ids;
        }
    }

    /// Gives back this engine's leases on deliveries it will not send now.
    async fn release_or_warn(&self, ids: &[DeliveryId]) {
        if let Err(err) = claim::release(&self.db, &self.config.instance, ids).await {
            tracing::warn!(error = %err, "could not release held deliveries; they come back when their lease ends");
        }
    }

    /// Graceful stop: in-flight sends get their timeout to finish, the recorder writes
    /// their outcomes, and what was held in memory or still in flight (leased to this
    /// engine) is released.
    async fn stop(mut self, recorder: tokio::task::JoinHandle<()>) {
        let grace = self.config.timeout + Duration::from_secs(2);
        let sends = &mut self.sends;
        let finished =
            tokio::time::timeout(grace, async { while sends.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            self.sends.abort_all();
        }
        let Dispatcher {
            db,
            config,
            outcomes,
            ..
        } = self;
        drop(outcomes);
        let _ = recorder.await;
        if let Err(err) = claim::release_unfinished(&db, &config.instance).await {
            tracing::warn!(error = %err, "could not release unfinished claims; they come back when their lease ends");
        }
    }
}

/// Moves `slot` to `at` if that is sooner (or it was unset).
fn soonest(slot: &mut Option<Instant>, at: Instant) {
    *slot = Some(slot.map_or(at, |current| current.min(at)));
}
