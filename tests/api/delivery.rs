//! The embedded delivery engine, end to end: real deliveries to a real receiver on
//! 127.0.0.1, verified with the official Svix library.

use crate::camps::{camp_body, create_camp};
use crate::support::{Reply, TestApp, TestReceiver, eventually};
use ehrs::auth::Role;
use ehrs::config::parse_schedule;
use serde_json::json;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

pub async fn deliveries_of(app: &TestApp, subscription: &str) -> Vec<(String, i64, Option<i64>)> {
    sqlx::query_as("SELECT status, attempts, last_status FROM webhook_deliveries WHERE subscription_id = $1 ORDER BY sequence")
        .bind(subscription)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

pub async fn attempts_of(app: &TestApp, subscription: &str) -> Vec<(Option<i64>, Option<String>)> {
    sqlx::query_as("SELECT status_code, error FROM webhook_attempts WHERE subscription_id = $1 ORDER BY attempted_at, id")
        .bind(subscription)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

db_test!(async fn a_delivery_is_signed_and_verifies_with_svix(app) {
    let receiver = TestReceiver::start().await;
    let (subscription, secret) = app.subscribe(&receiver.url, &[], "full").await;
    let camp = create_camp(&app).await;

    let got = receiver.wait_for(1, PATIENCE).await;
    let delivery = &got[0];
    assert!(delivery.verify(&secret), "the Svix verifier must accept the delivery");
    assert!(!delivery.verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "another secret must not verify");
    let envelope = &delivery.json;
    assert_eq!(envelope["type"], "camp.created");
    assert_eq!(envelope["api_version"], "2026-11-01");
    assert_eq!(envelope["data"], camp);
    assert_eq!(envelope["sequence"], 1);
    assert!(envelope["event_id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(envelope["webhook_id"], delivery.webhook_id());
    assert!(delivery.webhook_id().starts_with("msg_"));
    assert_eq!(delivery.header("svix-id"), delivery.webhook_id());
    assert_eq!(delivery.header("svix-signature"), delivery.header("webhook-signature"));
    assert_eq!(delivery.header("ehrs-sequence"), "1");
    assert!(envelope.get("changed_fields").is_none());

    eventually("the attempt is logged", || async { deliveries_of(&app, &subscription).await == [("delivered".into(), 1, Some(200))] }).await;
    assert_eq!(attempts_of(&app, &subscription).await, [(Some(200), None)]);
});

db_test!(async fn updates_carry_changed_fields_and_sequences_count_up(app) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &[], "full").await;
    let camp = create_camp(&app).await;
    let mut body = camp_body();
    body["name"] = json!("Renamed camp");
    app.put(Role::Admin, &format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap()), &body).await.expect(200);

    let mut got = receiver.wait_for(2, PATIENCE).await;
    got.sort_by_key(|r| r.json["sequence"].as_i64());
    assert_eq!(got[1].json["type"], "camp.updated");
    assert_eq!(got[1].json["sequence"], 2);
    assert_eq!(got[1].json["changed_fields"], json!(["name"]));
    assert_eq!(got[1].json["data"]["name"], "Renamed camp");
});

db_test!(async fn id_only_subscriptions_receive_no_clinical_fields(app) {
    let receiver = TestReceiver::start().await;
    let (_, secret) = app.subscribe(&receiver.url, &[], "id_only").await;
    let camp = create_camp(&app).await;
    let got = receiver.wait_for(1, PATIENCE).await;
    assert!(got[0].verify(&secret));
    assert_eq!(got[0].json["data"], json!({"id": camp["id"]}));
    assert!(!got[0].body.contains("Pune"), "no clinical text may leave in id_only mode");
});

db_test!(async fn the_event_type_filter_is_honoured(app) {
    let all = TestReceiver::start().await;
    let deletions = TestReceiver::start().await;
    app.subscribe(&all.url, &[], "full").await;
    let (deletions_id, _) = app.subscribe(&deletions.url, &["camp.deleted"], "full").await;
    let camp = create_camp(&app).await;
    app.delete(Role::Admin, &format!("/api/v1/medical-camps/{}", camp["id"].as_str().unwrap())).await.expect(204);

    all.wait_for(2, PATIENCE).await;
    let got = deletions.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].json["type"], "camp.deleted");
    assert_eq!(got[0].json["sequence"], 1);
    assert_eq!(deliveries_of(&app, &deletions_id).await.len(), 1);
});

