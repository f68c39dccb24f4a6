//! Hot reload: the plugins folder is watched (`notify`), and SIGHUP reloads too. Changes
//! are gathered for a moment so an editor's save (write, rename) reloads once.

use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::Registry;

/// How long changes are gathered before a reload.
const SETTLE: Duration = Duration::from_millis(150);

/// Starts watching the registry's folder and listening for SIGHUP. Both stop once the
/// registry is dropped.
pub fn spawn(registry: &Arc<Registry>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let dir = registry.dir().to_owned();
    let watcher = {
        let tx = tx.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        })
    };
    let watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            if dir.exists() {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the plugins folder; reload with SIGHUP");
            }
            None
        }
    };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let registry = Arc::downgrade(registry);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                if registry.strong_count() == 0 || tx.send(()).is_err() {
                    break;
                }
                tracing::info!("SIGHUP: reloading plugins");
            }
        });
    }
    drop(tx);
    let registry: Weak<Registry> = Arc::downgrade(registry);
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            // Wakes now and then to notice a server that is gone.
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(_) if registry.strong_count() == 0 => break,
                Err(_) => continue,
            }
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let Some(registry) = registry.upgrade() else {
                break;
            };
            let _ = tokio::task::spawn_blocking(move || registry.reload()).await;
        }
    });
}
