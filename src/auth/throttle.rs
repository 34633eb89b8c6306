//! Login throttling per username and per client address.
//!
//! Each key (a lower-cased username; a client address, IPv6 by its /64) counts failed
//! logins. After `free` failures every further one makes the key wait, doubling from
//! `base_delay` up to `max_delay`; while it waits, logins for it get 429 at once, with no
//! hash and no database read. A successful login clears its username's and its
//! address's record; a record is forgotten `window` after its last failure.
//!
//! An attempt counts as failed from the moment it starts (it is refunded when the hash
//! pool turns it away, cleared when it succeeds): a burst of simultaneous guesses is cut
//! off after `free` of them, instead of all being let through before the first one fails.
//!
//! State is in memory, per process: several PostgreSQL instances each throttle on their
//! own. Each map keeps at most [`MAX_KEYS`] records, so a spray of random usernames
//! cannot grow it without bound (the oldest records are dropped first).
//!
//! Time is passed in (`now`), so the unit tests drive a clock of their own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records kept per map (usernames, addresses).
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures per username before delays start.
    pub free_per_user: u32,
    /// Failures per client address before delays start.
    pub free_per_address: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A record is forgotten this long after its last failure.
    pub window: Duration,
}

#[derive(Clone)]
pub struct LoginThrottle {
    settings: Arc<ThrottleSettings>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    users: Records,
    addresses: Records,
}

