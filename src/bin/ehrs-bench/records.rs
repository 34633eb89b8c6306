//! Patient records through the API, with no subscription: registrations (writes), reads
//! of one record by book number, and lists of 50. The figures every per-request cost on
//! the clinical routes (such as the access audit) is judged by.

use crate::load::{drive, summary};
use crate::scenario::{Server, Store};
use serde_json::json;
use std::future::Future;
use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub(crate) writes_per_s: f64,
    pub(crate) reads_per_s: f64,
    pub(crate) lists_per_s: f64,
    pub(crate) write_ms: Vec<f64>,
    pub(crate) read_ms: Vec<f64>,
    pub(crate) list_ms: Vec<f64>,
}

/// Registers `patients`, then reads `reads` records (cycling through them), then makes
/// `reads / 10` lists of 50, each phase with `concurrency` requests in flight.
pub(crate) async fn records(
    store: &Store,
    patients: usize,
    reads: usize,
    concurrency: usize,
) -> Report {
    let server = Server::start(store).await;
    let (writes, write_wall) = phase(&server, patients, concurrency, |api, base, i| {
        api.post(format!("{base}/api/v1/patients")).json(&json!({
            "book_no": book_no(i), "name": format!("Patient {i}"), "age": 30 + i % 50,
            "sex": "female", "phone": "9876543210", "address": "Ward 4, Pune"
        }))
    })
    .await;
    let (read, read_wall) = phase(&server, reads, concurrency, move |api, base, i| {
        api.get(format!("{base}/api/v1/patients/{}", book_no(i % patients)))
    })
    .await;
    let lists = (reads / 10).max(1);
    let (list, list_wall) = phase(&server, lists, concurrency, move |api, base, i| {
        let offset = (i * 50) % patients.max(1);
        api.get(format!("{base}/api/v1/patients?limit=50&offset={offset}"))
    })
    .await;
    server.stop().await;
    let rate = |count: usize, wall: Duration| count as f64 / wall.as_secs_f64();
    Report {
        writes_per_s: rate(patients, write_wall),
        reads_per_s: rate(reads, read_wall),
        lists_per_s: rate(lists, list_wall),
        write_ms: writes,
        read_ms: read,
        list_ms: list,
    }
}

fn book_no(i: usize) -> String {
    format!("BENCH-{i:07}")
}

/// `count` requests made by `request`, each answered with a success.
fn phase<F>(
    server: &Server,
    count: usize,
    concurrency: usize,
    request: F,
) -> impl Future<Output = (Vec<f64>, Duration)> + use<F>
where
    F: Fn(&reqwest::Client, &str, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let (api, base, token) = (
        server.client.clone(),
        server.base.clone(),
        server.token.clone(),
    );
    let request = std::sync::Arc::new(request);
    drive(count, concurrency, move |i| {
        let sent = request(&api, &base, i).bearer_auth(&token).send();
        async move {
            let response = sent.await.unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap_or_default()
            );
        }
    })
}

pub(crate) fn print(report: &Report, store: &Store) {
    println!("patient records ({}, no subscription):", store.name());
    println!(
        "  registrations: {:.0}/s; latency {}",
        report.writes_per_s,
        summary(report.write_ms.clone())
    );
    println!(
        "  reads of one record: {:.0}/s; latency {}",
        report.reads_per_s,
        summary(report.read_ms.clone())
    );
    println!(
        "  lists of 50: {:.0}/s; latency {}",
        report.lists_per_s,
        summary(report.list_ms.clone())
    );
}
