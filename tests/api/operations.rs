//! `/health` and `/metrics`.

use crate::camps::create_camp;
use crate::support::TestReceiver;

db_test!(async fn health_reports_database_and_queue(app) {
    let health = app.client.get(format!("{}/health", app.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["webhook_backend"], "embedded");
    assert_eq!(health["queue_depth"], 0);
});

db_test!(async fn metrics_count_events_and_deliveries(app) {
    let receiver = TestReceiver::start().await;
    app.subscribe(&receiver.url, &[], "full").await;
    create_camp(&app).await;
    receiver.wait_for(1, std::time::Duration::from_secs(20)).await;
    // The recorder writes outcomes just after the receiver answers.
    let mut text = String::new();
    for _ in 0..100 {
        text = app.client.get(format!("{}/metrics", app.base_url)).send().await.unwrap().text().await.unwrap();
        if text.contains("ehrs_delivery_attempts_total{outcome=\"delivered\"}") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains("ehrs_events_emitted_total{event_type=\"camp.created\"}"), "{text}");
    assert!(text.contains("ehrs_delivery_attempts_total{outcome=\"delivered\"}"), "{text}");
    assert!(text.contains("ehrs_delivery_latency_seconds_bucket"), "{text}");
    assert!(text.contains("ehrs_delivery_queue_depth"), "{text}");
    assert!(text.contains("ehrs_http_requests_total"), "{text}");
});