db_test!(
    settings = |s| s.webhook_retry_schedule = parse_schedule("100ms,100ms,100ms").unwrap(),
    async fn failures_are_retried_with_the_same_webhook_id(app) {
        let receiver = TestReceiver::start().await;
        receiver.script([Reply::Status(500), Reply::Status(503)]);
        let (subscription, secret) = app.subscribe(&receiver.url, &[], "full").await;
        create_camp(&app).await;

        let got = receiver.wait_for(3, PATIENCE).await;
        assert!(got.iter().all(|r| r.webhook_id() == got[0].webhook_id()));
        assert!(got.iter().all(|r| r.verify(&secret)));
        eventually("delivered after two failures", || async {
            deliveries_of(&app, &subscription).await == [("delivered".into(), 3, Some(200))]
        })
        .await;
        let attempts: Vec<Option<i64>> = attempts_of(&app, &subscription).await.into_iter().map(|a| a.0).collect();
        assert_eq!(attempts, [Some(500), Some(503), Some(200)]);
        let stats: (i64,) = sqlx::query_as("SELECT consecutive_failures FROM webhook_subscriptions WHERE id = $1")
            .bind(&subscription)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert_eq!(stats.0, 0, "a success resets the failure streak");
    }
);

db_test!(
    settings = |s| s.webhook_retry_schedule = parse_schedule("50ms,50ms").unwrap(),
    async fn a_message_is_exhausted_after_the_schedule(app) {
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Status(500));
        let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
        create_camp(&app).await;
        eventually("exhausted after 3 attempts", || async {
            deliveries_of(&app, &subscription).await == [("exhausted".into(), 3, Some(500))]
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), 3, "no attempt after exhaustion");
    }
);

db_test!(async fn retry_after_is_honoured(app) {
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::RetryAfter(429, 3600)]);
    let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
    create_camp(&app).await;
    receiver.wait_for(1, PATIENCE).await;
    eventually("the retry is scheduled an hour out", || async {
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, next_attempt_at, updated_at FROM webhook_deliveries WHERE subscription_id = $1",
        )
        .bind(&subscription)
        .fetch_optional(app.state.db.pool())
        .await
        .unwrap();
        matches!(row, Some((status, next, updated)) if status == "pending" && next - updated > 3_500_000)
    })
    .await;
});

db_test!(async fn gone_disables_the_subscription(app) {
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::Status(410));
    let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
    create_camp(&app).await;
    receiver.wait_for(1, PATIENCE).await;
    eventually("the subscription is disabled", || async {
        let sub = app.get(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{subscription}")).await.body;
        sub["enabled"] == false && sub["paused_reason"].as_str().unwrap_or("").contains("410")
    })
    .await;
    create_camp(&app).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "a disabled subscription receives nothing");
});

db_test!(
    settings = |s| {
        s.webhook_concurrency = 4;
        s.webhook_endpoint_concurrency = 2;
        s.webhook_timeout = Duration::from_secs(10);
    },
    async fn a_stalled_endpoint_does_not_hold_back_the_others(app) {
        let stalled = TestReceiver::start().await;
        stalled.always(Reply::Stall(Duration::from_secs(8)));
        let healthy = TestReceiver::start().await;
        app.subscribe(&stalled.url, &[], "full").await;
        app.subscribe(&healthy.url, &[], "full").await;
        for _ in 0..20 {
            create_camp(&app).await;
        }
        healthy.wait_for(20, PATIENCE).await;
        assert_eq!(stalled.completed(), 0, "all 20 healthy deliveries arrived while the stalled endpoint still held its requests");
        assert!(stalled.received().len() <= 2, "the stalled endpoint holds at most its own two slots");
    }
);

db_test!(async fn two_engines_never_deliver_the_same_message_at_once(app) {
    let receiver = TestReceiver::start().await;
    let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
    let second = ehrs::testing::start_delivery_engine(&app.state, &app.state.settings);
    let creations = (0..60).map(|_| create_camp(&app));
    futures_util::future::join_all(creations).await;
    let got = receiver.wait_for(60, PATIENCE).await;
    eventually("all recorded", || async {
        deliveries_of(&app, &subscription).await.iter().all(|d| d.0 == "delivered")
    })
    .await;
    second.stop().await;
    let mut ids: Vec<&str> = got.iter().map(|r| r.webhook_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60);
    assert_eq!(receiver.received().len(), 60, "no message was sent twice");
    let sequences: Vec<i64> = {
        let mut s: Vec<i64> = got.iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect();
        s.sort();
        s
    };
    assert_eq!(sequences, (1..=60).collect::<Vec<_>>());
});

