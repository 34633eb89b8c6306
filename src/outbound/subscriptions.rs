//! Subscriptions: who receives which events, where, signed with which secret.
//! Model, validation and SQL for `webhook_subscriptions`.

use super::events::EventType;
use crate::crypto::SecretBox;
use crate::db::{Db, Tx};
use crate::error::ApiError;
use crate::ids::SubscriptionId;
use crate::time::Timestamp;
use crate::validation::FieldErrors;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

/// What a delivery's `data` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// The resource as it is after the write.
    #[default]
    Full,
    /// Identifiers only (`id`, `*_id`, `book_no`): no clinical fields leave the server.
    IdOnly,
}

impl PayloadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Full => "full",
            PayloadMode::IdOnly => "id_only",
        }
    }

    pub fn parse(raw: &str) -> PayloadMode {
        if raw == "id_only" {
            PayloadMode::IdOnly
        } else {
            PayloadMode::Full
        }
    }
}

/// A subscription as the admin API shows it. The secret is never part of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    pub payload: PayloadMode,
    /// One delivery in flight at a time, in sequence order; a failing delivery holds
    /// back the later ones until it is delivered or exhausted.
    pub ordered: bool,
    pub enabled: bool,
    /// Why the subscription was disabled automatically, if it was.
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The answer to create (and rotate): the subscription plus its signing secret, shown
/// this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks / Svix libraries).
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `https://` endpoint that receives the deliveries.
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub payload: PayloadMode,
    /// Ordered delivery: one in flight at a time, strictly in sequence, a failing
    /// delivery holding back the later ones until it is delivered or exhausted. Off by
    /// default: deliveries then go out up to the per-endpoint concurrency at once, so a
    /// receiver may see sequence numbers out of order and sorts by `sequence` itself.
    /// Embedded engine only.
    #[serde(default)]
    pub ordered: bool,
}

/// Checks an event-type filter: every entry must be a known type.
pub fn validate_event_types(errors: &mut FieldErrors, types: &[String]) {
    let unknown: Vec<&String> = types
        .iter()
        .filter(|t| EventType::parse(t).is_none())
        .collect();
    if !unknown.is_empty() {
        let valid: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        errors.add(
            "event_types",
            format!(
                "must list only known event types (unknown: {unknown:?}); the valid types are: {}",
                valid.join(", ")
            ),
        );
    }
}

impl NewSubscription {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        errors.text("url", &self.url, 2000);
        errors.optional_text("description", Some(&self.description), 500);
        validate_event_types(&mut errors, &self.event_types);
        errors.finish()
    }
}

const COLUMNS: &str = "id, url, description, event_types, payload_mode, ordered, enabled, paused_reason, paused_at, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let event_types: String = row.try_get("event_types")?;
    let payload: String = row.try_get("payload_mode")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
        payload: PayloadMode::parse(&payload),
        ordered: row.try_get::<i64, _>("ordered")? != 0,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        paused_at: row.try_get("paused_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a subscription with a sealed copy of `secret`.
pub async fn insert(
    tx: &mut Tx,
    input: &NewSubscription,
    secret: &str,
    secrets: &SecretBox,
) -> Result<Subscription, sqlx::Error> {
    let id = SubscriptionId::generate();
    let now = Timestamp::now();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_subscriptions (id, url, description, event_types, payload_mode, secret_enc, enabled, \
         consecutive_failures, last_sequence, created_at, updated_at, ordered) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, 0, 0, $7, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(&id)
    .bind(&input.url)
    .bind(&input.description)
    .bind(json!(input.event_types).to_string())
    .bind(input.payload.as_str())
    .bind(secrets.seal(secret, id.as_str()))
    .bind(now)
    .bind(i64::from(input.ordered))
    .fetch_one(tx.conn())
    .await?;
    from_row(&row)
}

pub async fn get(db: &Db, id: &SubscriptionId) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Subscription>, i64), sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_subscriptions")
        .fetch_one(db.pool())
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}

