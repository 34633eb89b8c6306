//! `FakeSvix`: an in-memory stand-in for the hosted Svix API (which cannot run in tests),
//! served over real HTTP on 127.0.0.1 like [`TestReceiver`](super::receiver::TestReceiver).
//!
//! It speaks the part of Svix's published OpenAPI document that EHRS needs, with the same
//! paths, camelCase JSON fields, status codes, error bodies (`HttpErrorOut`,
//! `HTTPValidationError`) and idempotency rules, so the official `svix` crate works against
//! it unchanged: applications, event types, endpoints (secrets, send-example, recover,
//! stats), messages, attempts and resends. Paths work with or without a trailing slash.
//!
//! Deliveries are real: each is POSTed to the endpoint's URL in a spawned task, signed
//! (`svix-id`, `svix-timestamp`, `svix-signature`) with the endpoint's secret, and recorded
//! as a `MessageAttemptOut`.
//!
//! Where the open-source svix-server (`server/svix-server` of svix/svix-webhooks, checked
//! against release v2.0.0) behaves in a way EHRS depends on, the fake does the same, and
//! the code says which real behaviour it mirrors: channel matching
//! (`CreateMessageApp::filtered_endpoints`), `send-example` (a message without channels),
//! routes that do not exist (`replay-missing` is cloud-only: 404), the retry schedule with
//! its operational webhooks (`worker.rs`: `failing` after the 4th failed attempt,
//! `exhausted` after the last, `recovered` on a success from the 5th attempt on), retries
//! of a disabled endpoint dropped, manual attempts (resend, recover) never retried.
//! The retry schedule is the server's `retry_schedule`; the fake's default is `[]` (a
//! failure is final at once, and `exhausted`), tests shorten it with
//! [`FakeSvix::set_retry_schedule`].
//!
//! Switches for tests: [`FakeSvix::set_down`] (503 to everything), [`FakeSvix::rate_limit_next`]
//! (429 with `Retry-After: 1`), [`FakeSvix::send_operational_webhooks`], and request
//! counts per route, named like the OpenAPI paths: `"POST /api/v1/app/{app_id}/msg"`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running fake Svix server. Cheap to clone; all clones share the state.
#[derive(Clone)]
pub struct FakeSvix {
    url: String,
    token: String,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Inner {
    down: bool,
    rate_limited: usize,
    requests: BTreeMap<String, usize>,
    /// (idempotency-key, request URI) -> the first successful response.
    idempotent: HashMap<(String, String), (StatusCode, Value)>,
    seq: u64,
    apps: Vec<Value>,
    event_types: BTreeMap<String, Value>,
    endpoints: Vec<Endpoint>,
    messages: Vec<Message>,
    attempts: Vec<Value>,
    /// (msg id, endpoint id) of deliveries under way.
    in_flight: Vec<(String, String)>,
    resend_calls: Vec<Value>,
    recover_calls: Vec<Value>,
    /// The server's `retry_schedule`: delays between scheduled attempts.
    retry_schedule: Vec<Duration>,
    /// Where operational webhooks go (`operational_webhook_address` plus the endpoint
    /// there) and the secret they are signed with.
    ops_target: Option<(String, String)>,
    /// Operational webhooks sent, as `{"type", "data"}`.
    ops_sent: Vec<Value>,
}

struct Endpoint {
    app_id: String,
    out: Value,
    secret: String,
    /// Rotated-out secrets and when they stop signing (the rotation grace period).
    old_secrets: Vec<(String, DateTime<Utc>)>,
    deleted: bool,
}

struct Message {
    app_id: String,
    out: Value,
    /// The payload exactly as the client sent it: that is what gets delivered and signed.
    raw: String,
}

/// One delivery to run outside the lock.
struct Job {
    msg_id: String,
    endpoint_id: String,
    url: String,
    secrets: Vec<String>,
    payload: String,
    trigger: u8,
    /// Scheduled attempts made before this one (svix-server's `MessageTask::attempt_count`).
    attempt_count: usize,
    app_uid: Value,
    event_id: Value,
}

struct ApiError(StatusCode, Value);
type Reply = Result<(StatusCode, Value), ApiError>;

fn http_error(status: StatusCode, code: &str, detail: impl Into<String>) -> ApiError {
    ApiError(status, json!({"code": code, "detail": detail.into()}))
}

fn not_found(detail: &str) -> ApiError {
    http_error(StatusCode::NOT_FOUND, "not_found", detail)
}

fn conflict(detail: &str) -> ApiError {
    http_error(StatusCode::CONFLICT, "conflict", detail)
}

/// 422 with Svix's `HTTPValidationError` body.
fn invalid(loc: &[&str], msg: impl Into<String>) -> ApiError {
    let item = json!({"loc": loc, "msg": msg.into(), "type": "value_error"});
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, json!({"detail": [item]}))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time_of(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Svix names: `^[a-zA-Z0-9\-_.]+$`, at most 256 characters.
fn valid_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    match svix::webhooks::Webhook::new(secret) {
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(&["body", "secret"], "Invalid secret format")),
    }
}

fn check_url(url: &str) -> Result<(), ApiError> {
    match url::Url::parse(url) {
        Ok(u) if ["http", "https"].contains(&u.scheme()) => Ok(()),
        Ok(_) => Err(invalid(
            &["body", "url"],
            "Endpoint URL schemes must be http or https",
        )),
        Err(e) => Err(invalid(&["body", "url"], format!("invalid url: {e}"))),
    }
}

fn check_set(field: &str, set: &Option<BTreeSet<String>>, max: usize) -> Result<(), ApiError> {
    match set {
        Some(s) if s.is_empty() || s.len() > max => Err(invalid(
            &["body", field],
            format!("{field} must have at least 1 and at most {max} items, or be null"),
        )),
        _ => Ok(()),
    }
}

/// Parses a JSON body, reporting errors like Svix: 422, `loc: ["body", <path>...]`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut loc = vec!["body".to_owned()];
        let path = e.path().to_string();
        if path != "." {
            loc.extend(path.split('.').map(str::to_owned));
        }
        let item =
            json!({"loc": loc, "msg": e.inner().to_string(), "type": "value_error.jsondecode"});
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, json!({"detail": [item]}))
    })
}

