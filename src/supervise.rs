//! Supervised background tasks (issue 14): the event relay and router, the janitor, the
//! idle sweep and the search indexer run under [`supervise`], which restarts one that
//! panicked or ended while the server is alive (with a backoff, logged) and records it in
//! [`Tasks`], so `/readyz` answers 503 naming a task that is down instead of the node
//! serving on with, say, no event delivery.
//!
//! A task ends normally once the server is gone (its `WeakState` no longer upgrades); the
//! supervisor ends with it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::{AppState, WeakState};

/// The first restart waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A task that ran this long before failing starts again from [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What the supervisor knows of one task.
#[derive(Clone, Debug, Default)]
struct Status {
    down: bool,
    restarts: u64,
    /// Set by [`Tasks::kill`]: abort the running incarnation.
    kill: Option<Arc<tokio::sync::Notify>>,
}

/// The node's supervised tasks.
#[derive(Default)]
pub struct Tasks {
    tasks: Mutex<BTreeMap<&'static str, Status>>,
}

impl Tasks {
    fn with<R>(&self, name: &'static str, f: impl FnOnce(&mut Status) -> R) -> R {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        f(tasks.entry(name).or_default())
    }

    /// The first task (by name) that is down, waiting to be restarted.
    pub fn first_down(&self) -> Option<&'static str> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .iter()
            .find(|(_, status)| status.down)
            .map(|(name, _)| *name)
    }

    /// How often `name` was restarted.
    pub fn restarts(&self, name: &'static str) -> u64 {
        self.with(name, |status| status.restarts)
    }

    /// The supervised task names.
    pub fn names(&self) -> Vec<&'static str> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.keys().copied().collect()
    }

    /// Stops the running incarnation of `name` as if it had died (for tests and drills):
    /// the task shows as down at once and is restarted after the backoff. False when no
    /// such task runs.
    #[doc(hidden)]
    pub fn kill(&self, name: &str) -> bool {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(status) = tasks
            .iter_mut()
            .find(|(task, _)| **task == name)
            .map(|(_, status)| status)
        else {
            return false;
        };
        let Some(kill) = status.kill.clone() else {
            return false;
        };
        status.down = true;
        kill.notify_one();
        true
    }
}

/// Runs `make(weak)` as task `name`, again after a backoff each time it panics or ends
/// while the server is alive.
pub fn supervise<F, Fut>(state: &AppState, name: &'static str, mut make: F)
where
    F: FnMut(WeakState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = state.tasks.clone();
    let weak = state.downgrade();
    let kill = Arc::new(tokio::sync::Notify::new());
    tasks.with(name, |status| {
        status.kill = Some(kill.clone());
        status.down = false;
    });
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let started = Instant::now();
            let mut run = tokio::spawn(make(weak.clone()));
            let outcome = tokio::select! {
                joined = &mut run => joined,
                () = kill.notified() => {
                    run.abort();
                    (&mut run).await
                }
            };
            if weak.upgrade().is_none() {
                // The server is gone: the task was meant to end.
                break;
            }
            tasks.with(name, |status| {
                status.down = true;
                status.restarts += 1;
            });
            if started.elapsed() >= HEALTHY_RUN {
                backoff = MIN_BACKOFF;
            }
            match outcome {
                Err(err) if err.is_panic() => {
                    tracing::error!(task = name, restart_in = ?backoff, "a background task panicked; restarting it");
                }
                _ => {
                    tracing::error!(task = name, restart_in = ?backoff, "a background task stopped; restarting it");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if weak.upgrade().is_none() {
                break;
            }
            tasks.with(name, |status| status.down = false);
            tracing::info!(task = name, "background task restarted");
        }
    });
}