/// `PUT /webhooks/subscriptions/{id}`: any subset of the fields.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub payload: Option<PayloadMode>,
    /// Turns ordered delivery on or off (see `NewSubscription.ordered`).
    pub ordered: Option<bool>,
}

impl SubscriptionUpdate {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        if let Some(url) = &self.url {
            errors.text("url", url, 2000);
        }
        errors.optional_text("description", self.description.as_deref(), 500);
        if let Some(types) = &self.event_types {
            validate_event_types(&mut errors, types);
        }
        errors.finish()
    }
}

pub async fn update(
    tx: &mut Tx,
    id: &SubscriptionId,
    input: &SubscriptionUpdate,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET url = COALESCE($2, url), description = COALESCE($3, description), \
         event_types = COALESCE($4, event_types), payload_mode = COALESCE($5, payload_mode), updated_at = $6, \
         ordered = COALESCE($7, ordered) WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(input.url.as_deref())
    .bind(input.description.as_deref())
    .bind(input.event_types.as_ref().map(|t| json!(t).to_string()))
    .bind(input.payload.map(PayloadMode::as_str))
    .bind(Timestamp::now())
    .bind(input.ordered.map(i64::from))
    .fetch_optional(tx.conn())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes the subscription with its deliveries and attempts (messages stay).
pub async fn delete(tx: &mut Tx, id: &SubscriptionId) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM webhook_attempts WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    let deleted = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

/// Enables or disables. Enabling clears the pause and the failure streak and makes the
/// held deliveries due `now` (the engine's clock), so they go out in sequence order.
pub async fn set_enabled(
    tx: &mut Tx,
    id: &SubscriptionId,
    enabled: bool,
    now: Timestamp,
) -> Result<Option<Subscription>, sqlx::Error> {
    let sql = if enabled {
        format!(
            "UPDATE webhook_subscriptions SET enabled = 1, consecutive_failures = 0, paused_reason = NULL, \
             paused_at = NULL, updated_at = $2 WHERE id = $1 RETURNING {COLUMNS}"
        )
    } else {
        format!(
            "UPDATE webhook_subscriptions SET enabled = 0, updated_at = $2 WHERE id = $1 RETURNING {COLUMNS}"
        )
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(now)
        .fetch_optional(tx.conn())
        .await?;
    if enabled && row.is_some() {
        super::store::make_due(tx, id, now).await?;
    }
    row.as_ref().map(from_row).transpose()
}

/// Replaces the secret; the previous one keeps signing until `overlap_until`.
pub async fn rotate_secret(
    tx: &mut Tx,
    id: &SubscriptionId,
    new_secret: &str,
    overlap_until: Timestamp,
    secrets: &SecretBox,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET previous_secret_enc = secret_enc, previous_secret_until = $3, \
         secret_enc = $2, updated_at = $4 WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(secrets.seal(new_secret, id.as_str()))
    .bind(overlap_until)
    .bind(Timestamp::now())
    .fetch_optional(tx.conn())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Failure streak, pause state and backlog of one subscription.
pub async fn failure_stats(
    db: &Db,
    id: &SubscriptionId,
) -> Result<Option<super::backend::FailureStats>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.consecutive_failures, s.last_failure_at, s.last_success_at, s.enabled, s.paused_reason, s.paused_at, \
         (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.status = $2) AS pending \
         FROM webhook_subscriptions s WHERE s.id = $1",
    )
    .bind(id)
    .bind(super::store::DeliveryStatus::Pending)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let paused_reason: Option<String> = row.try_get("paused_reason")?;
        Ok(super::backend::FailureStats {
            subscription_id: id.clone(),
            consecutive_failures: row.try_get("consecutive_failures")?,
            last_failure_at: row.try_get("last_failure_at")?,
            last_success_at: row.try_get("last_success_at")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            auto_paused: paused_reason.is_some(),
            paused_reason,
            paused_at: row.try_get("paused_at")?,
            pending_deliveries: row.try_get("pending")?,
        })
    })
    .transpose()
}