/// Names a request by its OpenAPI path, e.g. `GET /api/v1/app/{app_id}/endpoint/{endpoint_id}`:
/// a segment that follows the literal `app`, `event-type`, `msg` or `endpoint` is a parameter.
fn route_name(method: &Method, segs: &[&str]) -> String {
    let mut name = format!("{method} /api/v1");
    let mut prev_literal = None;
    for seg in segs {
        let param = match prev_literal {
            Some("app") => Some("{app_id}"),
            Some("event-type") => Some("{event_type_name}"),
            Some("msg") => Some("{msg_id}"),
            Some("endpoint") => Some("{endpoint_id}"),
            _ => None,
        };
        name.push('/');
        name.push_str(param.unwrap_or(*seg));
        prev_literal = if param.is_some() { None } else { Some(*seg) };
    }
    name
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| v == "true")
    }

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(&["query", name], "invalid datetime"))
            })
            .transpose()
    }

    /// `limit`: default 50, 1..=250 (Svix rejects larger limits rather than capping them).
    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit").map(str::parse::<usize>) {
            None => Ok(50),
            Some(Ok(n)) if (1..=250).contains(&n) => Ok(n),
            _ => Err(invalid(
                &["query", "limit"],
                "Given limit must not exceed 250",
            )),
        }
    }

    fn status(&self) -> Result<Option<i64>, ApiError> {
        self.get("status")
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(&["query", "status"], "invalid status"))
            })
            .transpose()
    }

    /// `event_types`, repeated, as `event_types[]`, or comma-separated (what the svix crate sends).
    fn event_types(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == "event_types" || k.starts_with("event_types["))
            .flat_map(|(_, v)| v.split(',').map(str::to_owned))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The message filters shared by message, endpoint-message and attempt lists.
    fn accepts_msg(&self, msg: &Value) -> bool {
        let has = |field: &str, wanted: &str| {
            msg[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == wanted))
        };
        let types = self.event_types();
        self.get("channel").is_none_or(|c| has("channels", c))
            && self.get("tag").is_none_or(|t| has("tags", t))
            && (types.is_empty() || types.contains(str_of(&msg["eventType"])))
    }

    /// `before` / `after` against an item's timestamp.
    fn accepts_time(&self, timestamp: &Value) -> Result<bool, ApiError> {
        let at = time_of(timestamp);
        Ok(self.time("before")?.is_none_or(|b| at < b)
            && self.time("after")?.is_none_or(|a| at > a))
    }
}

