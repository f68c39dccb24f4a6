//! The publisher: wake-ups and ephemeral events go out from one task, so a request never
//! waits on Redis. Wake-ups coalesce (one pending at most); a failed publish is logged,
//! rate-limited, and not retried (the relay's poll covers wake-ups; ephemeral events are
//! best effort by nature).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Cluster, timed};
use crate::state::WeakState;

/// How often the task checks that the server is still there while nothing happens.
const IDLE_CHECK: Duration = Duration::from_secs(5);

pub(super) fn spawn(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<String>, weak: WeakState) {
    tokio::spawn(async move {
        let wake_channel = cluster.key("wake");
        let ephemeral_channel = cluster.key("ephemeral");
        loop {
            tokio::select! {
                () = cluster.wake.notified() => {
                    publish(&cluster, &wake_channel, cluster.node.clone()).await;
                }
                message = rx.recv() => match message {
                    Some(text) => publish(&cluster, &ephemeral_channel, text).await,
                    None => break,
                },
                () = tokio::time::sleep(IDLE_CHECK) => {
                    if weak.upgrade().is_none() {
                        break;
                    }
                }
            }
        }
    });
}

async fn publish(cluster: &Cluster, channel: &str, message: String) {
    let mut conn = cluster.conn();
    let sent = timed(
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<i64>(&mut conn),
    )
    .await;
    if let Err(err) = sent {
        cluster.log_failure("publishing", &err);
    }
}
