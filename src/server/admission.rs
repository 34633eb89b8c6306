//! Connection caps: how many connections the server holds at once, overall and from one
//! client address. Why: each held connection costs a task, buffers and a file descriptor,
//! and without a cap the only ceiling is the process's open-file limit, which a handful of
//! slow clients (or one client opening sockets in a loop) reach long before the camp's
//! own devices do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What a client over a cap is told to wait before it tries again.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// Counts the open connections, overall and per client address.
pub(super) struct Admission {
    max_connections: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Which cap a connection was refused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Overall { limit: usize },
    PerAddress { limit: usize },
}

/// One admitted connection: its place is given back when this drops, however the
/// connection ends.
pub(super) struct Ticket {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub(super) fn new(max_connections: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_connections,
            max_per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for a connection from `address`, or the cap it would pass.
    pub(super) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        let address = address.to_canonical();
        let mut open = self
            .open
            .lock()
            .expect("the connection count is never poisoned");
        if open.total >= self.max_connections {
            return Err(Refusal::Overall {
                limit: self.max_connections,
            });
        }
        let from_address = open.by_address.entry(address).or_default();
        if *from_address >= self.max_per_address {
            return Err(Refusal::PerAddress {
                limit: self.max_per_address,
            });
        }
        *from_address += 1;
        open.total += 1;
        metrics::gauge!("ehrs_http_connections_open").set(open.total as f64);
        Ok(Ticket {
            admission: self.clone(),
            address,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .expect("the connection count is never poisoned");
        open.total -= 1;
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
        metrics::gauge!("ehrs_http_connections_open").set(open.total as f64);
    }
}

impl Refusal {
    /// The 503 answer, whole: a JSON error naming the cap and the setting that raises it,
    /// `Retry-After`, and `Connection: close`.
    pub(super) fn answer(self) -> Vec<u8> {
        let (message, limit, setting) = match self {
            Refusal::Overall { limit } => (
                format!(
                    "the server holds {limit} connections, its most; try again in {RETRY_AFTER_SECONDS} s"
                ),
                limit,
                "EHRS_HTTP_MAX_CONNECTIONS",
            ),
            Refusal::PerAddress { limit } => (
                format!(
                    "this client address already holds {limit} connections, the most one address may; close one or try again in {RETRY_AFTER_SECONDS} s"
                ),
                limit,
                "EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
            ),
        };
        let body = serde_json::json!({"error": {
            "code": "too_many_connections",
            "message": message,
            "details": {"limit": limit, "setting": setting, "retry_after_seconds": RETRY_AFTER_SECONDS},
        }});
        super::raw_answer(
            "503 Service Unavailable",
            &[("retry-after", &RETRY_AFTER_SECONDS.to_string())],
            &body,
        )
    }

    /// The label of `ehrs_http_connections_refused_total`.
    pub(super) fn limit_label(self) -> &'static str {
        match self {
            Refusal::Overall { .. } => "overall",
            Refusal::PerAddress { .. } => "per_address",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back_when_tickets_drop() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(
            admission.admit(a).err(),
            Some(Refusal::PerAddress { limit: 2 })
        );
        let _third = admission.admit(b).unwrap();
        assert_eq!(
            admission.admit(b).err(),
            Some(Refusal::Overall { limit: 3 })
        );
        drop(first);
        assert!(admission.admit(a).is_ok());
        assert!(admission.open.lock().unwrap().by_address.len() <= 2);
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_its_ipv4_address() {
        let admission = Admission::new(10, 1);
        let _held = admission.admit("10.0.0.1".parse().unwrap()).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(admission.admit(mapped).is_err());
    }
}
