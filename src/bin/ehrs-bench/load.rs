//! Load generators (a closed loop, a paced rate) and percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

pub(crate) fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN)
    )
}

/// Runs `total` jobs with `concurrency` workers; returns per-job latencies (ms) and the
/// wall time.
pub(crate) async fn drive<F, Fut>(total: usize, concurrency: usize, job: F) -> (Vec<f64>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let job = job.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                job(i).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    (latencies, started.elapsed())
}

/// Sends `total` jobs at `per_second`, open loop (a late answer does not delay the next
/// request); returns per-job latencies (ms) and the wall time.
pub(crate) async fn paced<F, Fut>(total: usize, per_second: u32, job: F) -> (Vec<f64>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let interval = Duration::from_secs(1) / per_second;
    let mut running = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let work = job(i);
        running.push(tokio::spawn(async move {
            let t = Instant::now();
            work.await;
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in running {
        latencies.push(task.await.unwrap());
    }
    (latencies, started.elapsed())
}

pub(crate) fn p(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    percentile(&sorted, q)
}