#[derive(Default)]
struct Records(HashMap<String, Record>);

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// A login under way, counted as failed until [`Attempt::succeeded`] or
/// [`Attempt::refund`] says otherwise.
#[must_use]
pub struct Attempt {
    throttle: LoginThrottle,
    user: String,
    address: String,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        LoginThrottle {
            settings: Arc::new(settings),
            state: Arc::default(),
        }
    }

    /// Starts a login for `username` from `address`, or says how long to wait.
    pub fn begin(
        &self,
        username: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let user = user_key(username);
        let address = address_key(address);
        let settings = &self.settings;
        let mut state = self.lock();
        let waits = [
            state.users.wait(&user, now, settings),
            state.addresses.wait(&address, now, settings),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        state
            .users
            .fail(&user, now, settings.free_per_user, settings);
        state
            .addresses
            .fail(&address, now, settings.free_per_address, settings);
        drop(state);
        Ok(Attempt {
            throttle: self.clone(),
            user,
            address,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Attempt {
    /// The password was right: both records are cleared.
    pub fn succeeded(self) {
        let mut state = self.throttle.lock();
        state.users.0.remove(&self.user);
        state.addresses.0.remove(&self.address);
    }

    /// The password was never checked (the hash pool was full): the attempt does not count.
    pub fn refund(self) {
        let settings = &self.throttle.settings;
        let mut state = self.throttle.lock();
        state
            .users
            .unfail(&self.user, settings.free_per_user, settings);
        state
            .addresses
            .unfail(&self.address, settings.free_per_address, settings);
    }

    /// The password was wrong at `now`. Already counted when the attempt began; the wait
    /// is now counted from this moment, the end of the (slow) hash, not from its start.
    pub fn failed(self, now: Instant) {
        let settings = &self.throttle.settings;
        let mut state = self.throttle.lock();
        state
            .users
            .restamp(&self.user, now, settings.free_per_user, settings);
        state
            .addresses
            .restamp(&self.address, now, settings.free_per_address, settings);
    }
}

impl Records {
    /// How long `key` must still wait, if it must.
    fn wait(&mut self, key: &str, now: Instant, settings: &ThrottleSettings) -> Option<Duration> {
        let record = self.0.get(key)?;
        if now.saturating_duration_since(record.last) >= settings.window {
            self.0.remove(key);
            return None;
        }
        record
            .blocked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }

    fn fail(&mut self, key: &str, now: Instant, free: u32, settings: &ThrottleSettings) {
        if !self.0.contains_key(key) && self.0.len() >= MAX_KEYS {
            self.make_room(now, settings);
        }
        let record = self.0.entry(key.to_string()).or_insert(Record {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        record.blocked_until = delay(record.failures, free, settings).map(|d| now + d);
    }

    fn restamp(&mut self, key: &str, now: Instant, free: u32, settings: &ThrottleSettings) {
        if let Some(record) = self.0.get_mut(key) {
            record.last = record.last.max(now);
            let until = delay(record.failures, free, settings).map(|d| now + d);
            record.blocked_until = record.blocked_until.max(until);
        }
    }

    fn unfail(&mut self, key: &str, free: u32, settings: &ThrottleSettings) {
        let Some(record) = self.0.get_mut(key) else {
            return;
        };
        record.failures = record.failures.saturating_sub(1);
        if record.failures == 0 {
            self.0.remove(key);
            return;
        }
        record.blocked_until = delay(record.failures, free, settings).map(|d| record.last + d);
    }

    /// Drops the expired records, or failing that the one with the oldest failure.
    fn make_room(&mut self, now: Instant, settings: &ThrottleSettings) {
        self.0.retain(|_, r| {
            now.saturating_duration_since(r.last) < settings.window
                || r.blocked_until.is_some_and(|until| until > now)
        });
        if self.0.len() >= MAX_KEYS
            && let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone())
        {
            self.0.remove(&oldest);
        }
    }
}

/// The wait after the `failures`-th failure: none up to `free - 1`, then `base`,
/// doubling with each further failure, at most `max`.
fn delay(failures: u32, free: u32, settings: &ThrottleSettings) -> Option<Duration> {
    let over = failures.checked_sub(free.max(1))?;
    let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
    Some(
        settings
            .base_delay
            .saturating_mul(factor)
            .min(settings.max_delay),
    )
}

/// Usernames are unique without regard to case; a long name is cut (it names no user).
fn user_key(username: &str) -> String {
    username.chars().take(64).collect::<String>().to_lowercase()
}

/// An IPv6 client is keyed by its /64, which one host or site usually holds whole.
fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            free_per_user: 3,
            free_per_address: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            window: Duration::from_secs(60),
        })
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn failures_earn_doubling_waits_and_a_success_clears_them() {
        let t = throttle();
        let start = Instant::now();
        for _ in 0..3 {
            t.begin("Asha", HOME, start).unwrap().failed(start);
        }
        // The third failure set a 1 s wait, for any case of the name.
        assert_eq!(
            t.begin("asha", AWAY, start).err(),
            Some(Duration::from_secs(1))
        );
        let later = start + Duration::from_secs(1);
        t.begin("asha", AWAY, later).unwrap().failed(later);
        assert_eq!(
            t.begin("ASHA", AWAY, later).err(),
            Some(Duration::from_secs(2))
        );
        let later = later + Duration::from_secs(2);
        t.begin("asha", AWAY, later).unwrap().succeeded();
        // Cleared: the next failures start from zero again.
        t.begin("asha", AWAY, later).unwrap().failed(later);
        t.begin("asha", AWAY, later).unwrap().failed(later);
        assert!(t.begin("asha", AWAY, later).is_ok());
    }

    #[test]
    fn waits_are_capped_and_records_expire() {
        let t = throttle();
        let mut now = Instant::now();
        let mut last_wait = Duration::ZERO;
        for _ in 0..10 {
            match t.begin("ravi", HOME, now) {
                Ok(attempt) => attempt.failed(now),
                Err(wait) => {
                    last_wait = wait;
                    now += wait;
                }
            }
        }
        assert_eq!(last_wait, Duration::from_secs(8));
        now += Duration::from_secs(60);
        assert!(
            t.begin("ravi", HOME, now).is_ok(),
            "forgotten after the window"
        );
    }

    #[test]
    fn a_burst_is_cut_off_while_it_is_in_flight() {
        let t = throttle();
        let now = Instant::now();
        let started: Vec<_> = (0..10)
            .filter_map(|_| t.begin("meera", HOME, now).ok())
            .collect();
        assert_eq!(started.len(), 3);
        // A refunded attempt (never checked) gives its place back.
        for attempt in started {
            attempt.refund();
        }
        assert!(t.begin("meera", HOME, now).is_ok());
    }

    #[test]
    fn an_address_spraying_usernames_is_throttled_but_others_are_not() {
        let t = throttle();
        let now = Instant::now();
        for n in 0..5 {
            t.begin(&format!("user{n}"), HOME, now).unwrap().failed(now);
        }
        assert!(t.begin("someone-else", HOME, now).is_err());
        assert!(t.begin("someone-else", AWAY, now).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1");
    }

    #[test]
    fn the_maps_stay_bounded_under_a_spray_of_names() {
        let t = throttle();
        let now = Instant::now();
        for n in 0..(MAX_KEYS + 50) {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(n as u32));
            if let Ok(attempt) = t.begin(&format!("name{n}"), address, now) {
                attempt.failed(now);
            }
        }
        let state = t.lock();
        assert!(state.users.0.len() <= MAX_KEYS);
        assert!(state.addresses.0.len() <= MAX_KEYS);
    }
}