db_test!(async fn a_failed_write_emits_nothing(app) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &[], "full").await;
    let mut bad = camp_body();
    bad["start_date"] = json!("not a date");
    assert_eq!(app.post(Role::Admin, "/api/v1/medical-camps", &bad).await.status, 422);
    assert_eq!(app.post(Role::Nurse, "/api/v1/medical-camps", &camp_body()).await.status, 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    assert_eq!(app.count_rows("webhook_messages").await, 0);
    assert_eq!(app.count_rows("webhook_deliveries").await, 0);
});

db_test!(async fn a_rolled_back_transaction_leaves_no_event(app) {
    let mut tx = app.state.db.begin().await.unwrap();
    ehrs::outbound::emit(&mut tx, ehrs::outbound::Event::new(ehrs::outbound::EventType::CampCreated, &json!({"id": "camp_x"})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(app.count_rows("webhook_messages").await, 0);
    assert_eq!(app.count_rows("webhook_deliveries").await, 0);
});

db_test!(async fn late_commits_are_never_skipped_and_sequences_follow_commit_horizon(app) {
    // Two engines on one database (two instances on PostgreSQL), two subscriptions, and
    // writers whose commits land out of id order: the first transaction emits first and
    // commits last, while thirty others emit and commit around it.
    use ehrs::outbound::{Event, EventType, emit};
    let first = TestReceiver::start().await;
    let second = TestReceiver::start().await;
    app.subscribe(&first.url, &[], "full").await;
    app.subscribe(&second.url, &[], "id_only").await;
    let other_engine = ehrs::testing::start_delivery_engine(&app.state, &app.state.settings);
    let db = app.state.db.clone();

    let slow = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let id = emit(&mut tx, Event::new(EventType::CampCreated, &json!({"id": "camp_slow"}))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(800)).await;
            tx.commit().await.unwrap();
            id
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = (0..30).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i * 7 % 23) as u64)).await;
            let mut tx = db.begin().await.unwrap();
            emit(&mut tx, Event::new(EventType::CampCreated, &json!({"id": format!("camp_{i}")}))).await.unwrap();
            tokio::time::sleep(Duration::from_millis((i * 13 % 17) as u64)).await;
            tx.commit().await.unwrap();
        })
    });
    futures_util::future::join_all(quick).await;
    let slow_id = slow.await.unwrap();

    for receiver in [&first, &second] {
        let got = receiver.wait_for(31, PATIENCE).await;
        let mut sequences: Vec<i64> = got.iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect();
        sequences.sort();
        assert_eq!(sequences, (1..=31).collect::<Vec<_>>(), "every number once, none skipped");
        let mut ids: Vec<&str> = got.iter().map(|r| r.webhook_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 31, "every message once");
        // PostgreSQL: the slow transaction's id is below every other writer's, and the
        // fan-out reads below the snapshot horizon in transaction-id order, so it is not
        // overtaken; SQLite: it held the one writer, so it committed first.
        let slow_delivery = got.iter().find(|r| r.webhook_id() == slow_id.as_str()).unwrap();
        assert_eq!(slow_delivery.json["sequence"], 1);
    }
    other_engine.stop().await;
    assert_eq!(app.count_rows("webhook_deliveries").await, 62);
});

db_test!(async fn only_the_fan_out_commits_without_waiting_for_the_disk(app) {
    // PostgreSQL: the fan-out's transaction turns synchronous_commit off for itself
    // alone; a pooled connection that ran it must not carry that into an API write.
    // SQLite: both kinds are the same, WAL with synchronous = NORMAL (1).
    let db = &app.state.db;
    let postgres = db.backend() == ehrs::db::Backend::Postgres;
    let show = if postgres { "SHOW synchronous_commit" } else { "PRAGMA synchronous" };
    let read = |row: sqlx::any::AnyRow| -> String {
        use sqlx::Row;
        row.try_get::<String, _>(0).unwrap_or_else(|_| row.get::<i64, _>(0).to_string())
    };
    let mut lazy = db.begin_lazy_commit().await.unwrap();
    let setting = read(sqlx::query(show).fetch_one(lazy.conn()).await.unwrap());
    assert_eq!(setting, if postgres { "off" } else { "1" });
    lazy.commit().await.unwrap();
    // Every pooled connection at once, so the one that ran the fan-out's is among them.
    let size = app.state.settings.db_pool_size.max(2) as usize;
    let mut held = Vec::new();
    for _ in 0..if postgres { size } else { 1 } {
        held.push(db.begin().await.unwrap());
    }
    for tx in &mut held {
        let setting = read(sqlx::query(show).fetch_one(tx.conn()).await.unwrap());
        assert_eq!(setting, if postgres { "on" } else { "1" });
    }
    for tx in held {
        tx.rollback().await.unwrap();
    }
});

