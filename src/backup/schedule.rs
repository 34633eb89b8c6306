//! Backups taken by the server itself: with `EHRS_BACKUP_DIR` set, one every
//! `EHRS_BACKUP_INTERVAL`, named by its time (`ehrs-20261204T101500Z.ehrs-backup`), the
//! newest `EHRS_BACKUP_KEEP` kept. A failure is logged, counted in `/metrics`
//! (`ehrs_backups_total{outcome="failed"}`) and shown on `/health` as degraded until a
//! backup succeeds again.

use crate::time::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the scheduled backups are told.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Where the backup files go.
    pub dir: PathBuf,
    pub interval: Duration,
    /// How many of the newest backups to keep.
    pub keep: usize,
    /// The live SQLite database.
    pub database: PathBuf,
    /// The data dir, for the key files.
    pub data_dir: PathBuf,
    /// The key of an encrypted database: the backups are encrypted with it.
    pub key: Option<crate::db::cipher::DbKey>,
}

/// How the scheduled backups fare, for `/health`. Cheap to clone.
#[derive(Clone, Default)]
pub struct BackupStatus(Arc<Mutex<Fared>>);

/// The last outcomes.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Fared {
    pub last_success: Option<Timestamp>,
    /// The last backup's failure; cleared by a success.
    pub last_error: Option<String>,
}

impl BackupStatus {
    pub fn now(&self) -> Fared {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, outcome: &anyhow::Result<PathBuf>) {
        let mut fared = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(_) => {
                fared.last_success = Some(Timestamp::now());
                fared.last_error = None;
            }
            Err(err) => fared.last_error = Some(format!("{err:#}")),
        }
    }
}

/// Takes a backup every `schedule.interval`, the first one interval after the start,
/// until `stop`.
pub async fn run(
    schedule: Schedule,
    status: BackupStatus,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(schedule.interval) => {}
            _ = stop.changed() => return,
        }
        let job = schedule.clone();
        let outcome = tokio::task::spawn_blocking(move || take(&job))
            .await
            .unwrap_or_else(|err| Err(anyhow::anyhow!("the backup task failed: {err}")));
        status.record(&outcome);
        match &outcome {
            Ok(file) => {
                metrics::counter!("ehrs_backups_total", "outcome" => "ok").increment(1);
                metrics::gauge!("ehrs_backup_last_success_timestamp_seconds")
                    .set(Timestamp::now().0 as f64 / 1000.0);
                tracing::info!(file = %file.display(), "backup taken");
            }
            Err(err) => {
                metrics::counter!("ehrs_backups_total", "outcome" => "failed").increment(1);
                tracing::error!(error = %format!("{err:#}"), dir = %schedule.dir.display(), "scheduled backup failed");
            }
        }
    }
}

/// One backup into the directory, then the oldest beyond `keep` removed.
fn take(schedule: &Schedule) -> anyhow::Result<PathBuf> {
    crate::db::files::create_private_dir(&schedule.dir)?;
    let name = format!(
        "ehrs-{}.ehrs-backup",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let file = schedule.dir.join(name);
    super::backup(
        &schedule.database,
        &schedule.data_dir,
        schedule.key.as_ref(),
        &file,
    )?;
    prune(&schedule.dir, schedule.keep)?;
    Ok(file)
}

/// Removes all but the newest `keep` scheduled backups (their names sort by time).
fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ehrs-") && n.ends_with(".ehrs-backup"))
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for old in &backups[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}
