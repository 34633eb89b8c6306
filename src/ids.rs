//! Typed, prefixed identifiers. Every id is `<prefix>_<ulid>` (lower case): sortable by
//! creation time, unguessable enough for URLs, and self-describing in logs and payloads.
//! A bare `String` id never crosses a module boundary.

use serde::{Deserialize, Serialize};

/// ULIDs from one monotonic generator: ids made in the same millisecond still sort in
/// the order they were made, so "order by id" is creation order within a process.
fn next_ulid() -> ulid::Ulid {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::generate())
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, example = json!(concat!($prefix, "_01jdq3v8m2x7c9k4t6w0y5z1ab")))]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, greater than every id this process generated before.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, next_ulid().to_string().to_lowercase()))
            }

            /// The first id this kind can have at `unix_ms`: ids made at or after that
            /// millisecond sort at or above it, so a time range is an id range.
            pub fn first_at(unix_ms: i64) -> Self {
                let ulid = ulid::Ulid::from_parts(unix_ms.max(0) as u64, 0);
                Self(format!("{}_{}", $prefix, ulid.to_string().to_lowercase()))
            }

            /// Accepts only well-formed ids of this kind (prefix, then 26 base-32 chars).
            pub fn parse(raw: &str) -> Option<Self> {
                let rest = raw.strip_prefix($prefix)?.strip_prefix('_')?;
                (rest.len() == 26 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| Self(raw.to_ascii_lowercase()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(UserId, "usr");
typed_id!(CampId, "camp");
typed_id!(PatientId, "pat");
typed_id!(RegistrationId, "reg");
typed_id!(VitalsId, "vit");
typed_id!(DoctorId, "doc");
typed_id!(ConsultationId, "cons");
typed_id!(QueueEntryId, "que");
typed_id!(MedicineId, "med");
typed_id!(PrescriptionId, "rx");
typed_id!(SubscriptionId, "sub");
typed_id!(MessageId, "msg");
typed_id!(EventId, "evt");
typed_id!(DeliveryId, "dlv");
typed_id!(AttemptId, "atm");
typed_id!(AuditId, "aud");
typed_id!(
    /// One recorded access to patients' records (the access audit).
    AccessId,
    "acs"
);
typed_id!(JobId, "job");
typed_id!(InboundSourceId, "src");
typed_id!(InboundEventId, "ine");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_foreign_ones_do_not() {
        let id = CampId::generate();
        assert_eq!(CampId::parse(id.as_str()), Some(id.clone()));
        assert!(id.as_str().starts_with("camp_"));
        assert_eq!(PatientId::parse(id.as_str()), None);
        assert_eq!(CampId::parse("camp_123"), None);
        assert_eq!(CampId::parse("camp_../../etc/passwd______"), None);
    }
}
