//! Self-tests of [`FakeSvix`], driven through the official `svix` crate client: if the
//! crate accepts the fake's answers, so will it accept the real service's.

use crate::support::fake_svix::FakeSvix;
use crate::support::{Reply, TestReceiver};
use serde_json::json;
use std::time::Duration;
use svix::api::{
    MessageAttemptListByEndpointOptions, MessageCreateOptions, MessageListOptions, Svix,
};
use svix::error::Error;
use svix::models::{
    ApplicationIn, BackgroundTaskStatus, EndpointIn, EndpointPatch, EndpointSecretRotateIn,
    EventExampleIn, EventTypeUpsertIn, MessageAttemptTriggerType, MessageIn, MessageStatus,
    RecoverIn,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// The HTTP status and `code` of an `Error::Http`.
fn http_error(error: Error) -> (u16, String) {
    match error {
        Error::Http(e) => (
            e.status.as_u16(),
            e.payload.map(|p| p.code).unwrap_or_default(),
        ),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

/// The endpoint's current signing secret.
async fn secret_of(svix: &Svix, app: &str, endpoint: &str) -> String {
    svix.endpoint()
        .get_secret(app.to_string(), endpoint.to_string())
        .await
        .unwrap()
        .key
}

async fn app_with_event_type(svix: &Svix) -> String {
    let app_in = ApplicationIn {
        uid: Some("clinic-1".into()),
        ..ApplicationIn::new("Clinic".into())
    };
    let app = svix
        .application()
        .get_or_create(app_in, None)
        .await
        .unwrap();
    let et = EventTypeUpsertIn::new("camp.created".into());
    svix.event_type()
        .upsert("camp.created".into(), et)
        .await
        .unwrap();
    app.id
}

#[tokio::test]
async fn applications_event_types_and_endpoints() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();

    let app_in = ApplicationIn {
        uid: Some("clinic-1".into()),
        ..ApplicationIn::new("Clinic".into())
    };
    let first = svix
        .application()
        .get_or_create(app_in.clone(), None)
        .await
        .unwrap();
    let again = svix
        .application()
        .get_or_create(app_in.clone(), None)
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(fake.apps().len(), 1);
    assert_eq!(
        svix.application().get("clinic-1".into()).await.unwrap().id,
        first.id
    );
    assert_eq!(
        http_error(svix.application().create(app_in, None).await.unwrap_err()),
        (409, "conflict".into())
    );
    assert_eq!(
        http_error(svix.application().get("nope".into()).await.unwrap_err()),
        (404, "not_found".into())
    );

    let schemas = json!({"1": {"type": "object", "examples": [{"id": "camp_1"}]}});
    let et = EventTypeUpsertIn {
        schemas: Some(schemas.clone()),
        ..EventTypeUpsertIn::new("A camp".into())
    };
    svix.event_type()
        .upsert("camp.created".into(), et.clone())
        .await
        .unwrap();
    let renamed = EventTypeUpsertIn {
        description: "A new camp".into(),
        ..et
    };
    let out = svix
        .event_type()
        .upsert("camp.created".into(), renamed)
        .await
        .unwrap();
    assert_eq!(out.description, "A new camp");
    assert_eq!(fake.event_types().len(), 1);
    assert_eq!(fake.event_types()[0]["schemas"], schemas);
    assert_eq!(svix.event_type().list(None).await.unwrap().data.len(), 1);

    let ep_in = EndpointIn {
        uid: Some("sub-1".into()),
        channels: Some(["camp_1".to_owned()].into()),
        ..EndpointIn::new("https://example.test/hook".into())
    };
    let ep = svix
        .endpoint()
        .create(first.id.clone(), ep_in.clone(), None)
        .await
        .unwrap();
    assert!(ep.id.starts_with("ep_"));
    assert_eq!(
        svix.endpoint()
            .get(first.id.clone(), "sub-1".into())
            .await
            .unwrap()
            .id,
        ep.id
    );
    let duplicate = svix
        .endpoint()
        .create(first.id.clone(), ep_in, None)
        .await
        .unwrap_err();
    assert_eq!(http_error(duplicate), (409, "conflict".into()));
    let ftp = EndpointIn::new("ftp://example.test/".into());
    match svix
        .endpoint()
        .create(first.id.clone(), ftp, None)
        .await
        .unwrap_err()
    {
        Error::Validation(e) => assert_eq!(e.payload.unwrap().detail[0].loc, ["body", "url"]),
        other => panic!("expected a validation error, got {other:?}"),
    }

    // Absent fields stay, an explicit null clears.
    let patch: EndpointPatch =
        serde_json::from_value(json!({"description": "Renamed", "channels": null})).unwrap();
    let patched = svix
        .endpoint()
        .patch(first.id.clone(), ep.id.clone(), patch)
        .await
        .unwrap();
    assert_eq!(
        (patched.description.as_str(), patched.channels),
        ("Renamed", None)
    );
    assert_eq!((patched.url, patched.uid), (ep.url, Some("sub-1".into())));

    svix.endpoint()
        .delete(first.id.clone(), "sub-1".into())
        .await
        .unwrap();
    let gone = svix
        .endpoint()
        .get(first.id.clone(), ep.id)
        .await
        .unwrap_err();
    assert_eq!(http_error(gone), (404, "not_found".into()));
    assert!(fake.endpoints().is_empty());
}

#[tokio::test]
async fn messages_are_idempotent_unique_by_event_id_and_delivered_signed() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();
    let receiver = TestReceiver::start().await;
    let app = app_with_event_type(&svix).await;
    let ep = svix
        .endpoint()
        .create(app.clone(), EndpointIn::new(receiver.url.clone()), None)
        .await
        .unwrap();
    let secret = secret_of(&svix, &app, &ep.id).await;
    assert!(secret.starts_with("whsec_"));

    let msg = MessageIn {
        event_id: Some("evt_1".into()),
        ..MessageIn::new("camp.created".into(), json!({"b": 1, "a": 2}))
    };
    let key = |k: &str| {
        Some(MessageCreateOptions {
            idempotency_key: Some(k.into()),
            ..Default::default()
        })
    };
    let first = svix
        .message()
        .create(app.clone(), msg.clone(), key("key-1"))
        .await
        .unwrap();
    let repeat = svix
        .message()
        .create(app.clone(), msg.clone(), key("key-1"))
        .await
        .unwrap();
    assert_eq!(first, repeat);
    let taken = svix
        .message()
        .create(app.clone(), msg, key("key-2"))
        .await
        .unwrap_err();
    assert_eq!(http_error(taken), (409, "conflict".into()));
    assert_eq!(
        (fake.messages().len(), fake.message_create_requests()),
        (1, 3)
    );
    assert_eq!(fake.messages()[0]["eventId"], "evt_1");
    // Also addressable by its eventId.
    assert_eq!(
        svix.message()
            .get(app.clone(), "evt_1".into(), None)
            .await
            .unwrap()
            .id,
        first.id
    );

    let got = receiver.wait_for(1, PATIENCE).await;
    assert!(
        got[0].verify(&secret),
        "the delivery verifies with the official library"
    );
    assert_eq!(got[0].header("svix-id"), first.id);
    assert_eq!(got[0].json, json!({"a": 2, "b": 1}));

    fake.wait_for_attempts(1, PATIENCE).await;
    let with_msg = MessageAttemptListByEndpointOptions {
        with_msg: Some(true),
        ..Default::default()
    };
    let attempts = svix
        .message_attempt()
        .list_by_endpoint(app.clone(), ep.id.clone(), Some(with_msg))
        .await
        .unwrap();
    assert_eq!(attempts.data.len(), 1);
    assert!(attempts.done);
    let attempt = &attempts.data[0];
    assert_eq!(
        (attempt.status, attempt.response_status_code),
        (MessageStatus::Success, 200)
    );
    assert_eq!(attempt.msg.as_ref().unwrap().id, first.id);
    let by_msg = svix
        .message_attempt()
        .list_by_msg(app.clone(), first.id.clone(), None)
        .await
        .unwrap();
    assert_eq!(by_msg.data[0].id, attempt.id);

    svix.message_attempt()
        .resend(app.clone(), first.id.clone(), ep.id.clone(), None)
        .await
        .unwrap();
    let attempts = fake.wait_for_attempts(2, PATIENCE).await;
    assert_eq!(
        attempts[1]["triggerType"],
        MessageAttemptTriggerType::Manual as i64
    );
    assert_eq!(fake.resend_calls().len(), 1);
    let stats = svix.endpoint().get_stats(app, ep.id, None).await.unwrap();
    assert_eq!((stats.success, stats.fail), (2, 0));
}

#[tokio::test]
async fn rate_limits_outages_and_bad_tokens_fail_like_svix() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();
    let route = "GET /api/v1/app/{app_id}";

    fake.rate_limit_next(1);
    assert_eq!(
        http_error(svix.application().get("x".into()).await.unwrap_err()),
        (429, "rate_limited".into())
    );
    assert_eq!(fake.requests(route), 1, "the crate does not retry a 429");

    fake.set_down(true);
    assert_eq!(
        http_error(svix.application().get("x".into()).await.unwrap_err()),
        (503, "server_error".into())
    );
    assert_eq!(fake.requests(route), 4, "the crate retries a 5xx twice");
    fake.set_down(false);
    assert_eq!(
        http_error(svix.application().get("x".into()).await.unwrap_err()),
        (404, "not_found".into())
    );

    let intruder = Svix::new(
        "sk_wrong".into(),
        Some(svix::api::SvixOptions {
            server_url: Some(fake.url().into()),
            ..Default::default()
        }),
    );
    let denied = intruder.application().get("x".into()).await.unwrap_err();
    assert_eq!(http_error(denied), (401, "authentication_failed".into()));
    intruder
        .health()
        .get()
        .await
        .expect("health needs no token");
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_old_one() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();
    let receiver = TestReceiver::start().await;
    let app = app_with_event_type(&svix).await;
    let ep = svix
        .endpoint()
        .create(app.clone(), EndpointIn::new(receiver.url.clone()), None)
        .await
        .unwrap();
    let old = secret_of(&svix, &app, &ep.id).await;

    let rotated = svix
        .endpoint()
        .rotate_secret(
            app.clone(),
            ep.id.clone(),
            EndpointSecretRotateIn::new(),
            None,
        )
        .await
        .unwrap();
    let new = secret_of(&svix, &app, &ep.id).await;
    assert_ne!(new, old);
    assert_eq!(rotated.key, new);

    svix.message()
        .create(app, MessageIn::new("camp.created".into(), json!({})), None)
        .await
        .unwrap();
    let got = receiver.wait_for(1, PATIENCE).await;
    assert!(
        got[0].verify(&new) && got[0].verify(&old),
        "signed with both during the grace period"
    );
}

