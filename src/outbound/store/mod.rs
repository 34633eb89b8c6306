//! The SQL on the `webhook_*` tables: `webhook_messages` (the outbox, both backends),
//! and `webhook_subscriptions`, `webhook_deliveries` and `webhook_attempts` (the embedded
//! engine's). The modules that use it (`outbound::outbox`, `delivery::{fanout, claim,
//! record, …}`, the Svix relay) decide what to do; this module is the one place that
//! says how it is written, so a status is spelled once ([`DeliveryStatus`]) and the
//! SQLite and PostgreSQL variants of a statement sit side by side. Two exceptions, each
//! with its own reason: the subscriptions' health columns are written by
//! `outbound::health` (one mechanism for both backends, beside the Svix table it shares
//! its rules with), and the audit trail (`webhook_audit`) by `outbound::audit`.
//!
//! - `messages.rs`: the outbox, the fan-out and the relay (messages, sequences, new
//!   deliveries).
//! - `subscriptions.rs`: the embedded backend's subscriptions.
//! - `deliveries.rs`: claims, leases and requeues (retry, recover, re-enable).
//! - `outcomes.rs`: attempts and delivery outcomes.
//! - `logs.rs`: the pages of messages and attempts the admin API shows.
//! - `feed.rs`: the catch-up feed's pages, by sequence.
//! - `upkeep.rs`: retention and the counts the metrics and the admin API show.

mod deliveries;
mod feed;
mod logs;
mod messages;
mod outcomes;
pub mod subscriptions;
mod upkeep;

pub use deliveries::*;
pub use feed::*;
pub use logs::*;
pub use messages::*;
pub use outcomes::*;
pub use upkeep::*;

use super::backend::DisplayStatus;

use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// The stored state of a delivery (`webhook_deliveries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for an attempt: the first, or a retry (then `attempts > 0`).
    Pending,
    /// A 2xx answer was recorded.
    Delivered,
    /// No attempt will be made any more (schedule used up, or 410 Gone).
    Exhausted,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Exhausted => "exhausted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "exhausted" => DeliveryStatus::Exhausted,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Type<Any> for DeliveryStatus {
    fn type_info() -> AnyTypeInfo {
        <str as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <str as Type<Any>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Any> for DeliveryStatus {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Any>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Any> for DeliveryStatus {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let raw = <String as Decode<Any>>::decode(value)?;
        DeliveryStatus::parse(&raw).ok_or_else(|| format!("unknown delivery status '{raw}'").into())
    }
}

/// How the embedded engine's stored states map onto the statuses the API shows.
impl DisplayStatus {
    /// What a stored delivery shows.
    pub fn of(status: DeliveryStatus, attempts: i64) -> Self {
        match status {
            DeliveryStatus::Pending if attempts > 0 => DisplayStatus::Failed,
            DeliveryStatus::Pending => DisplayStatus::Pending,
            DeliveryStatus::Delivered => DisplayStatus::Delivered,
            DeliveryStatus::Exhausted => DisplayStatus::Exhausted,
        }
    }

    /// The SQL condition on delivery alias `d` selecting this display status. Built
    /// from the enum's own spellings (no user input), the inverse of [`DisplayStatus::of`].
    pub fn condition(self) -> String {
        let stored = |s: DeliveryStatus| format!("d.status = '{}'", s.as_str());
        match self {
            DisplayStatus::Pending => {
                format!("{} AND d.attempts = 0", stored(DeliveryStatus::Pending))
            }
            DisplayStatus::Failed => {
                format!("{} AND d.attempts > 0", stored(DeliveryStatus::Pending))
            }
            DisplayStatus::Delivered => stored(DeliveryStatus::Delivered),
            DisplayStatus::Exhausted => stored(DeliveryStatus::Exhausted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_display_follows_attempts() {
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Exhausted,
        ] {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("failed"), None);
        for status in DisplayStatus::ALL {
            assert_eq!(DisplayStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(
            DisplayStatus::of(DeliveryStatus::Pending, 0),
            DisplayStatus::Pending
        );
        assert_eq!(
            DisplayStatus::of(DeliveryStatus::Pending, 2),
            DisplayStatus::Failed
        );
        assert_eq!(
            DisplayStatus::Failed.condition(),
            "d.status = 'pending' AND d.attempts > 0"
        );
        assert_eq!(
            DisplayStatus::words(),
            ["pending", "failed", "delivered", "exhausted"]
        );
    }
}
