//! The access audit's writer: one task that writes the queued entries in batches, and
//! once an hour removes the entries older than the retention
//! (`EHRS_ACCESS_AUDIT_RETENTION`).

use super::{AccessEntry, AccessLog, repo};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// After the first entry of a batch arrives, the writer waits up to this long for more
/// (less once [`BATCH`] have come), so a camp writes a few large batches rather than one
/// small one per request. It is also about what a crash can lose.
pub const LINGER: Duration = Duration::from_millis(250);

/// How often the writer looks at the queue while it gathers a batch.
const TICK: Duration = Duration::from_millis(20);

/// Entries per write, at most.
const BATCH: usize = 1_000;

/// A failed write is tried again after this (the queue fills meanwhile, and requests wait
/// once it is full: entries are not dropped).
const RETRY: Duration = Duration::from_secs(1);

const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Runs until `stopped`; then writes every entry still queued (the server has finished
/// its requests by then) and ends.
pub async fn run(log: AccessLog, mut stopped: watch::Receiver<bool>) {
    let Some(mut queue) = log.pending.lock().ok().and_then(|mut slot| slot.take()) else {
        return;
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_prune = Instant::now();
    loop {
        if Instant::now() >= next_prune {
            prune(&log).await;
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        tokio::select! {
            received = queue.recv_many(&mut batch, BATCH) => if received == 0 { break },
            _ = stopped.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep_until(next_prune) => continue,
        }
        gather(&mut queue, &mut batch, &stopped).await;
        write(&log, &mut batch, &stopped).await;
    }
    queue.close();
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        write(&log, &mut batch, &stopped).await;
    }
}

/// Adds to `batch` what arrives within [`LINGER`], until the batch is full: a busy camp's
/// batches fill at once and go out without waiting. It looks at the queue every
/// [`TICK`] rather than waiting on it, so that under load queuing an entry does not wake
/// the writer each time: the requests only fill the queue.
async fn gather(
    queue: &mut mpsc::Receiver<AccessEntry>,
    batch: &mut Vec<AccessEntry>,
    stopped: &watch::Receiver<bool>,
) {
    let deadline = Instant::now() + LINGER;
    loop {
        while batch.len() < BATCH
            && let Ok(entry) = queue.try_recv()
        {
            batch.push(entry);
        }
        let now = Instant::now();
        if batch.len() >= BATCH || now >= deadline || *stopped.borrow() {
            return;
        }
        tokio::time::sleep(TICK.min(deadline - now)).await;
    }
}

/// Writes `batch` and empties it, trying again until the write succeeds; once the server
/// is stopping, three tries, then the batch is counted lost.
async fn write(log: &AccessLog, batch: &mut Vec<AccessEntry>, stopped: &watch::Receiver<bool>) {
    let mut tries = 0;
    loop {
        match repo::append(&log.db, batch).await {
            Ok(()) => {
                metrics::counter!("ehrs_access_audit_entries_total").increment(batch.len() as u64);
                break;
            }
            Err(err) => {
                tries += 1;
                tracing::error!(error = %err, entries = batch.len(), "could not write the access audit; trying again");
                if *stopped.borrow() && tries >= 3 {
                    metrics::counter!("ehrs_access_audit_lost_total").increment(batch.len() as u64);
                    break;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    batch.clear();
}

async fn prune(log: &AccessLog) {
    match log.prune().await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed access audit entries past the retention"),
        Err(err) => tracing::error!(error = %err, "could not remove old access audit entries"),
    }
}