/// PostgreSQL: runs `hold` in a bare transaction (not the engine's: its commit wakes no
/// engine), writes a camp while it is open, checks that the camp's message is not handed
/// off meanwhile, ends the transaction and waits for the delivery. The engine's sweep is
/// an hour away in these tests, so only the fan-out looking again by itself delivers.
/// SQLite has neither horizon nor fan-out lock: the message simply goes out.
async fn goes_out_once_released(
    app: &TestApp,
    hold: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &[], "full").await;
    let postgres = app.state.db.backend() == ehrs::db::Backend::Postgres;
    let mut other = app.state.db.pool().begin().await.unwrap();
    if postgres {
        hold.execute(&mut *other).await.unwrap();
    }
    create_camp(app).await;
    if postgres {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE relayed_at IS NULL")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
        assert_eq!(
            waiting, 1,
            "not handed off while the other transaction is open"
        );
        assert!(receiver.received().is_empty());
    }
    other.commit().await.unwrap();
    let got = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].json["type"], "camp.created");
    assert_eq!(got[0].json["sequence"], 1);
}

db_test!(
    settings = |s| s.webhook_sweep_interval = Duration::from_secs(3600),
    async fn a_message_held_back_by_a_transaction_that_wakes_nobody_still_goes_out(app) {
        // A transaction that took its id before the camp's write holds the fan-out's
        // horizon below the camp's message, and commits outside the engine's notice (as
        // the recorder's, a claim's or another instance's would).
        goes_out_once_released(&app, sqlx::query("SELECT pg_current_xact_id()::text")).await;
    }
);

db_test!(
    settings = |s| s.webhook_sweep_interval = Duration::from_secs(3600),
    async fn a_message_goes_out_when_another_instance_held_the_fan_out_lock(app) {
        // Another instance leads the fan-out when this instance's write commits, so this
        // engine's batch skips; the leader never sees the message and its release wakes
        // nobody.
        let lock = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ehrs::testing::FANOUT_LOCK);
        goes_out_once_released(&app, lock).await;
    }
);

db_test!(
    settings = |s| {
        s.webhook_concurrency = 64;
        s.webhook_endpoint_concurrency = 8;
        s.webhook_timeout = Duration::from_secs(10);
    },
    async fn fifty_hung_endpoints_do_not_hold_back_a_healthy_one(app) {
        // Fifty endpoints accept and do not answer (8 s, under the 10 s timeout) beside one
        // healthy endpoint: before the first hung request completes, every healthy delivery
        // has arrived, because each endpoint has a slot of its own that the shared pool's
        // hung holders cannot take.
        let mut hung = Vec::new();
        for _ in 0..50 {
            let receiver = TestReceiver::start().await;
            receiver.always(Reply::Stall(Duration::from_secs(8)));
            app.subscribe(&receiver.url, &[], "full").await;
            hung.push(receiver);
        }
        let healthy = TestReceiver::start().await;
        app.subscribe(&healthy.url, &[], "full").await;
        for _ in 0..8 {
            create_camp(&app).await;
        }
        healthy.wait_for(8, PATIENCE).await;
        let completed: usize = hung.iter().map(|r| r.completed()).sum();
        assert_eq!(completed, 0, "all 8 healthy deliveries arrived while every hung endpoint still held its requests");
        let held: usize = hung.iter().map(|r| r.received().len()).sum();
        assert!(held <= 50 + 64, "the hung endpoints hold their own slots and at most the shared pool: {held}");
    }
);

