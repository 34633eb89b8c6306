//! Time as the database stores it: Unix milliseconds in UTC, rendered as RFC 3339.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Serialize, Serializer};
use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// A duration as people read it in a message: `15 s`, `1.5 s`, `250 ms`.
pub fn seconds(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis} ms")
    } else if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// A point in time, stored as Unix milliseconds and serialised as RFC 3339 (UTC, ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.timestamp_millis())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}
impl utoipa::ToSchema for Timestamp {}

impl Type<Any> for Timestamp {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Timestamp {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp(<i64 as Decode<Any>>::decode(value)?))
    }
}

impl<'q> Encode<'q, Any> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Any>>::encode_by_ref(&self.0, buf)
    }
}

/// Where the webhook engine reads "now" for every time decision it makes: when a retry
/// is due, when a lease ends, when an attempt was made, when a subscription failed or
/// was paused. Production uses the system clock. A test makes an adjustable one and
/// moves it forward ([`Clock::advance`]) to drive retries and lease expiry that are
/// minutes apart without waiting; advancing wakes the engines reading it, so due work is
/// picked up at once.
///
/// The adjustable clock is the system clock plus an offset rather than a frozen value:
/// code outside the engine (API writes, `emit`) stamps rows with the system time, and
/// those rows must not look like they come from the future.
#[derive(Clone, Default)]
pub struct Clock(Option<std::sync::Arc<tokio::sync::watch::Sender<i64>>>);

impl Clock {
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that starts at the system time and moves ahead by [`Clock::advance`].
    pub fn adjustable() -> Self {
        Clock(Some(std::sync::Arc::new(tokio::sync::watch::channel(0).0)))
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.now_ms())
    }

    pub fn now_ms(&self) -> i64 {
        let offset = self.0.as_ref().map_or(0, |offset| *offset.borrow());
        Utc::now().timestamp_millis() + offset
    }

    /// Moves an adjustable clock forward by `by` and wakes whoever waits in
    /// [`ClockWatch::changed`]. Does nothing to the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(offset) = &self.0 {
            offset.send_modify(|o| *o += by.as_millis() as i64);
        }
    }

    /// Something to wait on for the clock being moved.
    pub fn watch(&self) -> ClockWatch {
        ClockWatch(self.0.as_ref().map(|offset| offset.subscribe()))
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(offset) => write!(f, "Clock::adjustable(+{} ms)", *offset.borrow()),
        }
    }
}

/// Waits for an adjustable clock to be moved (see [`Clock::watch`]).
pub struct ClockWatch(Option<tokio::sync::watch::Receiver<i64>>);

impl ClockWatch {
    /// Returns when the clock was moved since the last call; never for the system clock
    /// (it only runs).
    pub async fn changed(&mut self) {
        if let Some(offset) = &mut self.0
            && offset.changed().await.is_ok()
        {
            return;
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_adjustable_clock_moves_ahead_and_wakes_its_watchers() {
        let clock = Clock::adjustable();
        let mut watch = clock.watch();
        let before = clock.now_ms();
        clock.advance(std::time::Duration::from_secs(600));
        let moved = clock.now_ms() - before;
        assert!((600_000..610_000).contains(&moved), "moved {moved} ms");
        tokio::time::timeout(std::time::Duration::from_secs(1), watch.changed())
            .await
            .expect("the watcher is woken");
        let system = Clock::system();
        system.advance(std::time::Duration::from_secs(600));
        assert!((system.now_ms() - Timestamp::now().millis()).abs() < 5_000);
        let mut quiet = system.watch();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), quiet.changed())
                .await
                .is_err()
        );
    }
}