/// Svix's cursor pagination: `items` are (sort key, item); the iterator is the last key of a
/// page, `prevIterator` is `-` + the first key; `done` is true on the last page.
fn page(mut items: Vec<(String, Value)>, q: &Query, descending: bool) -> Reply {
    let limit = q.limit()?;
    let descending = match q.get("order") {
        Some("ascending") => false,
        Some("descending") => true,
        _ => descending,
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let iterator = q.get("iterator");
    let (backwards, cursor) = match iterator.and_then(|i| i.strip_prefix('-')) {
        Some(cursor) => (true, Some(cursor)),
        None => (false, iterator),
    };
    // Is `key` after the cursor in listing order?
    let after = |key: &str, cursor: &str| {
        if descending {
            key < cursor
        } else {
            key > cursor
        }
    };
    let (data, done) = match cursor {
        Some(c) if backwards => {
            let before: Vec<_> = items
                .into_iter()
                .filter(|(k, _)| k != c && !after(k, c))
                .collect();
            let skip = before.len().saturating_sub(limit);
            (before[skip..].to_vec(), before.len() <= limit)
        }
        _ => {
            let rest: Vec<_> = items
                .into_iter()
                .filter(|(k, _)| cursor.is_none_or(|c| after(k, c)))
                .collect();
            let done = rest.len() <= limit;
            (rest.into_iter().take(limit).collect::<Vec<_>>(), done)
        }
    };
    let body = json!({
        "iterator": data.last().map(|(k, _)| k.clone()),
        "prevIterator": data.first().map(|(k, _)| format!("-{k}")),
        "done": done,
        "data": data.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    Ok((StatusCode::OK, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationIn {
    name: String,
    uid: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    throttle_rate: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypeUpsertIn {
    description: String,
    archived: Option<bool>,
    deprecated: Option<bool>,
    schemas: Option<Value>,
    feature_flags: Option<BTreeSet<String>>,
    group_name: Option<String>,
}

/// EndpointIn (POST) and EndpointUpsertIn (PUT, which has no `secret`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointIn {
    url: String,
    description: Option<String>,
    uid: Option<String>,
    disabled: Option<bool>,
    #[serde(alias = "filterTypes")]
    event_types: Option<BTreeSet<String>>,
    channels: Option<BTreeSet<String>>,
    metadata: Option<BTreeMap<String, String>>,
    throttle_rate: Option<u16>,
    secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    event_id: Option<String>,
    event_type: String,
    payload: Box<RawValue>,
    channels: Option<BTreeSet<String>>,
    tags: Option<BTreeSet<String>>,
    application: Option<ApplicationIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretRotateIn {
    key: Option<String>,
    grace_period_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventExampleIn {
    event_type: String,
}

#[derive(Deserialize)]
struct RecoverIn {
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

impl Endpoint {
    fn id(&self) -> &str {
        str_of(&self.out["id"])
    }

    /// Would Svix send a message with this type and these channels here?
    fn wants(&self, event_type: &str, channels: &Value) -> bool {
        let types_ok = self.out["eventTypes"]
            .as_array()
            .is_none_or(|t| t.is_empty() || t.iter().any(|t| t == event_type));
        let channels_ok = self.out["channels"].as_array().is_none_or(|mine| {
            channels
                .as_array()
                .is_some_and(|theirs| theirs.iter().any(|c| mine.contains(c)))
        });
        !self.deleted && self.out["disabled"] != true && types_ok && channels_ok
    }
}

impl Inner {
    /// A Svix-shaped id (`msg_` + 27 alphanumerics) that sorts in creation order.
    fn new_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        self.seq += 1;
        let noise: String = (0..17)
            .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
            .collect();
        format!("{prefix}_{:010}{noise}", self.seq)
    }

    fn app_id(&self, id_or_uid: &str) -> Result<String, ApiError> {
        self.apps
            .iter()
            .find(|a| a["id"] == id_or_uid || a["uid"] == id_or_uid)
            .map(|a| str_of(&a["id"]).to_owned())
            .ok_or_else(|| not_found("Application not found"))
    }

    fn endpoint(&self, app_id: &str, id_or_uid: &str) -> Result<usize, ApiError> {
        self.endpoints
            .iter()
            .position(|e| {
                e.app_id == app_id
                    && !e.deleted
                    && (e.out["id"] == id_or_uid || e.out["uid"] == id_or_uid)
            })
            .ok_or_else(|| not_found("Endpoint not found"))
    }

    /// A message by id or eventId.
    fn message(&self, app_id: &str, id_or_event_id: &str) -> Result<usize, ApiError> {
        self.messages
            .iter()
            .position(|m| {
                m.app_id == app_id
                    && (m.out["id"] == id_or_event_id || m.out["eventId"] == id_or_event_id)
            })
            .ok_or_else(|| not_found("Message not found"))
    }

    fn create_app(&mut self, input: ApplicationIn) -> Value {
        let (id, at) = (self.new_id("app"), now());
        let app = json!({
            "id": id, "uid": input.uid, "name": input.name, "metadata": input.metadata.unwrap_or_default(),
            "throttleRate": input.throttle_rate, "createdAt": at, "updatedAt": at,
        });
        self.apps.push(app.clone());
        app
    }

    fn check_endpoint_uid(
        &self,
        app_id: &str,
        uid: &Value,
        except: Option<usize>,
    ) -> Result<(), ApiError> {
        let taken = self.endpoints.iter().enumerate().any(|(i, e)| {
            Some(i) != except
                && e.app_id == app_id
                && !e.deleted
                && !uid.is_null()
                && e.out["uid"] == *uid
        });
        if taken {
            Err(conflict("A conflict has occurred"))
        } else {
            Ok(())
        }
    }

    /// An endpoint may only filter on event types that exist and are not archived.
    fn check_event_types(&self, types: &Value) -> Result<(), ApiError> {
        let names = types
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let missing: Vec<&str> = names
            .filter(|t| {
                self.event_types
                    .get(*t)
                    .is_none_or(|et| et["archived"] == true)
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let msg = format!(
            "The following event types don't exist: {}",
            missing.join(", ")
        );
        Err(invalid(&["body", "eventTypes"], msg))
    }

    /// Queues a delivery of message `m` to endpoint `e`; a disabled or deleted endpoint is
    /// skipped silently (svix-server: "No disabled or deleted endpoints ever", also for
    /// manual attempts).
    fn job(&mut self, m: usize, e: usize, trigger: u8, jobs: &mut Vec<Job>) {
        self.job_at(m, e, trigger, 0, jobs);
    }

    fn job_at(
        &mut self,
        m: usize,
        e: usize,
        trigger: u8,
        attempt_count: usize,
        jobs: &mut Vec<Job>,
    ) {
        let (msg, endpoint) = (&self.messages[m], &self.endpoints[e]);
        if endpoint.out["disabled"] == true || endpoint.deleted {
            return;
        }
        let app_uid = self
            .apps
            .iter()
            .find(|a| a["id"] == msg.app_id.as_str())
            .map_or(Value::Null, |a| a["uid"].clone());
        let current = Utc::now();
        let old = endpoint
            .old_secrets
            .iter()
            .filter(|(_, until)| *until > current);
        let job = Job {
            msg_id: str_of(&msg.out["id"]).to_owned(),
            endpoint_id: endpoint.id().to_owned(),
            url: str_of(&endpoint.out["url"]).to_owned(),
            secrets: std::iter::once(endpoint.secret.clone())
                .chain(old.map(|(s, _)| s.clone()))
                .collect(),
            payload: msg.raw.clone(),
            trigger,
            attempt_count,
            app_uid,
            event_id: msg.out["eventId"].clone(),
        };
        self.in_flight
            .push((job.msg_id.clone(), job.endpoint_id.clone()));
        jobs.push(job);
    }

    fn new_message(&mut self, app_id: &str, input: MessageIn, raw: String) -> usize {
        let out = json!({
            "id": self.new_id("msg"), "eventId": input.event_id, "eventType": input.event_type,
            "payload": serde_json::from_str::<Value>(&raw).unwrap_or_default(),
            "channels": input.channels, "tags": input.tags, "timestamp": now(),
        });
        self.messages.push(Message {
            app_id: app_id.to_owned(),
            out,
            raw,
        });
        self.messages.len() - 1
    }

    /// The status of the latest attempt of `msg_id` on `endpoint_id` and its `nextAttempt`
    /// (set while a scheduled retry is due); 3 (sending) while only in flight.
    fn delivery_status(&self, msg_id: &str, endpoint_id: &str) -> Option<(i64, Value)> {
        let latest = self
            .attempts
            .iter()
            .rev()
            .find(|a| a["msgId"] == msg_id && a["endpointId"] == endpoint_id);
        match latest {
            Some(a) => Some((a["status"].as_i64()?, a["nextAttempt"].clone())),
            None => self
                .in_flight
                .iter()
                .any(|(m, e)| m == msg_id && e == endpoint_id)
                .then_some((3, Value::Null)),
        }
    }

    fn dispatch(
        &mut self,
        method: &Method,
        segs: &[&str],
        q: &Query,
        body: &[u8],
        jobs: &mut Vec<Job>,
    ) -> Reply {
        match (method.as_str(), segs) {
            ("GET", ["health"]) => Ok((StatusCode::NO_CONTENT, Value::Null)),
            ("POST", ["app"]) => {
                let input: ApplicationIn = parse(body)?;
                let existing = input
                    .uid
                    .as_ref()
                    .and_then(|uid| self.apps.iter().find(|a| a["uid"] == **uid));
                match existing {
                    Some(app) if q.flag("get_if_exists", false) => {
                        Ok((StatusCode::OK, app.clone()))
                    }
                    Some(_) => Err(conflict(
                        "An application with that id or uid already exists",
                    )),
                    None => Ok((StatusCode::CREATED, self.create_app(input))),
                }
            }
            ("GET", ["app", app]) => {
                let id = self.app_id(app)?;
                Ok((
                    StatusCode::OK,
                    self.apps
                        .iter()
                        .find(|a| a["id"] == id.as_str())
                        .cloned()
                        .unwrap_or_default(),
                ))
            }
            ("GET", ["event-type"]) => {
                let archived = q.flag("include_archived", false);
                let items = self
                    .event_types
                    .iter()
                    .filter(|(_, et)| archived || et["archived"] != true);
                let items = items.map(|(name, et)| {
                    let mut et = et.clone();
                    if !q.flag("with_content", true) {
                        et["schemas"] = Value::Null;
                    }
                    (name.clone(), et)
                });
                page(items.collect(), q, false)
            }
            ("GET", ["event-type", name]) => {
                let et = self
                    .event_types
                    .get(*name)
                    .ok_or_else(|| not_found("Event type not found"))?;
                Ok((StatusCode::OK, et.clone()))
            }
            ("PUT", ["event-type", name]) => {
                if !valid_name(name) {
                    return Err(invalid(
                        &["path", "event_type_name"],
                        "Invalid event type name",
                    ));
                }
                let input: EventTypeUpsertIn = parse(body)?;
                let at = now();
                let previous = self.event_types.get(*name);
                let status = if previous.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let created = previous.map_or(json!(at), |p| p["createdAt"].clone());
                let et = json!({
                    "name": name, "description": input.description, "archived": input.archived.unwrap_or(false),
                    "deprecated": input.deprecated.unwrap_or(false), "schemas": input.schemas,
                    "featureFlags": input.feature_flags, "groupName": input.group_name,
                    "createdAt": created, "updatedAt": at,
                });
                self.event_types.insert(name.to_string(), et.clone());
                Ok((status, et))
            }
            ("POST", ["app", app, "msg"]) => self.create_message(app, q, body, jobs),
            ("GET", ["app", app, "msg"]) => {
                let app_id = self.app_id(app)?;
                let mut items = Vec::new();
                for m in self
                    .messages
                    .iter()
                    .filter(|m| m.app_id == app_id && q.accepts_msg(&m.out))
                {
                    if q.accepts_time(&m.out["timestamp"])? {
                        items.push((str_of(&m.out["id"]).to_owned(), message_out(&m.out, q)));
                    }
                }
                page(items, q, true)
            }
            ("GET", ["app", app, "msg", msg]) => {
                let m = self.message(&self.app_id(app)?, msg)?;
                Ok((StatusCode::OK, message_out(&self.messages[m].out, q)))
            }
            ("GET", ["app", app, "msg", msg, "endpoint"]) => {
                let app_id = self.app_id(app)?;
                let msg_id =
                    str_of(&self.messages[self.message(&app_id, msg)?].out["id"]).to_owned();
                let mut items = Vec::new();
                for e in self.endpoints.iter().filter(|e| e.app_id == app_id) {
                    // svix-server (`list_attempted_destinations`): the latest attempt's own
                    // status (`fail` while a retry is scheduled) with its `nextAttempt`.
                    if let Some((status, next)) = self.delivery_status(&msg_id, e.id()) {
                        let mut out = e.out.clone();
                        out.as_object_mut().unwrap().remove("metadata");
                        with_status(&mut out, status, next);
                        items.push((e.id().to_owned(), out));
                    }
                }
                page(items, q, false)
            }
            ("POST", ["app", app, "msg", msg, "endpoint", ep, "resend"]) => {
                let app_id = self.app_id(app)?;
                let (m, e) = (self.message(&app_id, msg)?, self.endpoint(&app_id, ep)?);
                self.job(m, e, 1, jobs);
                let call = json!({"appId": app_id, "msgId": self.messages[m].out["id"], "endpointId": self.endpoints[e].id()});
                self.resend_calls.push(call);
                Ok((StatusCode::ACCEPTED, json!({})))
            }
            ("GET", ["app", app, "endpoint"]) => {
                let app_id = self.app_id(app)?;
                let live = self
                    .endpoints
                    .iter()
                    .filter(|e| e.app_id == app_id && !e.deleted);
                page(
                    live.map(|e| (e.id().to_owned(), e.out.clone())).collect(),
                    q,
                    true,
                )
            }
            ("POST", ["app", app, "endpoint"]) => {
                let app_id = self.app_id(app)?;
                let input: EndpointIn = parse(body)?;
                if let Some(secret) = &input.secret {
                    check_secret(secret)?;
                }
                let endpoint = self.new_endpoint(&app_id, input, None)?;
                Ok((StatusCode::CREATED, endpoint))
            }
            (_, ["app", app, "endpoint", ep]) => self.endpoint_crud(method, app, ep, body),
            ("GET", ["app", app, "endpoint", ep, "secret"]) => {
                let e = self.endpoint(&self.app_id(app)?, ep)?;
                Ok((StatusCode::OK, json!({"key": self.endpoints[e].secret})))
            }
            ("POST", ["app", app, "endpoint", ep, "secret", "rotate"]) => {
                let e = self.endpoint(&self.app_id(app)?, ep)?;
                let input: SecretRotateIn = parse(body)?;
                let key = input.key.unwrap_or_else(new_secret);
                check_secret(&key)?;
                let grace =
                    chrono::Duration::seconds(input.grace_period_seconds.unwrap_or(86_400).into());
                let endpoint = &mut self.endpoints[e];
                let old = std::mem::replace(&mut endpoint.secret, key.clone());
                endpoint.old_secrets.push((old, Utc::now() + grace));
                // The OpenAPI document says 204, but svix 2.9.1's `rotate_secret` parses an
                // `EndpointSecretOut` body; 200 with the new key satisfies both.
                Ok((StatusCode::OK, json!({"key": key})))
            }
            ("POST", ["app", app, "endpoint", ep, "send-example"]) => {
                let app_id = self.app_id(app)?;
                let e = self.endpoint(&app_id, ep)?;
                let input: EventExampleIn = parse(body)?;
                // svix-server's `send_example` reads only `eventType` (a `payload` or
                // `exampleIndex` is ignored) and sends the first example of schema "1".
                let payload = match input.event_type.as_str() {
                    "svix.ping" => json!({"success": true}),
                    name => {
                        let et = self
                            .event_types
                            .get(name)
                            .ok_or_else(|| not_found("Event type not found"))?;
                        let example = et["schemas"]["1"]["examples"].get(0);
                        example.cloned().ok_or_else(|| {
                            let detail =
                                "Unable to generate example message from event-type schema";
                            http_error(StatusCode::BAD_REQUEST, "invalid_scheme", detail)
                        })?
                    }
                };
                let raw = payload.to_string();
                let input = MessageIn {
                    event_id: None,
                    event_type: input.event_type,
                    payload: RawValue::from_string(raw.clone()).unwrap(),
                    channels: None,
                    tags: None,
                    application: None,
                };
                let m = self.new_message(&app_id, input, raw);
                // svix-server creates the example as an ordinary (scheduled) message with NO
                // channels, forced to this endpoint, so the usual filters apply: an endpoint
                // that listens on channels does not get it (`filtered_endpoints`). 200, not 202.
                let out = self.messages[m].out.clone();
                if self.endpoints[e].wants(str_of(&out["eventType"]), &out["channels"]) {
                    self.job(m, e, 0, jobs);
                }
                Ok((StatusCode::OK, out))
            }
            ("POST", ["app", app, "endpoint", ep, "recover"]) => self.recover(app, ep, body, jobs),
            ("GET", ["app", app, "endpoint", ep, "stats"]) => {
                let e = self.endpoint(&self.app_id(app)?, ep)?;
                let id = self.endpoints[e].id();
                let mut counts = [0i64; 5];
                for a in self.attempts.iter().filter(|a| a["endpointId"] == id) {
                    let at = time_of(&a["timestamp"]);
                    if q.time("since")?.is_none_or(|s| at >= s)
                        && q.time("until")?.is_none_or(|u| at < u)
                    {
                        counts[a["status"].as_u64().unwrap_or(2) as usize] += 1;
                    }
                }
                counts[3] += self.in_flight.iter().filter(|(_, e)| e == id).count() as i64;
                let [success, pending, fail, sending, canceled] = counts;
                Ok((
                    StatusCode::OK,
                    json!({"success": success, "pending": pending, "fail": fail, "sending": sending, "canceled": canceled}),
                ))
            }
            ("GET", ["app", app, "endpoint", ep, "msg"]) => {
                let app_id = self.app_id(app)?;
                let endpoint_id = self.endpoints[self.endpoint(&app_id, ep)?].id().to_owned();
                let mut items = Vec::new();
                for m in self
                    .messages
                    .iter()
                    .filter(|m| m.app_id == app_id && q.accepts_msg(&m.out))
                {
                    let Some((status, next)) =
                        self.delivery_status(str_of(&m.out["id"]), &endpoint_id)
                    else {
                        continue;
                    };
                    // svix-server (`EndpointMessageOut::from_attempt_and_msg`): a message whose
                    // latest attempt has a `nextAttempt` is `sending` (3), also for `?status=`.
                    let status = if next.is_null() { status } else { 3 };
                    if q.status()?.is_none_or(|s| s == status)
                        && q.accepts_time(&m.out["timestamp"])?
                    {
                        let mut out = message_out(&m.out, q);
                        with_status(&mut out, status, next);
                        items.push((str_of(&m.out["id"]).to_owned(), out));
                    }
                }
                page(items, q, true)
            }
            ("GET", ["app", app, "attempt", kind @ ("endpoint" | "msg"), id]) => {
                let app_id = self.app_id(app)?;
                let (field, id) = if *kind == "endpoint" {
                    (
                        "endpointId",
                        self.endpoints[self.endpoint(&app_id, id)?].id().to_owned(),
                    )
                } else {
                    (
                        "msgId",
                        str_of(&self.messages[self.message(&app_id, id)?].out["id"]).to_owned(),
                    )
                };
                let mut items = Vec::new();
                for a in self.attempts.iter().filter(|a| a[field] == id.as_str()) {
                    let msg = &self
                        .messages
                        .iter()
                        .find(|m| m.out["id"] == a["msgId"])
                        .unwrap()
                        .out;
                    let wanted = q.status()?.is_none_or(|s| a["status"] == s)
                        && q.get("endpoint_id").is_none_or(|e| a["endpointId"] == e)
                        && q.accepts_msg(msg)
                        && q.accepts_time(&a["timestamp"])?;
                    if wanted {
                        let mut out = a.clone();
                        if !q.flag("with_content", true) {
                            out["response"] = json!("{}");
                        }
                        if q.flag("with_msg", false) {
                            // Svix never includes the message payload here.
                            out["msg"] = msg.clone();
                            out["msg"]["payload"] = json!({});
                        }
                        items.push((str_of(&a["id"]).to_owned(), out));
                    }
                }
                page(items, q, true)
            }
            // svix-server's router has no fallback: a route it does not have (such as the
            // cloud-only `replay-missing`) is axum's bare 404 with an empty body.
            _ => Err(ApiError(StatusCode::NOT_FOUND, Value::Null)),
        }
    }

    fn create_message(&mut self, app: &str, q: &Query, body: &[u8], jobs: &mut Vec<Job>) -> Reply {
        let mut input: MessageIn = parse(body)?;
        if !valid_name(&input.event_type) {
            return Err(invalid(&["body", "eventType"], "Invalid event type name"));
        }
        if !input.payload.get().trim_start().starts_with('{') {
            return Err(invalid(&["body", "payload"], "Payload must be an object."));
        }
        check_set("channels", &input.channels, 10)?;
        let app_id = match (self.app_id(app), input.application.take()) {
            (Ok(id), _) => id,
            // `application` creates the app when the path names none (its uid is the path's).
            (Err(_), Some(mut app_in)) => {
                if *app_in.uid.get_or_insert_with(|| app.to_string()) != app {
                    return Err(invalid(
                        &["body", "application", "uid"],
                        "application_uid_mismatch",
                    ));
                }
                str_of(&self.create_app(app_in)["id"]).to_owned()
            }
            (Err(e), None) => return Err(e),
        };
        // eventId is unique per application: a repeat under another idempotency key is a 409.
        let seen = |m: &Message| m.app_id == app_id && m.out["eventId"] == json!(input.event_id);
        if input.event_id.is_some() && self.messages.iter().any(seen) {
            return Err(conflict("A conflict has occurred"));
        }
        let raw = input.payload.get().to_owned();
        let m = self.new_message(&app_id, input, raw);
        let (event_type, channels) = (
            self.messages[m].out["eventType"].clone(),
            self.messages[m].out["channels"].clone(),
        );
        let targets: Vec<usize> = (0..self.endpoints.len())
            .filter(|&e| {
                self.endpoints[e].app_id == app_id
                    && self.endpoints[e].wants(str_of(&event_type), &channels)
            })
            .collect();
        for e in targets {
            self.job(m, e, 0, jobs);
        }
        Ok((StatusCode::ACCEPTED, message_out(&self.messages[m].out, q)))
    }

    /// Creates an endpoint (POST, or PUT of an unknown id/uid) or replaces one (PUT).
    fn new_endpoint(
        &mut self,
        app_id: &str,
        input: EndpointIn,
        replace: Option<usize>,
    ) -> Result<Value, ApiError> {
        check_url(&input.url)?;
        check_set("eventTypes", &input.event_types, usize::MAX)?;
        self.check_event_types(&json!(input.event_types))?;
        check_set("channels", &input.channels, 10)?;
        let uid = json!(input.uid);
        self.check_endpoint_uid(app_id, &uid, replace)?;
        let at = now();
        let (id, created) = match replace {
            Some(e) => (
                self.endpoints[e].out["id"].clone(),
                self.endpoints[e].out["createdAt"].clone(),
            ),
            None => (json!(self.new_id("ep")), json!(at)),
        };
        let out = json!({
            "id": id, "uid": uid, "url": input.url, "description": input.description.unwrap_or_default(),
            "disabled": input.disabled.unwrap_or(false), "eventTypes": input.event_types, "channels": input.channels,
            "metadata": input.metadata.unwrap_or_default(), "throttleRate": input.throttle_rate,
            "createdAt": created, "updatedAt": at,
        });
        match replace {
            Some(e) => self.endpoints[e].out = out.clone(),
            None => self.endpoints.push(Endpoint {
                app_id: app_id.to_owned(),
                out: out.clone(),
                secret: input.secret.unwrap_or_else(new_secret),
                old_secrets: Vec::new(),
                deleted: false,
            }),
        }
        Ok(out)
    }

    fn endpoint_crud(&mut self, method: &Method, app: &str, ep: &str, body: &[u8]) -> Reply {
        let app_id = self.app_id(app)?;
        let found = self.endpoint(&app_id, ep);
        match (method.as_str(), found) {
            ("PUT", found) => {
                let mut input: EndpointIn = parse(body)?;
                input.secret = None;
                if found.is_err() && !ep.starts_with("ep_") {
                    input.uid.get_or_insert_with(|| ep.to_owned());
                }
                let status = if found.is_ok() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                Ok((status, self.new_endpoint(&app_id, input, found.ok())?))
            }
            (_, Err(e)) => Err(e),
            ("GET", Ok(e)) => Ok((StatusCode::OK, self.endpoints[e].out.clone())),
            ("DELETE", Ok(e)) => {
                self.endpoints[e].deleted = true;
                Ok((StatusCode::NO_CONTENT, Value::Null))
            }
            ("PATCH", Ok(e)) => {
                // EndpointPatch: an absent field stays as it is; an explicit null clears it.
                let patch: serde_json::Map<String, Value> = parse(body)?;
                let mut out = self.endpoints[e].out.clone();
                for (field, value) in patch {
                    let required =
                        ["url", "description", "disabled", "metadata"].contains(&field.as_str());
                    if value.is_null() && required {
                        continue; // not nullable: null leaves the field as it is
                    }
                    match field.as_str() {
                        "url" => check_url(str_of(&value))?,
                        "uid" => self.check_endpoint_uid(&app_id, &value, Some(e))?,
                        "eventTypes" | "filterTypes" | "channels"
                            if value.as_array().is_some_and(|a| a.is_empty()) =>
                        {
                            return Err(invalid(
                                &["body", field.as_str()],
                                "must have at least one item, or be null",
                            ));
                        }
                        "eventTypes" | "filterTypes" => {
                            self.check_event_types(&value)?;
                            out["eventTypes"] = value;
                            continue;
                        }
                        "description" | "disabled" | "channels" | "metadata" | "throttleRate" => {}
                        _ => continue,
                    }
                    out[field.as_str()] = value;
                }
                out["updatedAt"] = json!(now());
                self.endpoints[e].out = out.clone();
                Ok((StatusCode::OK, out))
            }
            _ => Err(http_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            )),
        }
    }

    /// Re-sends the endpoint's messages that failed within [since, until) and did not
    /// succeed in that window (Svix's "recover failed webhooks").
    fn recover(&mut self, app: &str, ep: &str, body: &[u8], jobs: &mut Vec<Job>) -> Reply {
        let app_id = self.app_id(app)?;
        let e = self.endpoint(&app_id, ep)?;
        let input: RecoverIn = parse(body)?;
        let until = input.until.unwrap_or_else(Utc::now);
        if input.since < until - chrono::Duration::days(14) - chrono::Duration::minutes(5) {
            return Err(invalid(
                &["body", "since"],
                "Cannot recover more than 14 days of messages",
            ));
        }
        let endpoint_id = self.endpoints[e].id().to_owned();
        let in_window: Vec<&Value> = self
            .attempts
            .iter()
            .filter(|a| a["endpointId"] == endpoint_id.as_str())
            .filter(|a| (input.since..until).contains(&time_of(&a["timestamp"])))
            .collect();
        let mut failed: Vec<String> = Vec::new();
        for a in &in_window {
            let msg_id = str_of(&a["msgId"]).to_owned();
            let succeeded = in_window
                .iter()
                .any(|b| b["msgId"] == a["msgId"] && b["status"] == 0);
            if a["status"] == 2 && !succeeded && !failed.contains(&msg_id) {
                failed.push(msg_id);
            }
        }
        for msg_id in &failed {
            let m = self.message(&app_id, msg_id)?;
            self.job(m, e, 1, jobs);
        }
        let at = now();
        let call = json!({"appId": app_id, "endpointId": endpoint_id, "since": input.since, "until": until, "resent": failed});
        self.recover_calls.push(call);
        let task = json!({"id": self.new_id("qtask"), "status": "running", "task": "endpoint.recover", "updatedAt": at});
        Ok((StatusCode::ACCEPTED, task))
    }
}

/// A MessageOut as the API returns it: without the payload when `with_content=false`.
fn message_out(out: &Value, q: &Query) -> Value {
    let mut out = out.clone();
    if !q.flag("with_content", true) {
        out["payload"] = json!({});
    }
    out
}

fn with_status(out: &mut Value, status: i64, next_attempt: Value) {
    let text = ["success", "pending", "fail", "sending", "canceled"][status as usize];
    out["status"] = json!(status);
    out["statusText"] = json!(text);
    out["nextAttempt"] = next_attempt;
}

impl FakeSvix {
    /// Starts a fake Svix that accepts `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> FakeSvix {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeSvix {
            url: format!("http://{}", listener.local_addr().unwrap()),
            token: token.to_owned(),
            inner: Arc::new(Mutex::new(Inner::default())),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// The base URL, for `SvixOptions::server_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// An official `svix` client pointed at this server (default retries and timeout).
    pub fn client(&self) -> svix::api::Svix {
        let options = svix::api::SvixOptions {
            server_url: Some(self.url.clone()),
            ..Default::default()
        };
        svix::api::Svix::new(self.token.clone(), Some(options))
    }

    /// The server's `retry_schedule` (default `[]`: a failed delivery is final at once).
    pub fn set_retry_schedule(&self, schedule: &[Duration]) {
        self.inner.lock().unwrap().retry_schedule = schedule.to_vec();
    }

    /// Sends operational webhooks to `url`, signed with `secret` (a self-hosted server's
    /// `operational_webhook_address` plus an endpoint of the management application).
    pub fn send_operational_webhooks(&self, url: &str, secret: &str) {
        self.inner.lock().unwrap().ops_target = Some((url.to_owned(), secret.to_owned()));
    }

    /// Operational webhooks produced so far (sent or not), as `{"type", "data"}`.
    pub fn operational_webhooks(&self) -> Vec<Value> {
        self.inner.lock().unwrap().ops_sent.clone()
    }

    /// While down, every request answers 503 `server_error`.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    /// The next `n` authenticated requests answer 429 `rate_limited` with `Retry-After: 1`.
    pub fn rate_limit_next(&self, n: usize) {
        self.inner.lock().unwrap().rate_limited = n;
    }

    /// Requests received for one route, e.g. `"POST /api/v1/app/{app_id}/msg"`, whatever
    /// their outcome.
    pub fn requests(&self, route: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .requests
            .get(route)
            .copied()
            .unwrap_or(0)
    }

    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Message-create requests, including idempotent repeats and rejected ones.
    pub fn message_create_requests(&self) -> usize {
        self.requests("POST /api/v1/app/{app_id}/msg")
    }

    /// Stored messages as MessageOut (with payload), plus `appId`.
    pub fn messages(&self) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .messages
            .iter()
            .map(|m| with_app(&m.out, &m.app_id))
            .collect()
    }

    /// Event types as EventTypeOut, schemas included.
    pub fn event_types(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .event_types
            .values()
            .cloned()
            .collect()
    }

    pub fn apps(&self) -> Vec<Value> {
        self.inner.lock().unwrap().apps.clone()
    }

    /// Live (not deleted) endpoints as EndpointOut, plus `appId`.
    pub fn endpoints(&self) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .endpoints
            .iter()
            .filter(|e| !e.deleted)
            .map(|e| with_app(&e.out, &e.app_id))
            .collect()
    }

    /// Every delivery attempt, oldest first, as MessageAttemptOut.
    pub fn attempts(&self) -> Vec<Value> {
        self.inner.lock().unwrap().attempts.clone()
    }

    /// `{appId, msgId, endpointId}` per resend request.
    pub fn resend_calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().resend_calls.clone()
    }

    /// `{appId, endpointId, since, until, resent: [msg ids]}` per recover request.
    pub fn recover_calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().recover_calls.clone()
    }

    /// Waits until at least `count` attempts are recorded; panics after `limit`.
    pub async fn wait_for_attempts(&self, count: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let attempts = self.attempts();
            if attempts.len() >= count {
                return attempts;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} attempts, got {}",
                attempts.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs one signed delivery and records the attempt. Boxed: a delivery schedules its
    /// retry, which is a delivery again.
    fn deliver(self, job: Job) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.deliver_once(job))
    }

    async fn deliver_once(self, job: Job) {
        let timestamp = Utc::now().timestamp();
        let signatures: Vec<String> = job
            .secrets
            .iter()
            .map(|s| {
                svix::webhooks::Webhook::new(s)
                    .unwrap()
                    .sign(&job.msg_id, timestamp, job.payload.as_bytes())
                    .unwrap()
            })
            .collect();
        let started = Instant::now();
        let sent = self
            .http
            .post(&job.url)
            .header("content-type", "application/json")
            .header("user-agent", "Svix-Webhooks/1.0 (fake)")
            .header("svix-id", &job.msg_id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", signatures.join(" "))
            .body(job.payload.clone())
            .send()
            .await;
        let (code, response) = match sent {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        let ok = (200..300).contains(&code);
        let (ops, retry_in) = self.record(&job, code, response, started, ok);
        if let Some(((url, secret), event, id)) = ops {
            let fake = self.clone();
            tokio::spawn(async move { fake.post_operational(&url, &secret, &id, &event).await });
        }
        if let Some(delay) = retry_in {
            let fake = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                fake.retry(job).await;
            });
        }
    }

    /// Records an attempt; returns the operational webhook to send (target, event, id) and
    /// when to retry.
    #[allow(clippy::type_complexity)]
    fn record(
        &self,
        job: &Job,
        code: u16,
        response: String,
        started: Instant,
        ok: bool,
    ) -> (Option<((String, String), Value, String)>, Option<Duration>) {
        let mut inner = self.inner.lock().unwrap();
        // svix-server (`worker.rs`): a failed scheduled attempt is retried after
        // `retry_schedule[attempt_count]` while the schedule lasts; a manual one never.
        let scheduled = job.trigger == 0;
        let retry_in = (!ok && scheduled)
            .then(|| inner.retry_schedule.get(job.attempt_count).copied())
            .flatten();
        let next_attempt =
            retry_in.map(|d| (Utc::now() + chrono::Duration::from_std(d).unwrap()).to_rfc3339());
        let attempt = json!({
            "id": inner.new_id("atmpt"), "msgId": job.msg_id, "endpointId": job.endpoint_id, "url": job.url,
            "response": response, "responseStatusCode": code, "responseDurationMs": started.elapsed().as_millis() as i64,
            "status": if ok { 0 } else { 2 }, "statusText": if ok { "success" } else { "fail" },
            "triggerType": job.trigger, "timestamp": now(), "nextAttempt": next_attempt,
        });
        inner.attempts.push(attempt.clone());
        let key = (job.msg_id.clone(), job.endpoint_id.clone());
        if let Some(i) = inner.in_flight.iter().position(|f| *f == key) {
            inner.in_flight.remove(i);
        }
        // The operational webhooks of `handle_successful_dispatch` / `handle_failed_dispatch`:
        // `failing` once, when the 4th scheduled attempt fails and retries remain;
        // `exhausted` when the last scheduled attempt fails; `recovered` when a scheduled
        // attempt from the 5th on succeeds. Manual attempts send none.
        let ops_type = match (scheduled, ok, retry_in.is_some()) {
            (false, _, _) => None,
            (true, true, _) => (job.attempt_count >= 4).then_some("message.attempt.recovered"),
            (true, false, true) => (job.attempt_count == 3).then_some("message.attempt.failing"),
            (true, false, false) => Some("message.attempt.exhausted"),
        };
        let app_id = inner
            .endpoints
            .iter()
            .find(|e| e.id() == job.endpoint_id)
            .map(|e| e.app_id.clone())
            .unwrap_or_default();
        let ops = ops_type.and_then(|kind| {
            let data = json!({
                "appId": app_id, "appUid": job.app_uid, "msgId": job.msg_id, "msgEventId": job.event_id,
                "endpointId": job.endpoint_id,
                "lastAttempt": {"id": attempt["id"], "responseStatusCode": code, "timestamp": attempt["timestamp"]},
            });
            let event = json!({"type": kind, "data": data});
            inner.ops_sent.push(event.clone());
            let target = inner.ops_target.clone()?;
            Some((target, event, inner.new_id("msg")))
        });
        (ops, retry_in)
    }

    /// The next scheduled attempt of `job`, filtered again like a new delivery: an endpoint
    /// disabled (or deleted, or no longer matching) by now does not get it, and nothing
    /// records that (svix-server drops the queue task; the last attempt keeps its
    /// `nextAttempt`).
    async fn retry(self, job: Job) {
        let mut jobs = Vec::new();
        {
            let mut inner = self.inner.lock().unwrap();
            let m = inner
                .messages
                .iter()
                .position(|m| m.out["id"] == job.msg_id.as_str());
            let e = inner
                .endpoints
                .iter()
                .position(|e| e.id() == job.endpoint_id);
            if let (Some(m), Some(e)) = (m, e) {
                let out = &inner.messages[m].out;
                if inner.endpoints[e].wants(str_of(&out["eventType"]), &out["channels"]) {
                    inner.job_at(m, e, 0, job.attempt_count + 1, &mut jobs);
                }
            }
        }
        for job in jobs {
            self.clone().deliver(job).await;
        }
    }

    /// Delivers one operational webhook, signed like any Svix webhook (svix-server sends
    /// them as messages of the management organization's application whose uid is the
    /// recipient's org id, so they carry `svix-*` headers and are retried like others; the
    /// fake tries three times, 200 ms apart).
    async fn post_operational(&self, url: &str, secret: &str, id: &str, event: &Value) {
        let body = event.to_string();
        for _ in 0..3 {
            let timestamp = Utc::now().timestamp();
            let signature = svix::webhooks::Webhook::new(secret)
                .unwrap()
                .sign(id, timestamp, body.as_bytes())
                .unwrap();
            let sent = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("svix-id", id)
                .header("svix-timestamp", timestamp.to_string())
                .header("svix-signature", signature)
                .body(body.clone())
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn with_app(out: &Value, app_id: &str) -> Value {
    let mut out = out.clone();
    out["appId"] = json!(app_id);
    out
}

async fn handle(
    State(fake): State<FakeSvix>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path
        .strip_prefix("/api/v1")
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let query = Query(
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    );
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|_| method == Method::POST)
        .map(|key| (key.to_owned(), uri.to_string()));
    // Health is the one route that needs no token.
    let authorized = segs == ["health"]
        || headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {}", fake.token).as_str());

    let mut jobs = Vec::new();
    let reply = {
        let mut inner = fake.inner.lock().unwrap();
        *inner
            .requests
            .entry(route_name(&method, &segs))
            .or_default() += 1;
        if inner.down {
            Err(http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "Svix is down (FakeSvix::set_down)",
            ))
        } else if !authorized {
            Err(http_error(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "Incorrect authentication credentials.",
            ))
        } else if inner.rate_limited > 0 {
            inner.rate_limited -= 1;
            Err(http_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests, please retry later",
            ))
        } else if let Some(first) = idempotency.as_ref().and_then(|k| inner.idempotent.get(k)) {
            // Svix replays the first successful response for a key (per URL); nothing is created.
            Ok(first.clone())
        } else {
            let reply = inner.dispatch(&method, &segs, &query, &body, &mut jobs);
            if let (Ok(ok), Some(key)) = (&reply, idempotency) {
                inner.idempotent.insert(key, ok.clone());
            }
            reply
        }
    };
    for job in jobs {
        tokio::spawn(fake.clone().deliver(job));
    }
    match reply {
        Ok((status, _)) if status == StatusCode::NO_CONTENT => status.into_response(),
        Err(ApiError(status, Value::Null)) => status.into_response(),
        Ok((status, body)) | Err(ApiError(status, body))
            if status != StatusCode::TOO_MANY_REQUESTS =>
        {
            (status, Json(body)).into_response()
        }
        Ok((status, body)) | Err(ApiError(status, body)) => {
            (status, [("retry-after", "1")], Json(body)).into_response()
        }
    }
}
