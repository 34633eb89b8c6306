//! Benchmarks that print figures (never asserted in tests: these machines are noisy).
//!
//! `cargo run --release --bin ehrs-bench -- suite [--events N] [--postgres URL]` prints,
//! in one run, every figure the pipeline is judged by:
//!
//! 1. Ceiling: signed POSTs straight to a local receiver, no storage at all.
//! 2. API-only writes on SQLite (no subscription).
//! 3. End to end with one subscription, on SQLite and on PostgreSQL (a fresh database
//!    made on the server at `--postgres`, dropped after): events accepted per second,
//!    deliveries per second, API p50/p99, commit-to-receiver p50/p99.
//! 4. A paced 400 writes/s for 10 s with one subscription, on each database: the
//!    commit-to-receiver latency of a delivery when deliveries do not queue (the closed
//!    loop of 3 saturates the machine, so its latency figure is the queue's).
//! 5. A paced 400 writes/s for 10 s with 10 subscriptions against none: API p50/p99 of
//!    each, and whether delivery kept pace.
//! 6. Peak RSS of each scenario: each runs in a process of its own (`scenario`), whose
//!    VmHWM is printed; the load generator and receivers share that process, so it is an
//!    upper bound for the server.
//!
//! `… -- delivery [--events N] [--receivers N] [--concurrency N]` runs 1 and one end-to-end
//! scenario on SQLite alone.
//!
//! `… -- records [--patients N] [--reads N] [--postgres URL]` prints registrations, reads
//! of one record and lists of 50 per second, with no subscription.
//!
//! `… -- held [--connections N]` prints the memory `ehrs serve` holds for N idle, half-sent
//! or dripping connections.
//!
//! With `EHRS_DB_PASSPHRASE` set, every SQLite server is a new encrypted database (the
//! key derived once per server, as `ehrs serve` does): encrypted against plain is the same
//! command with and without it.
//!
//! Everything runs in this one process on 127.0.0.1: load generator, server, engine and
//! receivers share the machine's cores, as they would on a small camp server.

use clap::Parser;
use ehrs::outbound::PayloadMode;
use std::time::Duration;

mod held;
mod load;
mod receiver;
mod records;
mod scenario;

use load::p;
use receiver::ceiling;
use scenario::{Load, Store, end_to_end, isolated, print_report};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Clinical events created through the API and delivered end to end.
    Delivery {
        /// Clinical writes to make.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Local receivers, one subscription each.
        #[arg(long, default_value_t = 1)]
        receivers: usize,
        /// API requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The subscriptions' payload mode: `full`, `id_only` or `fhir`.
        #[arg(long, default_value = "full", value_parser = parse_payload)]
        payload: PayloadMode,
    },
    /// Every figure in one run: ceiling, API only, end to end on SQLite and PostgreSQL,
    /// paced 400 writes/s with 10 subscriptions against none, peak RSS.
    Suite {
        /// Writes per closed-loop scenario.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// API requests in flight at once (closed-loop scenarios).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// A PostgreSQL server to make a scratch database on (omit to skip PostgreSQL).
        #[arg(long)]
        postgres: Option<String>,
        /// Length of the paced scenarios.
        #[arg(long, default_value_t = 10)]
        paced_seconds: u32,
    },
    /// Patient records through the API with no subscription: registrations, reads of one
    /// record, lists of 50. Prints the figures, then one `REPORT {json}` line.
    Records {
        /// Patients to register (then read, cycling through them).
        #[arg(long, default_value_t = 10_000)]
        patients: usize,
        /// Reads of one record; a tenth as many lists are made.
        #[arg(long, default_value_t = 20_000)]
        reads: usize,
        /// API requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// A PostgreSQL server to make a scratch database on (else SQLite).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// The memory a real `ehrs serve` (the release binary beside this one) holds for N
    /// connections that are idle, send half a request head, or drip a body.
    Held {
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
    },
    /// One end-to-end scenario, its report printed as one `REPORT {json}` line: the suite
    /// runs each scenario in a process of its own so each peak RSS is its own.
    #[command(hide = true)]
    Scenario {
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long)]
        events: usize,
        #[arg(long)]
        receivers: usize,
        /// Closed loop with this many requests in flight (else `--per-second`).
        #[arg(long)]
        concurrency: Option<usize>,
        #[arg(long, default_value_t = 400)]
        per_second: u32,
        #[arg(long, default_value = "full", value_parser = parse_payload)]
        payload: PayloadMode,
    },
}