db_test!(
    settings = |s| s.webhook_retry_schedule = parse_schedule("300ms,300ms,300ms").unwrap(),
    async fn an_ordered_subscription_receives_strictly_in_sequence_and_a_failure_holds_back_the_rest(app) {
        let receiver = TestReceiver::start().await;
        // The third request fails twice: with ordered delivery nothing may overtake it.
        receiver.script([Reply::Status(200), Reply::Status(200), Reply::Status(500), Reply::Status(503)]);
        let created = app
            .post(
                Role::Admin,
                "/api/v1/webhooks/subscriptions",
                &json!({"url": receiver.url, "ordered": true}),
            )
            .await
            .expect(201);
        assert_eq!(created["ordered"], true);
        let subscription = created["id"].as_str().unwrap().to_string();
        // Many writes at once, so several deliveries are due together.
        let writes: Vec<_> = (0..12).map(|_| create_camp(&app)).collect();
        futures_util::future::join_all(writes).await;

        let got = receiver.wait_for(14, PATIENCE).await;
        let order: Vec<i64> = got.iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect();
        let mut expected: Vec<i64> = vec![1, 2, 3, 3, 3];
        expected.extend(4..=12);
        assert_eq!(order, expected, "one at a time, in sequence, the failed one retried before the rest");
        for pair in got.windows(2) {
            assert!(pair[1].at >= pair[0].at);
        }
        eventually("every delivery delivered", || async {
            deliveries_of(&app, &subscription).await.iter().all(|d| d.0 == "delivered")
        })
        .await;

        // Turning it off again is an update like any other.
        let updated = app
            .put(Role::Admin, &format!("/api/v1/webhooks/subscriptions/{subscription}"), &json!({"ordered": false}))
            .await
            .expect(200);
        assert_eq!(updated["ordered"], false);
    }
);

db_test!(async fn subscriptions_are_unordered_unless_asked(app) {
    let receiver = TestReceiver::start().await;
    let created = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url}))
        .await
        .expect(201);
    assert_eq!(created["ordered"], false);
    let refused = app
        .post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": receiver.url, "ordered": "yes"}))
        .await;
    assert!(refused.status == 400 || refused.status == 422, "a non-boolean is refused: {}", refused.status);
});

/// The engine's clock, moved by the test (the app was given an adjustable one).
fn clock(app: &TestApp) -> &ehrs::time::Clock {
    &app.state.settings.webhook_clock
}

db_test!(
    settings = |s| {
        s.webhook_retry_schedule = parse_schedule("10m,10m").unwrap();
        s.webhook_clock = ehrs::time::Clock::adjustable();
    },
    async fn a_retry_minutes_out_goes_when_the_clock_gets_there(app) {
        let receiver = TestReceiver::start().await;
        receiver.script([Reply::Status(500)]);
        let (subscription, secret) = app.subscribe(&receiver.url, &[], "full").await;
        create_camp(&app).await;
        receiver.wait_for(1, PATIENCE).await;
        eventually("the failure is recorded", || async {
            deliveries_of(&app, &subscription).await == [("pending".into(), 1, Some(500))]
        })
        .await;
        let due: i64 = sqlx::query_scalar("SELECT next_attempt_at FROM webhook_deliveries WHERE subscription_id = $1")
            .bind(&subscription)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        let wait = due - clock(&app).now_ms();
        assert!((8 * 60_000..12 * 60_000).contains(&wait), "the retry is ~10 minutes out, not {wait} ms");
        let failed = app.get(Role::Admin, "/api/v1/webhooks/logs?status=failed").await.expect(200);
        assert_eq!(failed["items"].as_array().unwrap().len(), 1, "shown as failed while the retry waits");

        // A few sweeps pass on the real clock: nothing is due yet.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), 1, "no retry before it is due");

        clock(&app).advance(Duration::from_secs(12 * 60));
        let got = receiver.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got[0].webhook_id(), got[1].webhook_id(), "the retry is the same message");
        assert!(got[1].verify(&secret), "signed with a real timestamp the receiver accepts");
        eventually("delivered on the retry", || async {
            deliveries_of(&app, &subscription).await == [("delivered".into(), 2, Some(200))]
        })
        .await;
        let times: Vec<i64> = sqlx::query_scalar("SELECT attempted_at FROM webhook_attempts WHERE subscription_id = $1 ORDER BY attempted_at")
            .bind(&subscription)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
        assert!(times[1] - times[0] >= 12 * 60_000, "attempts are stamped by the engine's clock: {times:?}");
    }
);

