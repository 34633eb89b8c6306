//! Background tasks that start with the server and stop together: the delivery engine or
//! the Svix relay, the job runner. Each task watches one stop signal; [`Tasks::stop`]
//! raises it and waits for every task, so in-flight work finishes and what is queued
//! stays in the database for the next start.
//!
//! Knows nothing of what the tasks do: the application and the webhook backends spawn
//! them here.

use std::future::Future;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A group of running tasks sharing one stop signal.
pub struct Tasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new()
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks {
            stop: watch::channel(false).0,
            handles: Vec::new(),
        }
    }

    /// Spawns `task` with the stop signal it must watch: it turns `true` when the group
    /// stops (a task that returns early is simply done).
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handles.push(tokio::spawn(task(self.stop.subscribe())));
    }

    /// Raises the stop signal and waits for every task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}