async fn suite(events: usize, concurrency: usize, postgres: Option<String>, paced_seconds: u32) {
    let ceiling_p50 = ceiling(events, concurrency).await;
    let closed = Load::Closed { concurrency };
    let api_only = isolated(&Store::Sqlite, events, 0, closed).await;
    print_report("API only (SQLite, no subscription)", &api_only, events);
    let mut stores = vec![Store::Sqlite];
    stores.extend(postgres.map(Store::Postgres));
    let mut e2e = Vec::new();
    for store in &stores {
        let report = isolated(store, events, 1, closed).await;
        print_report(
            &format!(
                "end to end ({}, 1 subscription, {concurrency} in flight)",
                store.name()
            ),
            &report,
            events,
        );
        e2e.push((store.name(), report));
    }
    let rate = 400;
    let paced_events = (rate * paced_seconds) as usize;
    let load = Load::Paced { per_second: rate };
    // Under the closed loop deliveries queue behind a saturated machine, so its
    // commit-to-receiver figure measures the queue; at a steady 400 writes/s it measures
    // what one delivery takes.
    let mut steady = Vec::new();
    for store in &stores {
        let report = isolated(store, paced_events, 1, load).await;
        print_report(
            &format!("paced 400 writes/s, {}, 1 subscription", store.name()),
            &report,
            paced_events,
        );
        steady.push((store.name(), report));
    }
    let quiet = isolated(&Store::Sqlite, paced_events, 0, load).await;
    print_report(
        "paced 400 writes/s, SQLite, no subscription",
        &quiet,
        paced_events,
    );
    let busy = isolated(&Store::Sqlite, paced_events, 10, load).await;
    print_report(
        "paced 400 writes/s, SQLite, 10 subscriptions",
        &busy,
        paced_events,
    );

    println!();
    println!("summary (targets from the pipeline issue):");
    println!(
        "  API-only writes on SQLite: {:.0}/s (target >= 8,000)",
        api_only.accepted_per_s
    );
    for (name, report) in &e2e {
        let target = if *name == "SQLite" { "2,700" } else { "1,700" };
        println!(
            "  end to end on {name}: {:.0} events/s (target >= {target}); commit->receiver p50 {:.2} ms, p99 {:.2} ms with the machine saturated",
            report.deliveries_per_s.min(report.accepted_per_s),
            p(&report.commit_to_receiver_ms, 0.5),
            p(&report.commit_to_receiver_ms, 0.99),
        );
    }
    for (name, report) in &steady {
        println!(
            "  commit->receiver on {name} at 400 writes/s: p50 between {:.2} and {:.2} ms (API answer / request sent to receiver), p99 between {:.2} and {:.2} ms (target p50 <= 2 x one POST = {:.2} ms)",
            p(&report.answer_to_receiver_ms, 0.5),
            p(&report.request_to_receiver_ms, 0.5),
            p(&report.answer_to_receiver_ms, 0.99),
            p(&report.request_to_receiver_ms, 0.99),
            2.0 * ceiling_p50
        );
    }
    let kept_pace = busy.delivered == busy.expected && busy.drain < Duration::from_secs(1);
    println!(
        "  paced 400/s: API p50 {:.2} ms with 10 subscriptions vs {:.2} ms with none ({:.2}x, target <= 1.25x); p99 {:.2} vs {:.2} ms; delivery {}",
        p(&busy.api_ms, 0.5),
        p(&quiet.api_ms, 0.5),
        p(&busy.api_ms, 0.5) / p(&quiet.api_ms, 0.5),
        p(&busy.api_ms, 0.99),
        p(&quiet.api_ms, 0.99),
        if kept_pace {
            "kept pace"
        } else {
            "fell behind"
        }
    );
    println!(
        "  peak RSS of the paced 10-subscription scenario's process (server, load generator and receivers): {:.1} MB (target < 60 MB for the server)",
        busy.peak_rss_kb as f64 / 1024.0
    );
}

fn parse_payload(raw: &str) -> Result<PayloadMode, String> {
    PayloadMode::parse(raw).ok_or_else(|| format!("'{raw}' is not full, id_only or fhir"))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Delivery {
            events,
            receivers,
            concurrency,
            payload,
        } => {
            ceiling(events, concurrency).await;
            let report = end_to_end(
                &Store::Sqlite,
                events,
                receivers,
                Load::Closed { concurrency },
                payload,
            )
            .await;
            print_report(
                &format!(
                    "end to end (SQLite, {receivers} receiver(s), {concurrency} API requests in flight)"
                ),
                &report,
                events,
            );
        }
        Command::Suite {
            events,
            concurrency,
            postgres,
            paced_seconds,
        } => suite(events, concurrency, postgres, paced_seconds).await,
        Command::Records {
            patients,
            reads,
            concurrency,
            postgres,
        } => {
            let store = postgres.map_or(Store::Sqlite, Store::Postgres);
            let report = records::records(&store, patients, reads, concurrency).await;
            records::print(&report, &store);
            println!("REPORT {}", serde_json::to_string(&report).unwrap());
        }
        Command::Held { connections } => held::held(connections).await,
        Command::Scenario {
            postgres,
            events,
            receivers,
            concurrency,
            per_second,
            payload,
        } => {
            let store = postgres.map_or(Store::Sqlite, Store::Postgres);
            let load = match concurrency {
                Some(concurrency) => Load::Closed { concurrency },
                None => Load::Paced { per_second },
            };
            let report = end_to_end(&store, events, receivers, load, payload).await;
            println!("REPORT {}", serde_json::to_string(&report).unwrap());
        }
    }
}