db_test!(
    settings = |s| {
        // A lease of minutes: twice the attempt timeout plus 5 s.
        s.webhook_timeout = Duration::from_secs(120);
        s.webhook_clock = ehrs::time::Clock::adjustable();
    },
    async fn a_lease_left_by_a_crashed_engine_is_reclaimed_when_it_ends(app) {
        use ehrs::outbound::events::{Event, EventType, WebhookTestData};
        let receiver = TestReceiver::start().await;
        let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
        let id = ehrs::ids::SubscriptionId::parse(&subscription).unwrap();
        // One ordinary delivery first: the engine knows the subscription, as it would
        // before a crash.
        create_camp(&app).await;
        receiver.wait_for(1, PATIENCE).await;
        // What a claim of an engine that then died leaves behind: a pending delivery
        // leased to it for as long as a lease lasts.
        let now = clock(&app).now();
        let lease = 2 * 120_000 + 5_000;
        let mut tx = app.state.db.begin().await.unwrap();
        let event = Event::new(EventType::WebhookTest, &WebhookTestData { subscription_id: id.clone(), message: "held".into() });
        let message = ehrs::testing::insert_handed_off_message(&mut tx, &event, now).await.unwrap();
        let delivery = ehrs::testing::queue_delivery(&mut tx, &message, &id, now, Some(now.millis() + lease))
            .await
            .unwrap();
        sqlx::query("UPDATE webhook_deliveries SET locked_by = 'ehrs-crashed' WHERE id = $1")
            .bind(&delivery)
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Sweeps on the real clock leave the lease alone.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), 1, "a live lease is not taken");

        clock(&app).advance(Duration::from_millis(lease as u64 + 1_000));
        let got = receiver.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got[1].webhook_id(), message.to_string());
        eventually("delivered by this engine", || async {
            deliveries_of(&app, &subscription).await == [("delivered".into(), 1, Some(200)), ("delivered".into(), 1, Some(200))]
        })
        .await;
    }
);

db_test!(
    settings = |s| {
        s.webhook_retry_schedule = parse_schedule("10m,10m").unwrap();
        s.webhook_clock = ehrs::time::Clock::adjustable();
        // One in flight: the order deliveries start in is the order they arrive in.
        s.webhook_endpoint_concurrency = 1;
    },
    async fn re_enabling_sends_what_came_due_oldest_sequence_first_and_nothing_early(app) {
        let receiver = TestReceiver::start().await;
        receiver.script([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
        let (subscription, _) = app.subscribe(&receiver.url, &["camp.created"], "full").await;
        for _ in 0..3 {
            create_camp(&app).await;
        }
        receiver.wait_for(3, PATIENCE).await;
        eventually("three failures recorded", || async {
            deliveries_of(&app, &subscription).await.iter().filter(|d| d.1 == 1 && d.0 == "pending").count() == 3
        })
        .await;
        let toggle = format!("/api/v1/webhooks/subscriptions/{subscription}/toggle");
        app.put(Role::Admin, &toggle, &json!({"enabled": false})).await.expect(200);
        // While it was disabled, sequence 2 came due first, then sequence 1; sequence 3's
        // retry is still ten minutes ahead.
        let now = clock(&app).now_ms();
        for (sequence, due) in [(1, now - 1_000), (2, now - 2_000), (3, now + 600_000)] {
            sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 AND sequence = $3")
                .bind(due).bind(&subscription).bind(sequence as i64)
                .execute(app.state.db.pool()).await.unwrap();
        }
        app.put(Role::Admin, &toggle, &json!({"enabled": true})).await.expect(200);
        let got = receiver.wait_for(5, PATIENCE).await;
        let sequences: Vec<i64> = got[3..].iter().map(|r| r.json["sequence"].as_i64().unwrap()).collect();
        assert_eq!(sequences, [1, 2], "the ones that came due, oldest sequence first");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), 5, "sequence 3 waits for its retry time");
        clock(&app).advance(Duration::from_secs(11 * 60));
        let got = receiver.wait_for(6, PATIENCE).await;
        assert_eq!(got[5].json["sequence"], 3);
    }
);

db_test!(
    settings = |s| {
        s.webhook_timeout = Duration::from_secs(1);
        s.webhook_retry_schedule = parse_schedule("10m").unwrap();
    },
    async fn a_timeout_says_how_long_was_waited_in_one_wording(app) {
        let receiver = TestReceiver::start().await;
        receiver.always(Reply::Stall(Duration::from_secs(3)));
        let (subscription, _) = app.subscribe(&receiver.url, &[], "full").await;
        create_camp(&app).await;
        eventually("the attempt is recorded", || async { !attempts_of(&app, &subscription).await.is_empty() }).await;
        let attempts = attempts_of(&app, &subscription).await;
        assert_eq!(attempts[0], (None, Some("timed out: no answer within 1 s".to_string())));
    }
);