#[tokio::test]
async fn failures_are_recovered_examples_sent_and_lists_paginate() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::Status(500)]);
    let app = app_with_event_type(&svix).await;
    let only = |t: &str| EndpointIn {
        event_types: Some([t.to_owned()].into()),
        ..EndpointIn::new(receiver.url.clone())
    };
    let unknown = svix
        .endpoint()
        .create(app.clone(), only("no.such.type"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, Error::Validation(_)),
        "filters must name existing event types"
    );
    let ep = svix
        .endpoint()
        .create(app.clone(), only("camp.created"), None)
        .await
        .unwrap();

    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    for i in 0..3 {
        let msg = MessageIn::new("camp.created".into(), json!({"i": i}));
        svix.message().create(app.clone(), msg, None).await.unwrap();
    }
    let other = MessageIn::new("camp.deleted".into(), json!({}));
    svix.message()
        .create(app.clone(), other, None)
        .await
        .unwrap();
    let attempts = fake.wait_for_attempts(3, PATIENCE).await;
    assert_eq!(
        attempts.iter().filter(|a| a["status"] == 2).count(),
        1,
        "the first delivery got a 500"
    );
    let stats = svix
        .endpoint()
        .get_stats(app.clone(), ep.id.clone(), None)
        .await
        .unwrap();
    assert_eq!((stats.success, stats.fail), (2, 1));

    let task = svix
        .endpoint()
        .recover(app.clone(), ep.id.clone(), RecoverIn::new(since), None)
        .await
        .unwrap();
    assert_eq!(
        (task.status, task.id.starts_with("qtask_")),
        (BackgroundTaskStatus::Running, true)
    );
    let attempts = fake.wait_for_attempts(4, PATIENCE).await;
    assert_eq!(
        (
            attempts[3]["status"].as_i64(),
            attempts[3]["triggerType"].as_i64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(
        fake.recover_calls()[0]["resent"].as_array().unwrap().len(),
        1
    );

    // Newest first, two per page, filtered by event type (the crate sends `event_types=a,b`).
    let options = |iterator| MessageListOptions {
        limit: Some(2),
        iterator,
        event_types: Some(["camp.created".to_owned()].into()),
        ..Default::default()
    };
    let first = svix
        .message()
        .list(app.clone(), Some(options(None)))
        .await
        .unwrap();
    let second = svix
        .message()
        .list(app.clone(), Some(options(first.iterator.clone())))
        .await
        .unwrap();
    assert_eq!(
        (first.data.len(), first.done, second.data.len(), second.done),
        (2, false, 1, true)
    );
    assert!(first.data[0].id > first.data[1].id && first.data[1].id > second.data[0].id);

    // Like svix-server: the stored example of schema "1" is sent, a given payload ignored.
    let schemas = json!({"1": {"type": "object", "examples": [{"example": true}]}});
    let et = EventTypeUpsertIn {
        schemas: Some(schemas),
        ..EventTypeUpsertIn::new("camp.created".into())
    };
    svix.event_type()
        .upsert("camp.created".into(), et)
        .await
        .unwrap();
    let example = EventExampleIn {
        payload: Some(json!({"ignored": true})),
        ..EventExampleIn::new("camp.created".into())
    };
    let sent = svix
        .endpoint()
        .send_example(app, ep.id, example, None)
        .await
        .unwrap();
    let got = receiver.wait_for(5, PATIENCE).await;
    assert_eq!(
        (got[4].header("svix-id"), &got[4].json),
        (sent.id.as_str(), &json!({"example": true}))
    );
}

/// The real server's behaviours EHRS once got wrong (issue 12): channel matching,
/// routes it lacks, and the operational webhooks of a failing then exhausted message.
#[tokio::test]
async fn channels_missing_routes_and_operational_webhooks_follow_svix_server() {
    let fake = FakeSvix::start("sk_fake").await;
    let svix = fake.client();
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::Status(500));
    let ops = TestReceiver::start().await;
    let ops_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    fake.send_operational_webhooks(&ops.url, ops_secret);
    fake.set_retry_schedule(&[Duration::from_millis(20); 5]);
    let app = app_with_event_type(&svix).await;
    let ep_in = EndpointIn {
        channels: Some(["full".to_owned()].into()),
        ..EndpointIn::new(receiver.url.clone())
    };
    let ep = svix
        .endpoint()
        .create(app.clone(), ep_in, None)
        .await
        .unwrap();

    // A message without channels, as send-example makes, does not reach it.
    let sent = svix
        .endpoint()
        .send_example(
            app.clone(),
            ep.id.clone(),
            EventExampleIn::new("svix.ping".into()),
            None,
        )
        .await
        .unwrap();
    let none = MessageIn::new("camp.created".into(), json!({}));
    svix.message()
        .create(app.clone(), none, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    // A resend (manual) does, once: manual attempts are never retried.
    svix.message_attempt()
        .resend(app.clone(), sent.id, ep.id.clone(), None)
        .await
        .unwrap();
    receiver.wait_for(1, PATIENCE).await;

    // The open-source server has no replay-missing: a bare 404.
    let replay = svix
        .endpoint()
        .replay_missing(
            app.clone(),
            ep.id.clone(),
            svix::models::ReplayIn::new(chrono::Utc::now()),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&replay, Error::Http(e) if e.status == 404 && e.payload.is_none()),
        "{replay:?}"
    );

    // A scheduled message on its channel: 6 attempts, `failing` after the 4th, then
    // `exhausted`, delivered signed to the operational-webhook endpoint.
    let full = MessageIn {
        channels: Some(["full".to_owned()].into()),
        ..MessageIn::new("camp.created".into(), json!({}))
    };
    svix.message().create(app, full, None).await.unwrap();
    let got = ops.wait_for(2, PATIENCE).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|w| w.json["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["message.attempt.failing", "message.attempt.exhausted"]
    );
    assert!(got[0].verify(ops_secret));
    assert_eq!(got[0].json["data"]["endpointId"], ep.id.as_str());
    assert_eq!(receiver.received().len(), 1 + 6);
}
